from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import full_spec, party
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.spec import JobSpec, SpecError, expand_spec, validate_spec


def problems_of(spec: Any, config: NodeConfig, federation: Federation) -> dict[str, Any]:
    with pytest.raises(SpecError) as err:
        validate_spec(spec, config, federation)
    return {p.field: p for p in err.value.problems}


def one_problem(spec: Any, config: NodeConfig, federation: Federation):
    with pytest.raises(SpecError) as err:
        validate_spec(spec, config, federation)
    assert len(err.value.problems) == 1, err.value.problems
    return err.value


def psi_spec(config: NodeConfig, **params: Any) -> dict[str, Any]:
    (config.data_dir / "alice.csv").write_text("id,age\n1,30\n2,40\n")
    base = {"inputs": {"alice": {"path": "alice.csv", "keys": ["id"]},
                       "bob": {"path": "bob/ids.csv", "keys": ["id"]}},
            "receiver": "alice"}
    base.update(params)
    return full_spec("psi", params=base)


def test_valid_ping(config: NodeConfig, federation: Federation) -> None:
    spec = validate_spec(full_spec(), config, federation)
    assert isinstance(spec, JobSpec)
    assert spec.party_ids == ["alice", "bob"]
    assert [p.rayfed_address for p in spec.peers("alice")] == ["10.89.0.3:20000"]
    assert JobSpec.from_dict(spec.to_dict()) == spec


def test_ip_mismatch_message(config: NodeConfig, federation: Federation) -> None:
    spec = full_spec()
    spec["parties"][1]["ip"] = "10.0.0.9"
    err = one_problem(spec, config, federation)
    assert err.field == "parties[1].ip"
    assert err.value == "10.0.0.9"
    assert err.expected == "10.89.0.3"
    assert str(err) == ("job spec field parties[1].ip: '10.0.0.9' does not match this node's "
                        "federation file ('10.89.0.3' for party bob)")


def test_unknown_kind(config: NodeConfig, federation: Federation) -> None:
    err = one_problem(full_spec(kind="pong"), config, federation)
    assert (err.field, err.value) == ("kind", "pong")
    assert "'pong' is not a known job kind; expected one of ping, spu_sum, psi" in str(err)


@pytest.mark.parametrize("job_id", ["Psi-1", "-psi", "a" * 64, "psi_1", 7])
def test_bad_job_id(config: NodeConfig, federation: Federation, job_id: Any) -> None:
    err = one_problem(full_spec(job_id=job_id), config, federation)
    assert err.field == "job_id" and err.value == job_id
    assert "expected [a-z0-9][a-z0-9-]{0,62}" in str(err)


def test_node_must_participate(config: NodeConfig, federation: Federation) -> None:
    err = one_problem(full_spec(parties=("bob", "carol")), config, federation)
    assert err.field == "parties"
    assert err.value == ["bob", "carol"]
    assert "does not include this node (alice)" in str(err)


def test_party_not_in_federation(config: NodeConfig, federation: Federation) -> None:
    spec = full_spec()
    spec["parties"].append({"id": "dave", "ip": "10.89.0.5", "rayfed_port": 20000,
                            "spu_port": 21000})
    err = one_problem(spec, config, federation)
    assert err.field == "parties[2].id" and err.value == "dave"
    assert "is not in this node's federation file; expected one of alice, bob, carol" in str(err)


def test_duplicate_party(config: NodeConfig, federation: Federation) -> None:
    spec = full_spec()
    spec["parties"].append(party("bob"))
    err = one_problem(spec, config, federation)
    assert err.field == "parties[2].id"
    assert "'bob' duplicates parties[1].id" in str(err)


def test_port_must_be_range_start_plus_slot(config: NodeConfig, federation: Federation) -> None:
    spec = full_spec(slot=2)
    spec["parties"][1]["rayfed_port"] = 20003
    err = one_problem(spec, config, federation)
    assert err.field == "parties[1].rayfed_port" and err.value == 20003
    assert err.expected == "20002"
    assert "is not slot 2 of party bob's range 20000-20031; expected 20002" in str(err)


