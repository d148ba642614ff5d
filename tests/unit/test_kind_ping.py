"""Kind ping: no params; a run moves every party's id to every other party."""
from __future__ import annotations

from pathlib import Path

from conftest import FakeSF, full_spec, job_context, one_problem
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.kinds import ping


def test_ping_takes_no_params(config: NodeConfig, federation: Federation) -> None:
    err = one_problem(full_spec(params={"values": 1}), config, federation)
    assert err.field == "params.values"
    assert "is not a parameter of kind ping; expected no parameters" in str(err)


def test_ping_reaches_every_party(config: NodeConfig, federation: Federation,
                                  tmp_path: Path) -> None:
    spec = full_spec(parties=("alice", "bob", "carol"))
    result = ping.run(FakeSF(), job_context(config, federation, spec, tmp_path))
    assert result["reached"] == ["alice", "bob", "carol"]
    assert len(result["exchanges"]) == 6 and all(e["ok"] for e in result["exchanges"])
