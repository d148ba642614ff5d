"""The parent side of a job, called by the Celery task.

Validate the spec, take the slot's lock, prepare the job's work dir (the spec
and, on a node with TLS, the trust bundle of the job's peers), start the
runner in a session of its own (the port gate, where there is one, keeping
the slot's ports to the job's peers meanwhile), wait until the deadline and,
past it, kill the runner's whole process group. The answer is always a JSON-able dict;
this module does not raise for anything a job or an operator can get wrong.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sfnode import gate, jobdir, warm
from sfnode.config import NodeConfig, child_environment
from sfnode.federation import Federation, FederationError, load_federation
from sfnode.jobdir import (LOG_NAME, RESULT_NAME, SPEC_NAME, STATUS_NAME, process_start,
                           read_json, write_json_atomic)
from sfnode.jobspec import JobSpec
from sfnode.netprobe import tcp_port_open
from sfnode.spec import SpecError, validate_spec

RunnerCommand = Callable[[Path, Path], Sequence[str]]
GateAsker = Callable[[Path, gate.GateRequest], object]

KILL_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.5
# A runner that failed by itself may have lost a peer that was ended on purpose: that
# peer's word (a cancellation) is waited for this long, to name the real cause.
CANCEL_GRACE_SECONDS = 1.5
# The runner is started by this module path, and recognised by it (with its
# job id) in /proc/PID/cmdline after a worker restart.
RUNNER_MODULE = "sfnode.runner"
PEER_PROBE_TIMEOUT_SECONDS = 2.0
ACTOR_CLEANUP_NOTE = (
    "Ray removes the job's non-detached actors (PYU/SPU) once their driver process is gone"
)


def default_runner_command(spec_path: Path, workdir: Path) -> list[str]:
    return [sys.executable, "-m", RUNNER_MODULE, "--spec", str(spec_path),
            "--workdir", str(workdir)]


WARM_RECOUNT_SECONDS = 5.0
# What a standby runner imports before its job comes (sf.init imports rayfed and
# secretflow_fl, with Ray Tune: 0.8 s).
STANDBY_PRELOAD = ("secretflow", "secretflow_fl", "fed.api")


class Standby:
    """At most one runner started ahead of its job by this process (a Celery pool process).

    It imports SecretFlow while no job waits for it, then blocks on a unix socket until
    :meth:`hand` gives it a job (see ``sfnode.runner.standby``). It runs one job only, as
    a runner started for the job would: its own process and session, the node's
    environment, the job's log and slot lock. A standby whose supervisor is gone reads
    the end of its socket and exits.
    """

    def __init__(self, preload: Sequence[str] = STANDBY_PRELOAD) -> None:
        self.preload = tuple(preload)
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self._env: dict[str, str] | None = None

    def command(self) -> list[str]:
        preload = [arg for module in self.preload for arg in ("--preload", module)]
        return [sys.executable, "-m", RUNNER_MODULE, "--standby", *preload]

    def start(self, env: dict[str, str], cwd: Path) -> None:
        """Start a standby for the next job unless one is waiting with this environment."""
        if self._proc is not None and self._proc.poll() is None and self._env == env:
            return
        self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen(
                self.command(), stdin=theirs, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd=cwd, env=env, start_new_session=True)
        except OSError:
            ours.close()
            return
        finally:
            theirs.close()
        self._channel, self._env = ours, dict(env)

    def hand(self, env: dict[str, str], spec_path: Path, workdir: Path, log_fd: int,
             lock_fd: int) -> subprocess.Popen[bytes] | None:
        """Give the waiting standby this job; its process, or None (none waiting, or not
        with this environment: start the runner anew)."""
        proc, channel = self._proc, self._channel
        ready = proc is not None and proc.poll() is None and self._env == env
        self._proc, self._channel, self._env = None, None, None
        if not ready or proc is None or channel is None:
            _end(proc, channel)
            return None
        order = json.dumps({"spec": str(spec_path), "workdir": str(workdir)}).encode()
        try:
            socket.send_fds(channel, [order], [log_fd, lock_fd])
        except OSError:
            _end(proc, channel)
            return None
        channel.close()
        return proc

    def close(self) -> None:
        """End a waiting standby (this process is stopping, or the environment changed)."""
        _end(self._proc, self._channel)
        self._proc, self._channel, self._env = None, None, None


def _end(proc: subprocess.Popen[bytes] | None, channel: socket.socket | None) -> None:
    if channel is not None:
        channel.close()  # a waiting standby reads the end and exits
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


class SlotBusy(Exception):
    def __init__(self, slot: int, holder: str) -> None:
        self.slot = slot
        self.holder = holder
        super().__init__(f"slot {slot} is busy with job {holder!r}")


class SlotLock:
    """An exclusive ``flock`` on ``JOB_DIR/.slots/<slot>.lock`` holding the job id.

    The runner inherits the descriptor, so the slot stays taken as long as the
    runner lives, even if the worker that started it does not.
    """

    def __init__(self, job_dir: Path, slot: int, job_id: str) -> None:
        self.path = jobdir.slot_lock_path(job_dir, slot)
        self.slot = slot
        self.job_id = job_id
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "(unknown)"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SlotBusy(self.slot, holder) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, self.job_id.encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> SlotLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _failure(spec_data: Any, config: NodeConfig, phase: str, error: str, started: float,
             **extra: Any) -> dict[str, Any]:
    data = spec_data if isinstance(spec_data, Mapping) else {}
    job_id = data.get("job_id")
    kind = data.get("kind")
    return {
        "ok": False,
        "job_id": job_id if isinstance(job_id, str) else None,
        "party": config.node_id,
        "kind": kind if isinstance(kind, str) else None,
        "phase": phase,
        "error": error,
        **extra,
        "seconds": round(time.monotonic() - started, 3),
    }


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def kill_process_group(proc: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """SIGTERM the group, wait up to ``grace_seconds`` for its leader, then SIGKILL the group."""
    pgid = proc.pid  # start_new_session=True: the runner leads its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_seconds)
    # Members that outlive their leader (or ignore SIGTERM) go too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()


def run_job(
    spec_data: Any,
    config: NodeConfig,
    *,
    federation: Federation | None = None,
    runner_command: RunnerCommand = default_runner_command,
    grace_seconds: float = KILL_GRACE_SECONDS,
    poll_seconds: float = POLL_SECONDS,
    ask_gate: GateAsker = gate.ask,
    standby: Standby | None = None,
) -> dict[str, Any]:
    """Run one job on this node; ``standby``: the runner waiting for it, if any (see
    :func:`prepare_next` for the next one)."""
    started = time.monotonic()
    try:
        if federation is None:
            federation = load_federation(config.federation_file)
    except FederationError as exc:
        return _failure(spec_data, config, "validate", str(exc), started, problems=exc.problems)
    try:
        spec = validate_spec(spec_data, config, federation)
    except SpecError as exc:
        return _failure(spec_data, config, "validate", str(exc), started,
                        problems=exc.to_dicts())

    lock = SlotLock(config.job_dir, spec.slot, spec.job_id)
    try:
        lock.acquire()
    except SlotBusy as exc:
        if exc.holder == spec.job_id:
            return _adopt_running(spec, config, lock, grace_seconds, poll_seconds, started,
                                  ask_gate)
        return _failure(
            spec_data, config, "validate",
            f"slot {spec.slot} on party {config.node_id} is busy with job {exc.holder!r}; "
            f"retry job {spec.job_id!r} when that job ends, or give it a free slot "
            f"(0..{config.slots - 1})", started)
    try:
        return _run_locked(spec, config, federation, lock, runner_command, grace_seconds,
                           poll_seconds, started, ask_gate, standby)
    finally:
        lock.release()


def prepare_next(config: NodeConfig, standby: Standby) -> None:
    """Between jobs (once the last one is answered): the Ray head's warm workers, and a
    runner waiting for the next job. The workers of the job that just ended may still
    look idle for a moment while Ray ends them: the pool is counted again a few seconds
    later."""
    warm.top_up(config)
    if config.job_dir.is_dir():
        standby.start(child_environment(config), config.job_dir)
    recount = threading.Timer(WARM_RECOUNT_SECONDS, warm.top_up, (config,))
    recount.daemon = True
    recount.start()


def _run_locked(spec: JobSpec, config: NodeConfig, federation: Federation, lock: SlotLock,
                runner_command: RunnerCommand, grace_seconds: float, poll_seconds: float,
                started: float, ask_gate: GateAsker,
                standby: Standby | None = None) -> dict[str, Any]:
    spec_dict = spec.to_dict()
    workdir = jobdir.workdir(config.job_dir, spec.job_id)
    if workdir.exists():
        return _earlier_run(spec, spec_dict, config, workdir, started)
    cancelled = cancellation(spec, config)
    if cancelled is not None:
        return _failure(spec_dict, config, "start", _cancelled_error(spec, config, cancelled),
                        started, cancelled_by=cancelled["by"])
    jobdir.make_workdir(workdir)
    spec_path = workdir / SPEC_NAME
    write_json_atomic(spec_path, spec_dict)
    if config.tls_enabled:
        write_trust_bundle(spec, config, federation, workdir)
    log_path = workdir / LOG_NAME
    assert lock.fd is not None
    try:
        open_gate(spec, config, ask_gate)
    except gate.GateError as exc:
        # final, so that a redelivered task replays this answer
        error = f"party {config.node_id}: {exc}"
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"sfnode.supervise: {error}\n")
        write_json_atomic(workdir / RESULT_NAME,
                          {"ok": False, "final": True, "phase": "start", "error": error})
        return _failure(spec_dict, config, "start", error, started, workdir=str(workdir))
    try:
        env = child_environment(config)
        with log_path.open("ab") as log:
            proc = None
            if standby is not None:
                warm.top_up(config)  # a no-op unless the Ray head lost its warm workers
                proc = standby.hand(env, spec_path, workdir, log.fileno(), lock.fd)
            if proc is None:
                proc = subprocess.Popen(
                    list(runner_command(spec_path, workdir)),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=workdir, env=env, start_new_session=True, pass_fds=(lock.fd,),
                )
        deadline = started + spec.deadline_seconds
        timed_out = False
        cancelled = None
        while proc.poll() is None:
            if time.monotonic() >= deadline:
                timed_out = True
                kill_process_group(proc, grace_seconds)
                break
            cancelled = cancellation(spec, config)
            if cancelled is not None:
                kill_process_group(proc, grace_seconds)
                break
            # wakes as soon as the runner exits, not at the next tick
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=poll_seconds)
    finally:
        close_gate(spec, config, ask_gate, log_path)
    if cancelled is None and not timed_out and proc.returncode != 0:
        cancelled = _cancellation_within(spec, config, min(CANCEL_GRACE_SECONDS, 3 * poll_seconds + 1))
    if cancelled is not None:
        return _cancelled_answer(spec, config, workdir, started, cancelled)
    return _answer(spec, config, workdir, started, timed_out, f"code {proc.returncode}")


def _cancellation_within(spec: JobSpec, config: NodeConfig,
                         seconds: float) -> dict[str, Any] | None:
    """The job's cancellation, waited for up to ``seconds`` (a peer that ended the job tells
    this party about when its end broke this party's links)."""
    give_up = time.monotonic() + seconds
    while True:
        cancelled = cancellation(spec, config)
        if cancelled is not None or time.monotonic() >= give_up:
            return cancelled
        time.sleep(0.1)


