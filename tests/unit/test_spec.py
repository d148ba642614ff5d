from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from conftest import full_spec, one_problem, party, problems_of, tls_node
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.jobspec import JobSpec
from sfnode.spec import SpecError, expand_spec, validate_spec


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
    assert "'pong' is not a known job kind; expected one of ping, pipeline, psi, spu_sum" in str(err)


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


@pytest.mark.parametrize("deadline", [0, -5, 3601, 86400, "60", True])
def test_deadline_range(config: NodeConfig, federation: Federation, deadline: Any) -> None:
    """The node's own maximum (JOB_MAX_DEADLINE_SECONDS, 3600 by default) bounds a spec's deadline."""
    err = one_problem(full_spec(deadline_seconds=deadline), config, federation)
    assert err.field == "deadline_seconds" and err.value == deadline
    assert err.expected == "1..3600"
    assert "party alice accepts at most 3600 s: its JOB_MAX_DEADLINE_SECONDS" in str(err)


def test_a_node_with_a_higher_maximum_accepts_a_longer_deadline(config: NodeConfig,
                                                                federation: Federation) -> None:
    longer = dataclasses.replace(config, job_max_deadline_seconds=7200)
    assert validate_spec(full_spec(deadline_seconds=7200), longer, federation).deadline_seconds == 7200
    err = one_problem(full_spec(deadline_seconds=7201), longer, federation)
    assert err.expected == "1..7200"


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


# --- TLS: every party of a job agrees with this node -----------------------------------------

Certs = dict[str, tuple[str, str]]


def test_a_tls_node_takes_a_job_of_tls_parties(tmp_path: Path, federation_data: dict[str, Any],
                                               certificates: Certs) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates)
    assert validate_spec(full_spec(parties=("alice", "bob", "carol")), config, fed).party_ids == [
        "alice", "bob", "carol"]


def test_a_tls_node_refuses_a_party_without_certificate(
        tmp_path: Path, federation_data: dict[str, Any], certificates: Certs) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates, with_certificate=("alice",))
    err = one_problem(full_spec(), config, fed)
    assert (err.field, err.value) == ("parties[1].id", "bob")
    assert str(err) == ("job spec field parties[1].id: 'bob' runs without TLS (no certificate in "
                        "this node's federation file); this node requires TLS on every link")
    # every such party at once
    problems = problems_of(full_spec(parties=("alice", "bob", "carol")), config, fed)
    assert set(problems) == {"parties[1].id", "parties[2].id"}
    assert problems["parties[2].id"].value == "carol"


def test_only_the_jobs_parties_need_a_certificate(
        tmp_path: Path, federation_data: dict[str, Any], certificates: Certs) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates,
                           with_certificate=("alice", "bob"))
    assert validate_spec(full_spec(), config, fed).party_ids == ["alice", "bob"]
    err = one_problem(full_spec(parties=("carol", "alice")), config, fed)
    assert (err.field, err.value) == ("parties[0].id", "carol")


def test_a_node_without_tls_refuses_a_party_that_uses_it(
        tmp_path: Path, federation_data: dict[str, Any], certificates: Certs) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates, with_certificate=("bob",),
                           tls=False)
    err = one_problem(full_spec(), config, fed)
    assert (err.field, err.value) == ("parties[1].id", "bob")
    assert str(err) == ("job spec field parties[1].id: 'bob' uses TLS; this node runs without it "
                        "(TLS_CERT/TLS_KEY empty); expected parties without a certificate in "
                        "this node's federation file, or TLS_CERT/TLS_KEY set on this node")
    assert validate_spec(full_spec(parties=("alice", "carol")), config, fed).party_ids == [
        "alice", "carol"]


def test_a_certificate_never_comes_from_the_spec(
        tmp_path: Path, federation_data: dict[str, Any], certificates: Certs) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates, with_certificate=("alice",))
    spec = full_spec()
    spec["parties"][1]["certificate"] = certificates["bob"][0]
    problems = problems_of(spec, config, fed)
    assert "is not a party field" in problems["parties[1].certificate"].message
    assert "runs without TLS" in problems["parties[1].id"].message


def test_a_tls_node_whose_own_entry_disagrees_runs_no_job(
        tmp_path: Path, federation_data: dict[str, Any], certificates: Certs) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates,
                           with_certificate=("bob", "carol"))
    err = one_problem(full_spec(), config, fed)
    assert err.field == "(node)"
    assert "TLS_CERT=" in str(err) and "party alice has no certificate" in str(err)