def test_slot_must_fit_every_participant(config: NodeConfig, federation: Federation) -> None:
    spec = full_spec(parties=("alice", "carol"), slot=0)
    spec["slot"] = 4
    spec["parties"] = [party("alice", 4), {"id": "carol", "ip": "10.89.0.4",
                                           "rayfed_port": 30004, "spu_port": 31004}]
    problems = problems_of(spec, config, federation)
    assert "slot" in problems
    assert "4 does not fit party carol's port ranges" in problems["slot"].message
    assert "expected 0..3" in problems["slot"].message


@pytest.mark.parametrize("deadline", [0, -5, 86401, "60", True])
def test_deadline_range(config: NodeConfig, federation: Federation, deadline: Any) -> None:
    err = one_problem(full_spec(deadline_seconds=deadline), config, federation)
    assert err.field == "deadline_seconds" and err.value == deadline
    assert "1..86400" in str(err)


def test_deadline_defaults_to_config(config: NodeConfig, federation: Federation) -> None:
    spec = full_spec()
    del spec["deadline_seconds"]
    assert validate_spec(spec, config, federation).deadline_seconds == 600


def test_unknown_top_level_field(config: NodeConfig, federation: Federation) -> None:
    err = one_problem(full_spec(deadline=5), config, federation)
    assert err.field == "deadline" and "is not a job spec field" in str(err)


def test_short_spec_must_be_expanded(config: NodeConfig, federation: Federation) -> None:
    spec = full_spec()
    spec["parties"] = ["alice", "bob"]
    problems = problems_of(spec, config, federation)
    assert "expand a short spec first" in problems["parties[0]"].message


def test_all_problems_together(config: NodeConfig, federation: Federation) -> None:
    spec = full_spec(kind="pong", job_id="BAD", deadline_seconds=0)
    spec["parties"][1]["ip"] = "10.0.0.9"
    with pytest.raises(SpecError) as err:
        validate_spec(spec, config, federation)
    fields = [p.field for p in err.value.problems]
    assert fields == ["job_id", "kind", "deadline_seconds", "parties[1].ip"]
    assert str(err.value).startswith("4 problems in job spec:")


def test_ping_takes_no_params(config: NodeConfig, federation: Federation) -> None:
    err = one_problem(full_spec(params={"values": 1}), config, federation)
    assert err.field == "params.values"
    assert "is not a parameter of kind ping; expected no parameters" in str(err)


# --- spu_sum ------------------------------------------------------------------------------


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


# --- psi ----------------------------------------------------------------------------------


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


# --- expansion ----------------------------------------------------------------------------


def test_expand_short_spec(federation: Federation) -> None:
    short = {"job_id": "j1", "kind": "ping", "slot": 3, "parties": ["alice", "carol"]}
    full = expand_spec(short, federation, default_deadline=600)
    assert full["parties"] == [
        {"id": "alice", "ip": "10.89.0.2", "rayfed_port": 20003, "spu_port": 21003},
        {"id": "carol", "ip": "10.89.0.4", "rayfed_port": 30003, "spu_port": 31003},
    ]
    assert full["deadline_seconds"] == 600 and full["params"] == {}
    assert short["parties"] == ["alice", "carol"]  # input untouched


def test_expand_defaults_slot_zero(federation: Federation, config: NodeConfig) -> None:
    full = expand_spec({"job_id": "j1", "kind": "ping", "parties": ["alice", "bob"]}, federation)
    assert full["slot"] == 0
    assert [p["rayfed_port"] for p in full["parties"]] == [20000, 20000]
    validate_spec(full, config, federation)


def test_expand_unknown_party_and_slot(federation: Federation) -> None:
    with pytest.raises(SpecError) as err:
        expand_spec({"job_id": "j", "kind": "ping", "slot": 5, "parties": ["alice", "dave",
                                                                         "carol"]}, federation)
    fields = {p.field: p.message for p in err.value.problems}
    assert "is not in the federation file" in fields["parties[1]"]
    assert "does not fit party carol's port ranges" in fields["slot"]


def test_expand_leaves_full_spec(federation: Federation) -> None:
    spec = full_spec()
    assert expand_spec(spec, federation) == spec
