from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import full_spec, tls_node
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode import supervise
from sfnode.supervise import SlotLock, run_job

# Stand-in runners: tiny scripts given as the runner command, so no SecretFlow is needed.
HANGS_IN_INIT = textwrap.dedent("""
    import json, os, signal, subprocess, sys, time
    workdir = sys.argv[2]
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    open(os.path.join(workdir, "grandchild.pid"), "w").write(str(child.pid))
    status = {"phase": "init", "phases": {"import": 1, "init": 2}, "peers": {
        "bob": {"address": "10.89.0.3:20000", "answered": False, "answered_at": None}}}
    json.dump(status, open(os.path.join(workdir, "status.json"), "w"))
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # even a runner deaf to SIGTERM must go
    time.sleep(600)
""")

SUCCEEDS = textwrap.dedent("""
    import json, os, sys, time
    workdir = sys.argv[2]
    time.sleep(float(os.environ.get("STANDIN_SLEEP", "0")))
    result = {"ok": True, "final": True, "phase": "done", "phases": {"done": 1},
              "result": {"ray_address_env": os.environ.get("RAY_ADDRESS"),
                         "node_id": os.environ.get("NODE_ID"),
                         "spec": json.load(open(sys.argv[1]))["job_id"]}}
    json.dump(result, open(os.path.join(workdir, "result.json"), "w"))
""")

CRASHES = "import sys; print('boom: no secretflow here', file=sys.stderr); sys.exit(3)"


def standin(script: str):
    def command(spec_path: Path, workdir: Path) -> list[str]:
        return [sys.executable, "-c", script, str(spec_path), str(workdir)]
    return command


def is_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return any(line.split()[1] == "Z" for line in handle if line.startswith("State:"))
    except FileNotFoundError:
        return True