def cancellation(spec: JobSpec, config: NodeConfig) -> dict[str, Any] | None:
    """The job's cancellation, if a party of the job (or this node's operator) asked for it:
    ``{"by": PARTY, "reason": TEXT}``. One by anyone else is no cancellation."""
    for marker in jobdir.cancellations(config.job_dir, spec.job_id):
        if marker["by"] in spec.party_ids:
            return {"by": marker["by"], "reason": str(marker.get("reason") or "no reason given")}
    return None


def _cancelled_error(spec: JobSpec, config: NodeConfig, cancelled: Mapping[str, Any]) -> str:
    by = cancelled["by"]
    who = "its operator" if by == config.node_id else f"party {by}"
    return f"job {spec.job_id!r} on party {config.node_id} was ended by {who}: {cancelled['reason']}"


def _cancelled_answer(spec: JobSpec, config: NodeConfig, workdir: Path, started: float,
                      cancelled: Mapping[str, Any]) -> dict[str, Any]:
    """A job ended by a cancellation: final, so a redelivered task replays it. A runner
    that failed by itself meanwhile keeps its own error beside the cancellation's."""
    result = read_json(workdir / RESULT_NAME)
    if isinstance(result, dict) and result.get("final") and result.get("ok"):  # done first
        return _answer(spec, config, workdir, started, False, "an unknown code")
    status = read_json(workdir / STATUS_NAME) or {}
    phase = status.get("phase") or "start"
    error = _cancelled_error(spec, config, cancelled)
    if isinstance(result, dict) and result.get("final") and result.get("error"):
        error = f"{error} (here it failed meanwhile: {result['error']})"[:4000]
    write_json_atomic(workdir / RESULT_NAME, {"ok": False, "final": True, "phase": phase,
                                              "error": error, "cancelled_by": cancelled["by"]})
    return {"job_id": spec.job_id, "party": config.node_id, "kind": spec.kind,
            "workdir": str(workdir), "ok": False, "phase": phase, "error": error,
            "cancelled_by": cancelled["by"], "seconds": round(time.monotonic() - started, 3)}


