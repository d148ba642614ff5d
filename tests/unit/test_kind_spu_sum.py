"""Kind spu_sum: its params, and a run on one party with a stand-in SecretFlow."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FakeSF, full_spec, job_context, one_problem, problems_of
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.kinds import spu_sum
from sfnode.spec import validate_spec


def test_spu_sum_valid_with_default_protocol(config: NodeConfig, federation: Federation) -> None:
    spec = validate_spec(full_spec("spu_sum", params={"values": {"alice": 3, "bob": 4}}),
                         config, federation)
    assert spec.params == {"values": {"alice": 3, "bob": 4}, "protocol": "SEMI2K"}


def test_spu_sum_needs_a_value_per_party(config: NodeConfig, federation: Federation) -> None:
    spec = full_spec("spu_sum", params={"values": {"alice": 3, "bob": "4", "carol": 1}})
    problems = problems_of(spec, config, federation)
    assert set(problems) == {"params.values.bob", "params.values.carol"}
    assert "'4' is not valid; expected an integer" in problems["params.values.bob"].message
    assert "is for a party not in the job" in problems["params.values.carol"].message


def test_spu_sum_overflow(config: NodeConfig, federation: Federation) -> None:
    spec = full_spec("spu_sum", params={"values": {"alice": 2**30, "bob": 2**30}})
    err = one_problem(spec, config, federation)
    assert err.field == "params.values" and "could overflow" in str(err)


@pytest.mark.parametrize(("protocol", "parties", "needs"), [
    ("ABY3", ("alice", "bob"), "needs exactly 3 parties, the job has 2"),
    ("CHEETAH", ("alice", "bob", "carol"), "needs exactly 2 parties, the job has 3"),
    ("SPDZ", ("alice", "bob"), "is not an SPU protocol; expected one of SEMI2K, ABY3, CHEETAH"),
])
def test_spu_sum_protocol_party_count(config: NodeConfig, federation: Federation, protocol: str,
                                      parties: tuple[str, ...], needs: str) -> None:
    values = {p: 1 for p in parties}
    spec = full_spec("spu_sum", parties=parties, params={"values": values, "protocol": protocol})
    err = one_problem(spec, config, federation)
    assert err.field == "params.protocol" and err.value == protocol
    assert needs in str(err)


def test_spu_sum_aby3_with_three(config: NodeConfig, federation: Federation) -> None:
    parties = ("alice", "bob", "carol")
    spec = full_spec("spu_sum", parties=parties,
                     params={"values": {p: 1 for p in parties}, "protocol": "ABY3"})
    assert validate_spec(spec, config, federation).params["protocol"] == "ABY3"


def test_spu_sum_uses_only_own_value(config: NodeConfig, federation: Federation,
                                     tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    spec = full_spec("spu_sum", params={"values": {"alice": 3, "bob": 4}})
    sf = FakeSF()
    result = spu_sum.run(sf, job_context(config, federation, spec, tmp_path))
    # bob's entry of the spec is never an input here: bob contributes it on bob's node.
    assert sf.calls == [("alice", (3,)), ("bob", (0,))]
    assert result == {"sum": 3, "protocol": "SEMI2K", "parties": ["alice", "bob"]}
