"""Faults in the three-party federation (three_parties), each bounded in
time: a killed Ray head, a Redis restart with a job queued, a worker killed
mid-job, a peer stopped during a job."""
from __future__ import annotations

import json
import re
import subprocess

from conftest import PARTIES, SFNODE, node_ip, unique_job_id
from shared import (ENV_FILE, RAY_HEAD, RAY_UNIT, REDIS_UNIT, UNITS, WORKER, WORKER_UNIT, actor_processes,
                    job_phase, job_process_alive, wait_for)


def main_pid(host, unit: str) -> str:
    return host.check_output(f"systemctl show -p MainPID --value {unit}")


def queue_length(host) -> int:
    url = host.check_output(f"grep ^REDIS_URL= {ENV_FILE}").split("=", 1)[1]
    password, port = re.match(r"redis://:([^@]+)@[^:]+:(\d+)/", url).groups()
    out = host.run(f"redis-cli -p {port} --no-auth-warning -a '{password}' LLEN {WORKER['celery_worker_queue']}")
    return int(out.stdout.strip()) if out.rc == 0 and out.stdout.strip().isdigit() else -1


def healthy(host) -> bool:
    return host.run(f"{SFNODE} health --timeout 60").rc == 0


def test_a_killed_ray_head_is_back_within_30_s_and_the_next_job_succeeds(three_parties, party_hosts):
    alice = party_hosts["alice"]
    unit = RAY_UNIT
    old = main_pid(alice, unit)
    alice.run_expect([0], f"kill -9 {old}")
    wait_for(lambda: alice.run(f"systemctl is-active {unit}").stdout.strip() == "active"
             and main_pid(alice, unit) not in ("0", old), 30,
             lambda: "Ray head active again; journal:\n"
             + alice.run(f"journalctl -u {unit} -n 30 --no-pager").stdout)
    ip = node_ip(alice)
    wait_for(lambda: alice.socket(f"tcp://{ip}:{RAY_HEAD['ray_head_port']}").is_listening, 30, "GCS listening again")
    run = three_parties.run({"job_id": unique_job_id("after-kill"), "kind": "ping", "parties": ["alice", "bob"],
                    "slot": 0})
    assert run.rc == 0, run


def test_a_job_queued_while_redis_restarts_still_runs(three_parties, party_hosts):
    bob = party_hosts["bob"]
    bob.run_expect([0], f"systemctl stop {WORKER_UNIT}")
    try:
        proc = three_parties.start({"job_id": unique_job_id("queued"), "kind": "ping", "parties": ["alice", "bob"],
                           "slot": 1, "deadline_seconds": 300})
        wait_for(lambda: queue_length(bob) >= 1, 120, "the job waiting in bob's queue")
        bob.run_expect([0], f"systemctl restart {REDIS_UNIT}")
        assert queue_length(bob) >= 1, "the queued job did not survive the Redis restart"
    finally:
        bob.run_expect([0], f"systemctl start {WORKER_UNIT}")
    run = three_parties.finish(proc, timeout=420)
    assert run.rc == 0, run
    assert set(run.results) == {"alice", "bob"} and all(r["ok"] for r in run.results.values()), run


def test_a_worker_killed_mid_job_answers_failed_and_leaves_no_orphans(party_hosts):
    """alice alone gets the job, so it stays in sf.init (rayfed's proxy actors
    up, waiting for bob) until her worker is killed with SIGKILL."""
    alice = party_hosts["alice"]
    job_id = unique_job_id("killed")
    spec = {"job_id": job_id, "kind": "ping", "parties": ["alice", "bob"], "slot": 2, "deadline_seconds": 400}
    alice.run_expect([0], f"echo '{json.dumps(spec)}' > /tmp/{job_id}.json")
    submit = subprocess.Popen(["podman", "exec", PARTIES["alice"], SFNODE, "submit", f"/tmp/{job_id}.json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: job_phase(alice, job_id) == "init", 180, "the job in sf.init")
        during = wait_for(lambda: actor_processes(alice), 60, "the job's actors on alice's Ray head")
        unit = WORKER_UNIT
        old = main_pid(alice, unit)
        alice.run_expect([0], f"kill -9 {old}")
        out, err = submit.communicate(timeout=400)
    finally:
        if submit.poll() is None:
            submit.kill()
    answer = json.loads(out)["results"]["alice"]
    assert answer["ok"] is False and answer.get("abandoned") is True, (answer, err)
    assert "its worker stopped" in answer["error"] and "phase 'init'" in answer["error"], answer
    assert not job_process_alive(alice, job_id), "the job process outlived its worker"
    wait_for(lambda: not actor_processes(alice), 90,
             lambda: f"the job's Ray actors gone (during the job: {during}; now: {actor_processes(alice)})")
    assert main_pid(alice, unit) not in ("0", old)
    assert healthy(alice)


def test_a_peer_stopped_during_a_job_fails_it_at_the_deadline_naming_the_peer(three_parties, party_hosts):
    """bob's part is queued (his worker is down) while alice's part runs; then
    bob's whole party stops. alice gives up at the deadline, naming bob."""
    alice, bob = party_hosts["alice"], party_hosts["bob"]
    services = " ".join(reversed(UNITS))  # the worker first
    job_id = unique_job_id("peer-down")
    bob.run_expect([0], f"systemctl stop {WORKER_UNIT}")
    try:
        proc = three_parties.start({"job_id": job_id, "kind": "ping", "parties": ["alice", "bob"], "slot": 3,
                           "deadline_seconds": 30})
        wait_for(lambda: job_phase(alice, job_id) == "init", 180, "alice's part in sf.init")
        bob.run_expect([0], f"systemctl stop {services}")
        run = three_parties.finish(proc, timeout=400)
    finally:
        bob.run_expect([0], f"systemctl start {services}")
    assert run.rc != 0, run
    result = run.results["alice"]
    assert result["ok"] is False and result["phase"] == "init", run
    assert "missed its 30 s deadline" in result["error"] and "bob" in result["error"], result
    assert not job_process_alive(alice, job_id)
    assert healthy(alice)
    wait_for(lambda: healthy(bob), 180, "bob healthy again after his services restart")