def gate_request(action: str, spec: JobSpec, config: NodeConfig) -> gate.GateRequest:
    """This party's two ports of the job's slot, for the job's other parties."""
    me = spec.party(config.node_id)
    return gate.job_request(action, spec.job_id, (me.rayfed_port, me.spu_port),
                            (p.ip for p in spec.peers(config.node_id)), spec.deadline_seconds)


def open_gate(spec: JobSpec, config: NodeConfig, ask_gate: GateAsker) -> None:
    """Before the runner opens its ports: they take only the job's peers (no gate: nothing
    to do). GateError when the gate is configured but does not let them in."""
    if config.port_gate is not None:
        ask_gate(config.port_gate, gate_request("open", spec, config))


def close_gate(spec: JobSpec, config: NodeConfig, ask_gate: GateAsker, log_path: Path) -> None:
    """The job has ended: its ports go back to the federation's parties. A failure is
    written to the job's log, not raised (the elements time out at the job's deadline)."""
    if config.port_gate is None:
        return
    try:
        ask_gate(config.port_gate, gate_request("close", spec, config))
    except gate.GateError as exc:
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"sfnode.supervise: {exc}\n")


def write_trust_bundle(spec: JobSpec, config: NodeConfig, federation: Federation,
                       workdir: Path) -> Path:
    """The job's trust bundle: the certificates of its other parties (not of this one, nor
    of a federation party outside the job), from the federation file the spec was
    validated against."""
    peers = [p.id for p in spec.peers(config.node_id)]
    return jobdir.write_peers_cert(workdir, federation.trust_bundle(peers))