def test_deadline_kills_group_and_names_phase_and_silent_peer(
        config: NodeConfig, federation: Federation) -> None:
    spec = full_spec(deadline_seconds=2)
    started = time.monotonic()
    answer = run_job(spec, config, federation=federation, runner_command=standin(HANGS_IN_INIT),
                     grace_seconds=0.5, poll_seconds=0.1)
    elapsed = time.monotonic() - started
    assert 2 <= elapsed < 8
    assert answer["ok"] is False and answer["timed_out"] is True
    assert answer["phase"] == "init"
    assert answer["silent_peers"] == [{"id": "bob", "address": "10.89.0.3:20000"}]
    error = answer["error"]
    assert "job 'ping-0001' on party alice missed its 2 s deadline in phase 'init'" in error
    assert "bob (10.89.0.3:20000)" in error
    assert "process group was killed" in error and "Ray removes the job's" in error
    grandchild = int((config.job_dir / "ping-0001" / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while not is_gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert is_gone(grandchild), "the runner's child outlived the deadline"


def test_success_reads_result_and_drops_ray_address(
        config: NodeConfig, federation: Federation, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    answer = run_job(full_spec(), config, federation=federation,
                     runner_command=standin(SUCCEEDS), poll_seconds=0.05)
    assert answer["ok"] is True, answer
    assert answer["phase"] == "done"
    assert answer["result"] == {"ray_address_env": None, "node_id": "alice", "spec": "ping-0001"}
    assert set(answer) >= {"ok", "job_id", "party", "kind", "phase", "result", "seconds"}
    workdir = config.job_dir / "ping-0001"
    assert json.loads((workdir / "spec.json").read_text())["parties"][1]["id"] == "bob"
    json.dumps(answer)


def test_crash_without_result_reports_log_tail(config: NodeConfig,
                                               federation: Federation) -> None:
    answer = run_job(full_spec(), config, federation=federation, runner_command=standin(CRASHES),
                     poll_seconds=0.05)
    assert answer["ok"] is False
    assert "exited with code 3 in phase 'start' without writing a final result" in answer["error"]
    assert "boom: no secretflow here" in answer["error"]
    # recorded as the job's end: a redelivered task replays it, a worker start keeps it
    recorded = json.loads((config.job_dir / "ping-0001" / "result.json").read_text())
    assert recorded == {"ok": False, "final": True, "phase": "start", "error": answer["error"]}
    again = run_job(full_spec(), config, federation=federation, runner_command=standin(CRASHES),
                    poll_seconds=0.05)
    assert again["replayed"] is True and again["error"] == answer["error"], again


def test_bad_spec_is_an_answer(config: NodeConfig, federation: Federation) -> None:
    spec = full_spec(kind="pong")
    answer = run_job(spec, config, federation=federation, runner_command=standin(CRASHES))
    assert answer["ok"] is False and answer["phase"] == "validate"
    assert answer["problems"][0]["field"] == "kind"
    assert not (config.job_dir / "ping-0001").exists()


def test_slot_lock_rejects_second_job_on_same_slot(
        config: NodeConfig, federation: Federation, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_SLEEP", "2")
    first: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: first.update(run_job(
        full_spec(job_id="first-job"), config, federation=federation,
        runner_command=standin(SUCCEEDS), poll_seconds=0.05)))
    thread.start()
    lock_file = config.job_dir / ".slots" / "0.lock"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (
            lock_file.exists() and lock_file.read_text() == "first-job"):
        time.sleep(0.02)
    second = run_job(full_spec(job_id="second-job"), config, federation=federation,
                     runner_command=standin(SUCCEEDS))
    other_slot = run_job(full_spec(job_id="third-job", slot=1), config, federation=federation,
                         runner_command=standin(SUCCEEDS), poll_seconds=0.05)
    thread.join()
    assert second["ok"] is False
    assert second["error"].startswith(
        "slot 0 on party alice is busy with job 'first-job'; retry job 'second-job'")
    assert not (config.job_dir / "second-job").exists()
    assert other_slot["ok"] is True
    assert first["ok"] is True
    # Free again once the first job is over.
    assert run_job(full_spec(job_id="fourth-job"), config, federation=federation,
                   runner_command=standin(SUCCEEDS), poll_seconds=0.05)["ok"] is True


def test_slot_lock_records_holder(tmp_path: Path) -> None:
    with SlotLock(tmp_path, 3, "holder-job") as lock:
        assert (tmp_path / ".slots" / "3.lock").read_text() == "holder-job"
        assert lock.fd is not None
    assert (tmp_path / ".slots" / "3.lock").read_text() == ""


def test_job_id_reuse(config: NodeConfig, federation: Federation) -> None:
    spec = full_spec()
    first = run_job(spec, config, federation=federation, runner_command=standin(SUCCEEDS),
                    poll_seconds=0.05)
    again = run_job(spec, config, federation=federation, runner_command=standin(CRASHES))
    assert again["ok"] is True and again["replayed"] is True
    assert again["result"] == first["result"]
    changed = full_spec(deadline_seconds=30)
    refused = run_job(changed, config, federation=federation, runner_command=standin(SUCCEEDS))
    assert refused["ok"] is False
    assert "job_id 'ping-0001' was already used on party alice" in refused["error"]
    assert "with a different spec" in refused["error"]


def test_unreadable_federation_is_an_answer(config: NodeConfig) -> None:
    os.remove(config.federation_file)
    answer = run_job(full_spec(), config)
    assert answer["ok"] is False and "cannot read" in answer["error"]


HANGS_IN_RUN = HANGS_IN_INIT.replace('"phase": "init"', '"phase": "run"')


def test_a_deadline_past_init_names_the_peers_that_stopped_answering(
        config: NodeConfig, federation: Federation, monkeypatch: pytest.MonkeyPatch) -> None:
    probed = []

    def tcp_port_open(host: str, port: int, timeout: float) -> bool:
        probed.append(f"{host}:{port}")
        return False

    monkeypatch.setattr(supervise, "tcp_port_open", tcp_port_open)
    answer = run_job(full_spec(deadline_seconds=2), config, federation=federation,
                     runner_command=standin(HANGS_IN_RUN), grace_seconds=0.5, poll_seconds=0.1)
    assert answer["ok"] is False and answer["phase"] == "run"
    assert probed == ["10.89.0.3:20000"]
    assert answer["silent_peers"] == [{"id": "bob", "address": "10.89.0.3:20000"}]
    assert "these peers no longer answer on their rayfed port" in answer["error"]
    assert "bob (10.89.0.3:20000)" in answer["error"]


def _abandoned(config: NodeConfig, job_id: str, phase: str, pid: int | None = None,
               final: bool = False) -> Path:
    workdir = config.job_dir / job_id
    workdir.mkdir(parents=True)
    (workdir / "spec.json").write_text(json.dumps(full_spec() | {"job_id": job_id}))
    (workdir / "status.json").write_text(json.dumps({"phase": phase, "pid": pid}))
    if final:
        (workdir / "result.json").write_text(json.dumps({"ok": True, "final": True, "phase": "done"}))
    return workdir


def test_a_worker_start_answers_jobs_its_predecessor_abandoned(config: NodeConfig,
                                                               federation: Federation) -> None:
    # a runner that outlived its worker, and a job whose runner is already gone
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "sfnode.runner",
                               "orphan-1"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10  # until the child has exec'd
        while b"sfnode.runner" not in Path(f"/proc/{runner.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        _abandoned(config, "orphan-1", "run", pid=runner.pid)
        _abandoned(config, "gone-1", "init", pid=None)
        _abandoned(config, "done-1", "done", final=True)
        answers = {a["job_id"]: a for a in supervise.reap_abandoned(config)}
        assert set(answers) == {"orphan-1", "gone-1"}
        assert runner.wait(timeout=5) == -signal.SIGKILL
    finally:
        if runner.poll() is None:
            runner.kill()
    orphan = answers["orphan-1"]
    assert orphan["ok"] is False and orphan["phase"] == "run" and orphan["party"] == "alice"
    assert "its worker stopped" in orphan["error"] and "phase 'run'" in orphan["error"]
    assert answers["gone-1"]["phase"] == "init"
    # recorded as final: a redelivered task replays the failure, a second start finds nothing
    assert supervise.reap_abandoned(config) == []
    replay = run_job(full_spec() | {"job_id": "gone-1"}, config, federation=federation,
                     runner_command=standin(SUCCEEDS))
    assert replay["ok"] is False and replay.get("replayed") is True, replay


def test_a_finished_job_whose_answer_was_never_stored_is_answered_at_worker_start(
        config: NodeConfig) -> None:
    """The worker died after the runner's final result but before Celery stored
    the answer: the next worker answers from the result (recent ones only)."""
    _abandoned(config, "unanswered-1", "done", final=True)
    _abandoned(config, "answered-1", "done", final=True)
    old = _abandoned(config, "old-1", "done", final=True)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old / "result.json", (two_days_ago, two_days_ago))
    stored = {"answered-1"}
    answers = supervise.reap_abandoned(config, lambda job_id: job_id in stored, within_seconds=86400)
    assert [a["job_id"] for a in answers] == ["unanswered-1"]
    answer = answers[0]
    assert answer["ok"] is True and answer["recovered"] is True and answer["phase"] == "done"
    assert answer["party"] == "alice" and answer["workdir"] == str(config.job_dir / "unanswered-1")
    # without a backend to ask (the default), a finished job is never answered again
    assert supervise.reap_abandoned(config) == []


def test_a_redelivered_job_waits_for_its_own_runner_instead_of_calling_its_slot_busy(
        config: NodeConfig, federation: Federation, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lost pool child's task comes back while the runner it started still
    holds the slot: the retry answers with that runner's result."""
    monkeypatch.setenv("STANDIN_SLEEP", "2")
    first: dict[str, Any] = {}
    spec = full_spec(job_id="redelivered-1")
    thread = threading.Thread(target=lambda: first.update(run_job(
        spec, config, federation=federation, runner_command=standin(SUCCEEDS), poll_seconds=0.05)))
    thread.start()
    lock_file = config.job_dir / ".slots" / "0.lock"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (
            lock_file.exists() and lock_file.read_text() == "redelivered-1"):
        time.sleep(0.02)
    retry = run_job(spec, config, federation=federation, runner_command=standin(SUCCEEDS),
                    poll_seconds=0.05)
    thread.join()
    assert retry["ok"] is True and retry["adopted"] is True, retry
    assert retry["result"]["spec"] == "redelivered-1"
    assert first["ok"] is True
    # the slot is free again
    assert run_job(full_spec(job_id="after-1"), config, federation=federation,
                   runner_command=standin(SUCCEEDS), poll_seconds=0.05)["ok"] is True


# Records the job's trust bundle as the runner finds it when it starts.
READS_TRUST_BUNDLE = textwrap.dedent("""
    import json, os, sys
    workdir = sys.argv[2]
    path = os.path.join(workdir, "peers.pem")
    bundle = open(path).read() if os.path.exists(path) else None
    result = {"ok": True, "final": True, "phase": "done",
              "result": {"bundle": bundle, "tls_cert": os.environ.get("TLS_CERT")}}
    json.dump(result, open(os.path.join(workdir, "result.json"), "w"))
""")


def test_the_runner_starts_with_the_trust_bundle_of_the_jobs_other_parties(
        tmp_path: Path, federation_data: dict[str, Any],
        certificates: dict[str, tuple[str, str]]) -> None:
    config, fed = tls_node(tmp_path, federation_data, certificates)
    answer = run_job(full_spec(), config, federation=fed,
                     runner_command=standin(READS_TRUST_BUNDLE), poll_seconds=0.05)
    assert answer["ok"] is True, answer
    # bob's certificate only: not alice's own, not carol's (a federation party outside the job)
    assert answer["result"]["bundle"] == certificates["bob"][0]
    assert answer["result"]["tls_cert"] == str(config.tls_cert)
    bundle = config.job_dir / "ping-0001" / "peers.pem"
    assert bundle.stat().st_mode & 0o7777 == 0o640
    three = run_job(full_spec(job_id="three-1", parties=("carol", "alice", "bob")), config,
                    federation=fed, runner_command=standin(READS_TRUST_BUNDLE), poll_seconds=0.05)
    assert three["result"]["bundle"] == certificates["carol"][0] + certificates["bob"][0]


def test_without_tls_no_trust_bundle_is_written(config: NodeConfig,
                                                federation: Federation) -> None:
    answer = run_job(full_spec(), config, federation=federation,
                     runner_command=standin(READS_TRUST_BUNDLE), poll_seconds=0.05)
    assert answer["ok"] is True, answer
    assert answer["result"] == {"bundle": None, "tls_cert": ""}
    assert not (config.job_dir / "ping-0001" / "peers.pem").exists()


RECORDS_GATE = textwrap.dedent("""
    import json, os, sys
    workdir = sys.argv[2]
    asked = json.load(open(os.environ["GATE_RECORD"]))
    result = {"ok": True, "final": True, "phase": "done",
              "result": {"gate_when_running": asked}}
    json.dump(result, open(os.path.join(workdir, "result.json"), "w"))
""")


def test_the_jobs_ports_are_gated_to_its_peers_while_the_runner_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, federation: Federation) -> None:
    from conftest import env_for
    (tmp_path / "federation.json").write_text(json.dumps(federation.to_dict()))
    for sub in ("data", "jobs"):
        (tmp_path / sub).mkdir()
    config = NodeConfig.from_mapping(env_for(tmp_path, PORT_GATE=str(tmp_path / "gate.sock")))
    record = tmp_path / "gate.json"
    monkeypatch.setenv("GATE_RECORD", str(record))
    asked: list[dict[str, Any]] = []

    def ask(path: Path, request: Any) -> dict[str, Any]:
        asked.append({"path": str(path), **request.to_dict()})
        record.write_text(json.dumps(asked))
        return {"ok": True}

    answer = run_job(full_spec(slot=3, parties=("carol", "alice", "bob")), config, federation=federation,
                     runner_command=standin(RECORDS_GATE), poll_seconds=0.05, ask_gate=ask)
    assert answer["ok"] is True, answer
    opened = {"path": str(tmp_path / "gate.sock"), "action": "open", "job_id": "ping-0001",
              "ports": [20003, 21003], "peers": ["10.89.0.3", "10.89.0.4"], "seconds": 60 + 120}
    # the gate was open when the runner ran, and closed after it
    assert answer["result"]["gate_when_running"] == [opened]
    assert asked == [opened, {**opened, "action": "close"}]


def test_a_job_whose_gate_does_not_open_never_starts(tmp_path: Path, federation: Federation) -> None:
    from conftest import env_for
    (tmp_path / "federation.json").write_text(json.dumps(federation.to_dict()))
    for sub in ("data", "jobs"):
        (tmp_path / sub).mkdir()
    config = NodeConfig.from_mapping(env_for(tmp_path, PORT_GATE=str(tmp_path / "none.sock")))
    answer = run_job(full_spec(), config, federation=federation,
                     runner_command=standin(SUCCEEDS), poll_seconds=0.05)
    assert answer["ok"] is False and answer["phase"] == "start", answer
    assert answer["error"].startswith(f"party alice: the port gate at {tmp_path}/none.sock did not answer")
    workdir = config.job_dir / "ping-0001"
    # the stand-in would have written ok: true
    assert json.loads((workdir / "result.json").read_text())["ok"] is False
    assert "did not answer" in (workdir / "runner.log").read_text()
    again = run_job(full_spec(), config, federation=federation, runner_command=standin(SUCCEEDS),
                    poll_seconds=0.05)
    assert again["replayed"] is True and again["error"] == answer["error"], again


def _cancel(config: NodeConfig, job_id: str, by: str, reason: str) -> None:
    from sfnode.jobdir import write_cancel
    write_cancel(config.job_dir, job_id, by, reason)


def test_a_job_cancelled_by_a_party_ends_at_once_naming_it(config: NodeConfig,
                                                          federation: Federation) -> None:
    answers: list[dict[str, object]] = []
    runner = threading.Thread(target=lambda: answers.append(run_job(
        full_spec(deadline_seconds=60), config, federation=federation,
        runner_command=standin(HANGS_IN_RUN), grace_seconds=0.5, poll_seconds=0.05)))
    started = time.monotonic()
    runner.start()
    workdir = config.job_dir / "ping-0001"
    while not (workdir / "grandchild.pid").exists():
        assert time.monotonic() - started < 10, "the runner never started"
        time.sleep(0.05)
    _cancel(config, "ping-0001", "bob", "bob's input is unreadable")
    runner.join(15)
    assert not runner.is_alive() and time.monotonic() - started < 15
    answer = answers[0]
    assert answer["ok"] is False and answer["cancelled_by"] == "bob" and answer["phase"] == "run"
    assert answer["error"] == ("job 'ping-0001' on party alice was ended by party bob: "
                               "bob's input is unreadable")
    assert json.loads((workdir / "result.json").read_text())["final"] is True
    grandchild = int((workdir / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while not is_gone(grandchild):
        assert time.monotonic() < deadline, "the runner's group outlived the cancellation"
        time.sleep(0.05)


# A runner whose peer was ended on purpose: its link breaks and it fails by itself (rayfed
# exits after a failed send), while the peer's word is on its way.
FAILS_WHEN_ITS_PEER_ENDS = textwrap.dedent("""
    import json, os, sys, time
    workdir = sys.argv[2]
    json.dump({"phase": "run", "pid": os.getpid()}, open(os.path.join(workdir, "status.json"), "w"))
    open(os.path.join(workdir, "running"), "w").close()
    while not os.path.exists(os.path.join(workdir, "peer-ended")):
        time.sleep(0.02)
    sys.exit(1)
""")


def test_a_runner_that_fails_as_its_peer_is_ended_names_the_party_that_ended_it(
        config: NodeConfig, federation: Federation) -> None:
    answers: list[dict[str, object]] = []
    runner = threading.Thread(target=lambda: answers.append(run_job(
        full_spec(deadline_seconds=60), config, federation=federation,
        runner_command=standin(FAILS_WHEN_ITS_PEER_ENDS), grace_seconds=0.5, poll_seconds=0.05)))
    runner.start()
    workdir = config.job_dir / "ping-0001"
    deadline = time.monotonic() + 10
    while not (workdir / "running").exists():
        assert time.monotonic() < deadline, "the runner never started"
        time.sleep(0.02)
    (workdir / "peer-ended").touch()  # bob's runner is killed: this one fails at once...
    time.sleep(0.1)
    _cancel(config, "ping-0001", "bob", "wrong file")  # ...and bob's word comes a moment later
    runner.join(15)
    answer = answers[0]
    assert answer["ok"] is False and answer["cancelled_by"] == "bob", answer
    assert answer["error"].startswith("job 'ping-0001' on party alice was ended by party bob: wrong file")


def test_a_runner_that_fails_by_itself_keeps_its_own_error(config: NodeConfig,
                                                          federation: Federation) -> None:
    answer = run_job(full_spec(), config, federation=federation, runner_command=standin(CRASHES),
                     poll_seconds=0.05)
    assert answer["ok"] is False and "cancelled_by" not in answer and "bob" not in answer["error"]


def test_a_cancelled_job_never_starts_and_a_stranger_cannot_cancel(
        config: NodeConfig, federation: Federation) -> None:
    _cancel(config, "ping-0001", "alice", "not today")
    answer = run_job(full_spec(), config, federation=federation, runner_command=standin(SUCCEEDS))
    assert answer["ok"] is False and answer["phase"] == "start"
    assert "ended by its operator: not today" in answer["error"]
    assert not (config.job_dir / "ping-0001").exists()
    spec = full_spec(job_id="ping-0002")
    _cancel(config, "ping-0002", "carol", "because")  # in the federation, not in the job
    assert run_job(spec, config, federation=federation, runner_command=standin(SUCCEEDS),
                   poll_seconds=0.05)["ok"] is True
    # a stranger's word first does not hide a party's
    _cancel(config, "ping-0003", "carol", "first")
    _cancel(config, "ping-0003", "bob", "bob's reason")
    answer = run_job(full_spec(job_id="ping-0003"), config, federation=federation,
                     runner_command=standin(SUCCEEDS))
    assert answer["ok"] is False and "ended by party bob: bob's reason" in answer["error"]
