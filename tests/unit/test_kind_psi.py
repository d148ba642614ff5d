"""Kind psi: its params, checked on each party against that party's own input only."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import full_spec, one_problem, party, problems_of
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.spec import validate_spec


def psi_spec(config: NodeConfig, **params: Any) -> dict[str, Any]:
    (config.data_dir / "alice.csv").write_text("id,age\n1,30\n2,40\n")
    base = {"inputs": {"alice": {"path": "alice.csv", "keys": ["id"]},
                       "bob": {"path": "bob/ids.csv", "keys": ["id"]}},
            "receiver": "alice"}
    base.update(params)
    return full_spec("psi", params=base)


def test_psi_valid_and_defaults(config: NodeConfig, federation: Federation) -> None:
    spec = validate_spec(psi_spec(config), config, federation)
    assert spec.params == {
        "inputs": {"alice": {"path": "alice.csv", "keys": ["id"]},
                   "bob": {"path": "bob/ids.csv", "keys": ["id"]}},
        "receiver": "alice", "protocol": "PROTOCOL_RR22", "broadcast_result": True}


def test_psi_exactly_two_parties(config: NodeConfig, federation: Federation) -> None:
    spec = psi_spec(config)
    spec["parties"].append(party("carol"))
    spec["params"]["inputs"]["carol"] = {"path": "c.csv", "keys": ["id"]}
    problems = problems_of(spec, config, federation)
    assert "has 3 parties; expected exactly 2 for kind psi" in problems["parties"].message


@pytest.mark.parametrize(("path", "reason"), [
    ("../secret.csv", "leaves DATA_DIR after normalisation ('../secret.csv')"),
    ("a/../../etc/passwd", "leaves DATA_DIR after normalisation ('../etc/passwd')"),
    ("/etc/passwd", "is an absolute path"),
])
def test_psi_path_escapes(config: NodeConfig, federation: Federation, path: str,
                          reason: str) -> None:
    spec = psi_spec(config)
    spec["params"]["inputs"]["bob"]["path"] = path
    err = one_problem(spec, config, federation)
    assert err.field == "params.inputs.bob.path" and err.value == path
    assert reason in str(err)
    assert "expected a relative path that stays inside DATA_DIR" in str(err)


def test_psi_path_inside_after_normalisation(config: NodeConfig,
                                             federation: Federation) -> None:
    spec = psi_spec(config)
    spec["params"]["inputs"]["bob"]["path"] = "x/../bob.csv"
    assert validate_spec(spec, config, federation).params["inputs"]["bob"]["path"] == "bob.csv"


def test_psi_own_input_must_exist(config: NodeConfig, federation: Federation) -> None:
    spec = psi_spec(config)
    spec["params"]["inputs"]["alice"]["path"] = "missing.csv"
    err = one_problem(spec, config, federation)
    assert err.field == "params.inputs.alice.path"
    assert f"does not exist on party alice ({config.data_dir / 'missing.csv'})" in str(err)


def test_psi_own_symlink_escape(config: NodeConfig, federation: Federation,
                                tmp_path: Path) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("id\n1\n")
    (config.data_dir / "link.csv").symlink_to(outside)
    spec = psi_spec(config)
    spec["params"]["inputs"]["alice"]["path"] = "link.csv"
    err = one_problem(spec, config, federation)
    assert "outside DATA_DIR" in str(err)


def test_psi_own_keys_must_be_columns(config: NodeConfig, federation: Federation) -> None:
    spec = psi_spec(config)
    spec["params"]["inputs"]["alice"]["keys"] = ["uid"]
    spec["params"]["inputs"]["bob"]["keys"] = ["uid"]
    err = one_problem(spec, config, federation)
    assert err.field == "params.inputs.alice.keys"
    assert "names column 'uid', which is not in the header" in str(err)
    assert "(columns: id, age)" in str(err)


def test_psi_receiver_protocol_broadcast(config: NodeConfig, federation: Federation) -> None:
    spec = psi_spec(config, receiver="carol", protocol="PROTOCOL_X", broadcast_result="yes")
    problems = problems_of(spec, config, federation)
    assert set(problems) == {"params.receiver", "params.protocol", "params.broadcast_result"}
    assert "expected one of alice, bob" in problems["params.receiver"].message
    assert ("expected one of PROTOCOL_RR22, PROTOCOL_ECDH, PROTOCOL_KKRT"
            in problems["params.protocol"].message)
    assert "expected true or false" in problems["params.broadcast_result"].message


def test_psi_missing_input(config: NodeConfig, federation: Federation) -> None:
    spec = psi_spec(config)
    del spec["params"]["inputs"]["bob"]
    err = one_problem(spec, config, federation)
    assert err.field == "params.inputs.bob" and err.value is None
    assert "job spec field params.inputs.bob: missing is not valid" in str(err)


def test_psi_peer_file_not_checked_here(config: NodeConfig, federation: Federation) -> None:
    # bob/ids.csv does not exist on alice: only the own input is checked, on its own node.
    assert not (config.data_dir / "bob").exists()
    validate_spec(psi_spec(config), config, federation)


def test_psi_reads_its_input_through_a_link_in_the_work_dir(config: NodeConfig, federation: Federation) -> None:
    """PSI writes PATH.temp.csv beside the path it is given; inputs are read-only to the Ray head that
    runs it, so the path it gets is a link in the job's (writable) work dir to the file under DATA_DIR."""
    from sfnode.jobdir import make_workdir, workdir
    from sfnode.kinds.psi import own_input
    from sfnode.sfargs import JobContext

    spec = validate_spec(psi_spec(config), config, federation)
    work = workdir(config.job_dir, spec.job_id)
    make_workdir(work)
    ctx = JobContext(spec, config, work)
    link = own_input(ctx)
    assert link.parent == work and link.is_symlink()
    assert link.resolve() == (config.data_dir / "alice.csv").resolve()
    assert link.read_text().startswith("id,age")
    assert own_input(ctx) == link  # a second call (a retried run) finds it