def _adopt_running(spec: JobSpec, config: NodeConfig, lock: SlotLock, grace_seconds: float,
                   poll_seconds: float, started: float, ask_gate: GateAsker) -> dict[str, Any]:
    """The job's own runner still holds its slot: the worker process that started it was
    lost and Celery redelivered the task. Wait for that runner (to the job's deadline,
    counted from when it began) and answer with its result, instead of "slot busy"."""
    workdir = jobdir.workdir(config.job_dir, spec.job_id)
    timed_out = False
    while True:
        try:
            lock.acquire()
            break  # the runner has ended: its slot is free
        except SlotBusy as exc:
            if exc.holder != spec.job_id:  # taken by another job since: ours is long gone
                break
        status = read_json(workdir / STATUS_NAME) or {}
        phases = [t for t in (status.get("phases") or {}).values() if isinstance(t, (int, float))]
        if phases and time.time() >= min(phases) + spec.deadline_seconds:
            timed_out = True
            _kill_runner(status, spec.job_id, grace_seconds)
        time.sleep(poll_seconds)
    close_gate(spec, config, ask_gate, workdir / LOG_NAME)
    try:
        return {**_answer(spec, config, workdir, started, timed_out, "an unknown code"),
                "adopted": True}
    finally:
        lock.release()


