"""The job's own process: ``python -m sfnode.runner --spec SPEC.json --workdir DIR``.

It imports SecretFlow, calls ``sf.init`` in production mode against this
node's Ray head, runs the job kind and shuts down, writing ``DIR/status.json``
as it goes and ``DIR/result.json`` at the end. rayfed installs a SIGINT handler
and may signal its own process, and waiting for peers may take hours: that is
why this runs in a process of its own, which the supervisor can kill.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sfnode.config import load_config
from sfnode.jobdir import RESULT_NAME, STATUS_NAME, process_start, write_json_atomic
from sfnode.jobspec import JobSpec, PartySpec
from sfnode.kinds import get as get_kind
from sfnode.kinds import run_kind
from sfnode.netprobe import tcp_port_open
from sfnode.sfargs import JobContext, sf_init_kwargs

PROBE_INTERVAL_SECONDS = 0.2
# Past its deadline plus this grace the runner exits by itself, in case its
# supervisor died (a Celery worker restart) and nobody is left to kill it.
SELF_DEADLINE_GRACE_SECONDS = 60


def now() -> float:
    return round(time.time(), 3)


class StatusFile:
    """``status.json``: the current phase, when each phase began, and peer probes."""

    def __init__(self, path: Path, spec: JobSpec, party: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {
            "job_id": spec.job_id,
            "party": party,
            "kind": spec.kind,
            "pid": os.getpid(),
            # with the pid, names this process even if it holds no job id in its command line
            "pid_start": process_start(os.getpid()),
            "phase": None,
            "phases": {},
            "peers": {
                p.id: {"address": p.rayfed_address, "answered": False, "answered_at": None}
                for p in spec.peers(party)
            },
            "updated_at": now(),
        }

    def phase(self, name: str) -> None:
        with self._lock:
            self.data["phase"] = name
            self.data["phases"][name] = now()
            self._write()

    def peer_answered(self, peer_id: str) -> None:
        with self._lock:
            entry = self.data["peers"][peer_id]
            if not entry["answered"]:
                entry.update(answered=True, answered_at=now())
                self._write()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.data.update(fields)
            self._write()

    def _write(self) -> None:
        self.data["updated_at"] = now()
        write_json_atomic(self.path, self.data)


class PeerProber(threading.Thread):
    """TCP-probe each peer's rayfed port until it answers.

    A peer's rayfed port opens only when that peer's job reaches ``sf.init``,
    so the peers still unanswered are the ones that have not shown up.
    """

    def __init__(self, peers: Sequence[PartySpec], on_answer: Callable[[str], None],
                 interval: float = PROBE_INTERVAL_SECONDS,
                 probe: Callable[[str, int], bool] = tcp_port_open) -> None:
        super().__init__(name="sfnode-peer-prober", daemon=True)
        self._pending = list(peers)
        self._on_answer = on_answer
        self._interval = interval
        self._probe = probe
        self._stop_event = threading.Event()
        # set once every peer has answered
        self.all_answered = threading.Event()

    def run(self) -> None:
        while self._pending and not self._stop_event.is_set():
            for peer in list(self._pending):
                if self._probe(peer.ip, peer.rayfed_port):
                    self._pending.remove(peer)
                    self._on_answer(peer.id)
            if not self._pending:
                break
            self._stop_event.wait(self._interval)
        if not self._pending:
            self.all_answered.set()

    def stop(self) -> None:
        self._stop_event.set()


def _self_deadline(seconds: float, status: StatusFile) -> None:
    def expire() -> None:
        status.update(self_deadline_expired_at=now())
        print(f"sfnode.runner: {seconds:.0f} s self-deadline passed; exiting", file=sys.stderr,
              flush=True)
        os._exit(124)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def _rayfed_api() -> Any:
    """rayfed's API module (SecretFlow's cross-silo layer), None where it is not installed."""
    try:
        import fed.api  # noqa: PLC0415
    except ImportError:
        return None
    return fed.api


def interrupt_plainly(fed_api: Any) -> None:
    """Have the SIGINT handler that rayfed installs in ``fed.init`` raise
    KeyboardInterrupt, instead of shutting rayfed down and calling ``sys.exit``.

    rayfed sends SIGINT to its own process once it could not send a result to a peer
    (this party's task failed; the peers get the error instead). Its own handler runs
    the shutdown and the exit from inside whatever the main thread was doing: a
    ``ray.get``, or this runner's handling of that same failure, where the exit cut the
    final result short (the job then ended with no result on this party). Raised as
    KeyboardInterrupt, it ends the job's step like any error; the failure is written,
    and only then is rayfed shut down (``sf.shutdown(on_error=True)``)."""
    if fed_api is not None and hasattr(fed_api, "_signal_handler"):
        fed_api._signal_handler = signal.default_int_handler  # noqa: SLF001


def _rayfed_sending_error() -> str:
    """The error rayfed could not send to a peer (this party's failed task), if any."""
    try:
        from fed._private.global_context import get_global_context  # noqa: PLC0415

        error = get_global_context().get_cleanup_manager().get_last_sending_error()
    except Exception:  # noqa: BLE001  not this rayfed, or no context (any more)
        return ""
    return ANSI_COLOUR.sub("", str(getattr(error, "cause", None) or error)).strip() if error else ""


def ping_when_peers_listen(fed_api: Any, prober: PeerProber) -> None:
    """Make rayfed's readiness ping wait until every peer's rayfed port listens.

    rayfed pings its peers once ``sf.init`` has started this party's proxies: a try, 1 s
    for the answers, then 2 s apart. A peer whose proxies came up a moment after the
    first try cost 3 s. The prober sees a peer's port open within its interval, so the
    first ping is sent when it can be answered; rayfed's own ping still decides.
    """
    original = getattr(fed_api, "ping_others", None)
    if original is None:  # not the rayfed this was written for: leave it alone
        return

    def ping_others(*args: Any, **kwargs: Any) -> Any:
        prober.all_answered.wait()
        return original(*args, **kwargs)

    fed_api.ping_others = ping_others


def shutdown_leaving_ray(sf: Any) -> None:
    """``sf.shutdown()`` up to its last step: the barrier with the peers and rayfed's
    shutdown (which waits until every message is sent), but not ``ray.shutdown()``,
    which costs 0.8 s (a fixed 0.5 s sleep among it) and that this process does not need:
    it exits right after, and the Ray head then ends the job's workers and actors as
    for any driver that is gone."""
    try:
        import ray  # noqa: PLC0415
    except ImportError:
        sf.shutdown()
        return
    original = ray.shutdown
    ray.shutdown = lambda *args, **kwargs: None
    try:
        sf.shutdown()
    finally:
        ray.shutdown = original


def run(spec: JobSpec, ctx: JobContext, status: StatusFile) -> dict[str, Any]:
    started = time.monotonic()
    outcome: dict[str, Any] = {"job_id": spec.job_id, "party": ctx.self_id, "kind": spec.kind}
    result_path = ctx.workdir / RESULT_NAME
    sf = None
    initialised = False
    phase = "import"
    try:
        if get_kind(spec.kind).starts_secretflow:
            return _run_self_starting(spec, ctx, status, outcome, started)
        status.phase(phase)
        import secretflow as sf  # noqa: PLC0415  (heavy; only in this process)

        phase = "init"
        status.phase(phase)
        prober = PeerProber(spec.peers(ctx.self_id), status.peer_answered)
        fed_api = _rayfed_api()
        ping_when_peers_listen(fed_api, prober)
        interrupt_plainly(fed_api)
        prober.start()
        try:
            sf.init(**sf_init_kwargs(ctx))
            initialised = True
        finally:
            prober.stop()

        phase = "run"
        status.phase(phase)
        result = run_kind(sf, ctx)

        # The result stands even if the shutdown barrier below never completes.
        outcome.update(ok=True, result=result)
        phase = "shutdown"
        status.phase(phase)
        write_json_atomic(result_path, {**outcome, "phase": phase, "final": False,
                                        "seconds": round(time.monotonic() - started, 3)})
        shutdown_leaving_ray(sf)
        phase = "done"
        status.phase(phase)
    except BaseException as exc:  # noqa: BLE001  rayfed ends a failed job with SIGINT/sys.exit
        # rayfed's one SIGINT may still come (its own task failed while this thread waited
        # for something else): it must not cut the final result short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        traceback.print_exc()
        outcome.update(ok=False, error=_silent_peers(status, phase) + _describe(exc, phase))
        outcome.pop("result", None)
        # The failure is final before SecretFlow's error shutdown: the peers may already
        # have ended on rayfed's error message, and that shutdown can take seconds.
        _finish(outcome, phase, started, status, result_path)
        if sf is not None and initialised and phase != "shutdown":
            try:
                sf.shutdown(on_error=True)
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
        return outcome
    return _finish(outcome, phase, started, status, result_path)


def _finish(outcome: dict[str, Any], phase: str, started: float, status: StatusFile,
            result_path: Path) -> dict[str, Any]:
    """``outcome`` as the job's final result, written to ``result_path``."""
    outcome.update(phase=phase, final=True, seconds=round(time.monotonic() - started, 3),
                   phases=status.data["phases"])
    write_json_atomic(result_path, outcome)
    return outcome


def _run_self_starting(spec: JobSpec, ctx: JobContext, status: StatusFile,
                       outcome: dict[str, Any], started: float) -> dict[str, Any]:
    """A kind that starts SecretFlow itself (its component entry, which brings up and
    shuts down its own links): no ``sf.init`` here. The kind records its steps as phases
    (``step <id>``), raises naming the failed step, and hands its result over before
    SecretFlow shuts down (a final result then, which a failed shutdown cannot lose)."""
    phase = "run"
    status.phase(phase)

    def done(result: dict[str, Any]) -> None:
        status.phase("shutdown")
        _finish({**outcome, "ok": True, "result": result}, "shutdown", started, status,
                ctx.workdir / RESULT_NAME)

    ctx = dataclasses.replace(ctx, on_result=done)
    interrupt_plainly(_rayfed_api())
    try:
        result = run_kind(None, ctx)
        outcome.update(ok=True, result=result)
        phase = "done"
        status.phase(phase)
    except BaseException as exc:  # noqa: BLE001
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in run()
        traceback.print_exc()
        phase = status.data.get("phase") or phase
        outcome.update(ok=False, error=_describe(exc, phase))
    return _finish(outcome, phase, started, status, ctx.workdir / RESULT_NAME)


def _silent_peers(status: StatusFile, phase: str) -> str:
    """Before the job ran: the peers whose rayfed port never answered, named first (rayfed
    gives up on them with an error that names nobody)."""
    if phase not in ("import", "init"):
        return ""
    silent = [f"party {pid} ({peer['address']})" for pid, peer in status.data["peers"].items()
              if not peer["answered"]]
    return f"no answer from {', '.join(silent)} on its rayfed port; " if silent else ""


def _describe(exc: BaseException, phase: str) -> str:
    if isinstance(exc, KeyboardInterrupt):
        unsent = _rayfed_sending_error()
        if unsent:  # this party's own task failed, while this thread waited for another
            return f"{phase} failed here (rayfed passed the error on to the peers): {unsent}"
        return (f"interrupted in phase {phase} (SIGINT; rayfed sends it to itself when a "
                "cross-silo send fails)")
    if isinstance(exc, SystemExit):
        return (f"exited in phase {phase} with code {exc.code} (rayfed exits after a "
                "cross-silo send failure)")
    text = ANSI_COLOUR.sub("", str(exc)).strip() or repr(exc)  # Ray colours its task errors
    remote = REMOTE_ERROR.search(text)
    if remote:  # a peer's part failed, and rayfed brought its error here
        return (f"party {remote.group(1)}'s part failed in phase {phase} (rayfed passed on its "
                f"error): {type(exc).__name__}: {text}")
    return f"{type(exc).__name__} in phase {phase}: {text}"


# How rayfed's FedRemoteError names the party whose part failed.
REMOTE_ERROR = re.compile(r"FedRemoteError occurred at ([a-z][a-z0-9_-]{0,31})")
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


# The most a standby reads of its order (the job's spec path and work dir, as JSON).
ORDER_MAX_BYTES = 65536


def standby(preload: Sequence[str], channel: socket.socket) -> list[str] | None:
    """A runner started before its job: import ``preload`` (SecretFlow) now, then wait on
    ``channel`` for the job. The supervisor sends one order: the job's spec and work dir,
    with two descriptors, the job's log (made this process's stdout and stderr) and the
    slot lock (kept open: the slot stays taken while this process lives). The arguments
    to run the job with; None when the supervisor went away without sending one."""
    for module in preload:
        importlib.import_module(module)
    message, fds, _flags, _address = socket.recv_fds(channel, ORDER_MAX_BYTES, 2)
    channel.close()
    null = os.open(os.devnull, os.O_RDONLY)  # stdin again, as a runner started anew has it
    if null != 0:
        os.dup2(null, 0)
        os.close(null)
    if not message or len(fds) != 2:
        return None
    order = json.loads(message)
    log_fd, _lock_fd = fds
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.chdir(order["workdir"])
    return ["--spec", order["spec"], "--workdir", order["workdir"]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfnode.runner", description=__doc__)
    parser.add_argument("--spec", type=Path, help="validated full job spec (JSON)")
    parser.add_argument("--workdir", type=Path, help="the job's work dir")
    parser.add_argument("--env-file", type=Path, default=None,
                        help="node env file (default: this process's environment)")
    parser.add_argument("--standby", action="store_true",
                        help="start before the job: import --preload, then read the job's "
                             "order from stdin (a unix socket from the supervisor)")
    parser.add_argument("--preload", action="append", default=[], metavar="MODULE",
                        help="with --standby: a module to import while waiting (repeatable)")
    args = parser.parse_args(argv)
    if args.standby:
        job_args = standby(args.preload, socket.socket(fileno=0))
        if job_args is None:
            return 0
        env_args = ["--env-file", str(args.env_file)] if args.env_file else []
        args = parser.parse_args([*job_args, *env_args])
    if args.spec is None or args.workdir is None:
        parser.error("--spec and --workdir are required (or --standby)")

    # RAY_ADDRESS would override the address given to ray.init.
    os.environ.pop("RAY_ADDRESS", None)
    config = load_config(args.env_file)
    spec = JobSpec.from_dict(json.loads(args.spec.read_text(encoding="utf-8")))
    args.workdir.mkdir(parents=True, exist_ok=True)
    status = StatusFile(args.workdir / STATUS_NAME, spec, config.node_id)
    _self_deadline(spec.deadline_seconds + SELF_DEADLINE_GRACE_SECONDS, status)
    ctx = JobContext(spec=spec, config=config, workdir=args.workdir, on_phase=status.phase)
    outcome = run(spec, ctx, status)
    print(json.dumps(outcome, sort_keys=True), flush=True)
    # Skip interpreter teardown: Ray/rayfed threads can hang it after a failure.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if outcome["ok"] else 1)


if __name__ == "__main__":
    main()
