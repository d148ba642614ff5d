"""Three parties (three_parties) run real SecretFlow jobs together."""
from __future__ import annotations

import json

import pytest

from conftest import PARTIES, RANGES, psi_spec, unique_job_id, upload_psi_input
from shared import ENV_FILE, RAY_UNIT, WORKER_UNIT, job_process_alive, wait_for

VENV_SFNODE = "/usr/local/bin/sfnode"


def test_ping_across_three_parties(three_parties):
    run = three_parties.run({"job_id": unique_job_id("ping"), "kind": "ping",
                             "parties": ["alice", "bob", "carol"], "slot": 0})
    assert run.rc == 0, run
    assert set(run.results) == set(PARTIES)
    assert all(r["ok"] for r in run.results.values()), run


def test_spu_sum_across_three_parties(three_parties):
    values = {"alice": 3, "bob": 4, "carol": 5}
    run = three_parties.run({"job_id": unique_job_id("sum"), "kind": "spu_sum",
                             "parties": ["alice", "bob", "carol"], "slot": 1, "params": {"values": values}})
    assert run.rc == 0, run
    for pid, result in run.results.items():
        assert result["ok"], run
        assert result["result"]["sum"] == 12, (pid, result)


@pytest.fixture(scope="module")
def psi_inputs(three_parties, tmp_path_factory):
    work = tmp_path_factory.mktemp("psi")
    for pid in RANGES:
        path = upload_psi_input(three_parties, pid, work)
    return path


def test_two_psi_jobs_at_once_on_different_slots(three_parties, psi_inputs, party_hosts):
    first = three_parties.start(psi_spec("alice", "bob", 2, psi_inputs))
    second = three_parties.start(psi_spec("bob", "carol", 3, psi_inputs))
    ab, bc = three_parties.finish(first), three_parties.finish(second)
    assert ab.rc == 0, ab
    assert bc.rc == 0, bc
    expected = {("alice", "bob"): ({"alice": 3000, "bob": 3000}, 1000),
                ("bob", "carol"): ({"bob": 3000, "carol": 1500}, 500)}
    for run, pair in ((ab, ("alice", "bob")), (bc, ("bob", "carol"))):
        originals, common = expected[pair]
        assert set(run.results) == set(pair), run
        for pid in pair:
            result = run.results[pid]["result"]
            assert result["original_count"] == originals[pid], (pid, result)
            assert result["intersection_count"] == common, (pid, result)
    # the receiver's output file really holds the intersection
    out = ab.results["alice"]["result"]["output_path"]
    lines = party_hosts["alice"].check_output(f"wc -l < {out}")
    assert int(lines) == 1000 + 1


def test_a_slot_outside_the_port_ranges_is_refused_with_the_valid_range(three_parties):
    run = three_parties.run({"job_id": unique_job_id("badslot"), "kind": "ping", "parties": ["alice", "bob"],
                             "slot": 999})
    assert run.rc != 0
    text = json.dumps(run.results)
    assert "slot" in text and "999" in text and "0..31" in text, run


def test_malformed_params_are_answered_by_the_workers_which_stay_up(three_parties, party_hosts):
    """A well-addressed spec with bad params travels through both brokers;
    each worker answers with the field, and keeps serving."""
    run = three_parties.run({"job_id": unique_job_id("badparams"), "kind": "spu_sum", "parties": ["alice", "bob"],
                             "slot": 6, "params": {"values": {"alice": "three", "bob": 4}}})
    assert run.rc != 0
    assert set(run.results) == {"alice", "bob"}, run
    for pid, result in run.results.items():
        assert result["ok"] is False
        assert "params.values.alice" in json.dumps(result), (pid, result)
    for pid, host in party_hosts.items():
        assert host.service(WORKER_UNIT).is_running, pid
        assert host.run(f"{VENV_SFNODE} health --timeout 60").rc == 0, pid


def test_spec_naming_an_unknown_party_is_refused(three_parties, party_hosts):
    run = three_parties.run({"job_id": unique_job_id("ghost"), "kind": "ping", "parties": ["alice", "mallory"],
                             "slot": 0})
    assert run.rc != 0
    text = json.dumps(run.results) + " ".join(run.failures)
    assert "mallory" in text, run
    assert party_hosts["alice"].service(WORKER_UNIT).is_running


def test_a_peer_that_never_answers_fails_at_the_deadline_naming_it(party_hosts, tmp_path):
    """Only alice gets the job; bob never joins, so alice must give up at the deadline."""
    alice = party_hosts["alice"]
    job_id = unique_job_id("lonely")
    spec = {"job_id": job_id, "kind": "ping", "parties": ["alice", "bob"], "slot": 5, "deadline_seconds": 40}
    alice.run_expect([0], f"echo '{json.dumps(spec)}' > /tmp/{job_id}.json")
    out = alice.run(f"{VENV_SFNODE} submit /tmp/{job_id}.json")
    assert out.rc != 0
    doc = json.loads(out.stdout)
    result = doc["results"]["alice"]
    assert result["ok"] is False
    assert result["phase"] == "init", result
    assert "bob" in result["error"], result
    # the job process is gone and the worker still serves
    # ([s] keeps pgrep from matching the shell that runs it)
    assert not job_process_alive(alice, job_id)
    assert alice.run(f"{VENV_SFNODE} health --timeout 60").rc == 0


def test_a_node_keeps_warm_ray_workers_and_a_standby_runner_between_jobs(party_hosts):
    """After the jobs above: alice's Ray head has its warm workers back (idle, SecretFlow
    preloaded) and her worker a runner waiting for the next job."""
    alice = party_hosts["alice"]
    warm = int(alice.check_output(f"grep '^RAY_WARM_WORKERS=' {ENV_FILE}").split("=", 1)[1])
    assert warm >= 1

    def pool() -> tuple[int, int]:
        args = alice.check_output("ps -eo args").splitlines()
        idle = sum(1 for line in args if line.startswith("ray::IDLE"))
        standby = sum(1 for line in args if "-m sfnode.runner --standby" in line)
        return idle, standby

    wait_for(lambda: (lambda p: p[0] >= warm and p[1] >= 1)(pool()), 120,
             lambda: f"{warm} idle Ray workers and a standby runner (now: {pool()})")
    preload = alice.check_output(f"systemctl show -p Environment {RAY_UNIT}")
    assert "RAY_preload_python_modules=secretflow,spu,fed" in preload