def _kill_runner(status: Mapping[str, Any], job_id: str, grace_seconds: float) -> None:
    """SIGTERM, then SIGKILL, the process group of ``job_id``'s runner (not a reused pid)."""
    pid = status.get("pid")
    for sig, pause in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 0.0)):
        if not _runner_alive(status, job_id):
            return
        assert isinstance(pid, int)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        time.sleep(pause)


def _answer(spec: JobSpec, config: NodeConfig, workdir: Path, started: float, timed_out: bool,
            exit_code: str) -> dict[str, Any]:
    """The answer of a job whose runner has ended, from its work dir. A runner that ended
    without a final result (killed, crashed) gets this answer as its final result, so
    that a redelivered task replays it and the next worker start does not take the job
    for one its worker abandoned."""
    log_path = workdir / LOG_NAME
    base = {"job_id": spec.job_id, "party": config.node_id, "kind": spec.kind,
            "workdir": str(workdir)}
    status = read_json(workdir / STATUS_NAME) or {}
    result = read_json(workdir / RESULT_NAME)
    seconds = round(time.monotonic() - started, 3)
    if timed_out:
        return {**base, **_timeout_answer(spec, config, status, result), "seconds": seconds}
    if not isinstance(result, dict) or not result.get("final"):
        phase = status.get("phase") or "start"
        error = (f"the runner exited with {exit_code} in phase {phase!r} without writing a "
                 f"final result; the end of {log_path}:\n{_tail(log_path)}")
        write_json_atomic(workdir / RESULT_NAME, {"ok": False, "final": True, "phase": phase,
                                                  "error": error})
        return {**base, "ok": False, "phase": phase, "error": error, "seconds": seconds}
    answer = {**base, "ok": bool(result.get("ok")), "phase": result.get("phase"),
              "seconds": seconds}
    if result.get("ok"):
        answer["result"] = result.get("result")
    else:
        answer["error"] = result.get("error")
    if "phases" in result:
        answer["phases"] = result["phases"]
    return answer


def _timeout_answer(spec: JobSpec, config: NodeConfig, status: Mapping[str, Any],
                    result: Any) -> dict[str, Any]:
    phase = status.get("phase") or "start"
    head = (f"job {spec.job_id!r} on party {config.node_id} missed its "
            f"{spec.deadline_seconds} s deadline in phase {phase!r}")
    tail = f"the runner's process group was killed; {ACTOR_CLEANUP_NOTE}"
    answer: dict[str, Any] = {"phase": phase, "timed_out": True}
    if phase == "shutdown" and isinstance(result, dict) and result.get("ok"):
        # The job itself finished; only the closing barrier with the peers hung.
        answer.update(ok=True, result=result.get("result"),
                      warning=f"{head} (the job had finished; the shutdown barrier with the "
                              f"peers did not complete); {tail}")
        return answer
    detail = ""
    if phase == "init":
        peers = status.get("peers") or {}
        silent = [{"id": pid, "address": info.get("address")}
                  for pid, info in peers.items() if not info.get("answered")]
        if not status.get("peers"):
            silent = [{"id": p.id, "address": p.rayfed_address}
                      for p in spec.peers(config.node_id)]
        answer["silent_peers"] = silent
        if silent:
            detail = (f": these peers never answered on their rayfed port (their job has not "
                      f"reached sf.init, or the port is blocked): {_named(silent)}")
        else:
            detail = (": every peer answered on its rayfed port, but sf.init did not complete "
                      "(check the peers' job logs)")
    elif phase in ("start", "import"):
        detail = ": the runner did not get as far as sf.init (importing SecretFlow)"
    else:
        # Past sf.init the job waits on its peers' data: name those gone silent.
        silent = [{"id": p.id, "address": p.rayfed_address}
                  for p in spec.peers(config.node_id)
                  if not tcp_port_open(p.ip, p.rayfed_port, PEER_PROBE_TIMEOUT_SECONDS)]
        answer["silent_peers"] = silent
        if silent:
            detail = (f": these peers no longer answer on their rayfed port (stopped, or their "
                      f"job ended): {_named(silent)}")
    answer.update(ok=False, error=f"{head}{detail}; {tail}")
    return answer


