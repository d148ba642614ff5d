"""The standby runner: started (and importing) before its job, then handed the job."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from conftest import full_spec
from sfnode import runner, supervise
from sfnode.config import NodeConfig, child_environment
from sfnode.federation import Federation
from sfnode.jobdir import process_start
from sfnode.supervise import Standby, run_job

SUCCEEDS = ("import json, os, sys; json.dump({'ok': True, 'final': True, 'phase': 'done', "
            "'result': {'fresh': True}}, open(os.path.join(sys.argv[2], 'result.json'), 'w'))")


def fresh_runner(spec_path: Path, workdir: Path) -> list[str]:
    return [sys.executable, "-c", SUCCEEDS, str(spec_path), str(workdir)]


def started(config: NodeConfig, preload: tuple[str, ...] = ("json",)) -> tuple[Standby, int]:
    config.job_dir.mkdir(parents=True, exist_ok=True)
    standby = Standby(preload)
    standby.start(child_environment(config), config.job_dir)
    pid = standby._proc.pid if standby._proc else 0
    return standby, pid


def test_the_standby_runs_the_job_in_its_work_dir_with_its_log(
        config: NodeConfig, federation: Federation) -> None:
    standby, pid = started(config)
    # The real runner, in the standby process: SecretFlow is not installed here, so the
    # job fails in its import phase, as a runner started anew would.
    answer = run_job(full_spec(), config, federation=federation, standby=standby,
                     runner_command=fresh_runner, poll_seconds=0.05)
    workdir = config.job_dir / "ping-0001"
    status = json.loads((workdir / "status.json").read_text())
    assert status["pid"] == pid and isinstance(status["pid_start"], int)
    assert answer["ok"] is False and answer["phase"] == "import"
    assert "secretflow" in answer["error"]
    # its stdout and stderr are the job's log
    assert "ModuleNotFoundError" in (workdir / "runner.log").read_text()
    assert json.loads((workdir / "result.json").read_text())["final"] is True


def test_a_standby_of_another_environment_is_ended_and_the_runner_starts_anew(
        config: NodeConfig, federation: Federation) -> None:
    standby, pid = started(config)
    changed = replace(config, job_deadline_seconds=601)
    answer = run_job(full_spec(), changed, federation=federation, standby=standby,
                     runner_command=fresh_runner, poll_seconds=0.05)
    assert answer["ok"] is True and answer["result"] == {"fresh": True}
    deadline = time.monotonic() + 5
    while process_start(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_start(pid) is None


def test_a_standby_whose_supervisor_is_gone_exits() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.close()  # the supervisor went away without sending an order
    assert runner.standby(["json"], theirs) is None


def test_a_standby_runner_is_known_by_its_start_time(tmp_path: Path) -> None:
    # a process named like a runner, without the job id in its command line
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                             "-m", supervise.RUNNER_MODULE, "--standby"])
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        deadline = time.monotonic() + 5  # a loaded machine may show the fork before the exec
        while supervise.RUNNER_MODULE.encode() not in cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        status = {"pid": proc.pid, "pid_start": process_start(proc.pid)}
        assert supervise._runner_alive(status, "job-1") is True
        assert supervise._runner_alive({**status, "pid_start": status["pid_start"] + 1},
                                       "job-1") is False
        assert supervise._runner_alive({"pid": proc.pid}, "job-1") is False
    finally:
        proc.kill()
        proc.wait()