def _named(peers: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['id']} ({p['address']})" for p in peers)


def _runner_alive(status: Mapping[str, Any], job_id: str) -> bool:
    """Whether the process of ``status`` (its pid) is still the runner of ``job_id``, not a
    reused pid: a runner's command line names its job, a standby's does not, and then the
    pid's start time must be the one the runner recorded."""
    pid = status.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if RUNNER_MODULE not in cmdline:
        return False
    if job_id in cmdline:
        return True
    recorded = status.get("pid_start")
    return isinstance(recorded, int) and process_start(pid) == recorded


def reap_abandoned(config: NodeConfig, answered: Callable[[str], bool] = lambda _job_id: True,
                   within_seconds: float = 0.0) -> list[dict[str, Any]]:
    """Jobs whose worker stopped while they ran, found when a worker starts.

    Such a job has a work dir without a final result. Its runner, if it is
    still there, is killed with its whole group; the job is then recorded as
    failed (a redelivered task replays that) and answered, so the submitter
    learns what happened instead of waiting for nothing. A job whose runner
    finished (final result) in the last ``within_seconds`` but whose answer
    never reached the result backend (``answered(job_id)`` is false: the
    worker died between the two) is answered from its result.
    """
    answers: list[dict[str, Any]] = []
    if not config.job_dir.is_dir():
        return answers
    for workdir in sorted(config.job_dir.iterdir()):
        spec = read_json(workdir / SPEC_NAME) if workdir.is_dir() else None
        if not isinstance(spec, dict) or not isinstance(spec.get("job_id"), str):
            continue
        result = read_json(workdir / RESULT_NAME)
        if isinstance(result, dict) and result.get("final"):
            recent = time.time() - (workdir / RESULT_NAME).stat().st_mtime <= within_seconds
            if recent and not answered(spec["job_id"]):
                answers.append({**_answer(JobSpec.from_dict(spec), config, workdir, time.monotonic(),
                                          False, "an unknown code"), "recovered": True})
            continue
        job_id = spec["job_id"]
        status = read_json(workdir / STATUS_NAME) or {}
        pid = status.get("pid")
        if _runner_alive(status, job_id):
            assert isinstance(pid, int)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        phase = status.get("phase") or "start"
        error = (f"job {job_id!r} on party {config.node_id}: its worker stopped (killed or "
                 f"restarted) during phase {phase!r}; the job's process group is gone and "
                 f"{ACTOR_CLEANUP_NOTE}; submit the job again under a new job_id")
        write_json_atomic(workdir / RESULT_NAME, {"ok": False, "final": True, "phase": phase,
                                                   "error": error, "abandoned": True})
        answers.append({"job_id": job_id, "party": config.node_id, "kind": spec.get("kind"),
                        "workdir": str(workdir), "ok": False, "phase": phase, "error": error,
                        "abandoned": True})
    return answers


def _earlier_run(spec: JobSpec, spec_dict: dict[str, Any], config: NodeConfig, workdir: Path,
                 started: float) -> dict[str, Any]:
    """A job id seen before: replay a finished identical job (a redelivered task), else refuse."""
    earlier_spec = read_json(workdir / SPEC_NAME)
    result = read_json(workdir / RESULT_NAME)
    base = {"job_id": spec.job_id, "party": config.node_id, "kind": spec.kind,
            "workdir": str(workdir)}
    if earlier_spec == spec_dict and isinstance(result, dict) and result.get("final"):
        answer = {**base, "ok": bool(result.get("ok")), "phase": result.get("phase"),
                  "replayed": True, "seconds": round(time.monotonic() - started, 3)}
        answer["result" if result.get("ok") else "error"] = (
            result.get("result") if result.get("ok") else result.get("error"))
        return answer
    return {**base, "ok": False, "phase": "validate", "reused": True,
            "error": f"job_id {spec.job_id!r} was already used on party {config.node_id} "
                     f"({workdir} exists" + ("" if earlier_spec == spec_dict else
                                              " with a different spec") +
                     "); job ids are single-use: submit the job under a new job_id",
            "seconds": round(time.monotonic() - started, 3)}

