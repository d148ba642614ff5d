"""The job's own process: ``python -m sfnode.runner --spec SPEC.json --workdir DIR``.

It imports SecretFlow, calls ``sf.init`` in production mode against this
node's Ray head, runs the job kind and shuts down, writing ``DIR/status.json``
as it goes and ``DIR/result.json`` at the end. rayfed installs a SIGINT handler
and may signal its own process, and waiting for peers may take hours: that is
why this runs in a process of its own, which the supervisor can kill.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sfnode.config import load_config
from sfnode.jobdir import RESULT_NAME, STATUS_NAME, write_json_atomic
from sfnode.jobspec import JobSpec, PartySpec
from sfnode.kinds import run_kind
from sfnode.netprobe import tcp_port_open
from sfnode.sfargs import JobContext, sf_init_kwargs

PROBE_INTERVAL_SECONDS = 1.0
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

    def run(self) -> None:
        while self._pending and not self._stop_event.is_set():
            for peer in list(self._pending):
                if self._probe(peer.ip, peer.rayfed_port):
                    self._pending.remove(peer)
                    self._on_answer(peer.id)
            self._stop_event.wait(self._interval)

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


def run(spec: JobSpec, ctx: JobContext, status: StatusFile) -> dict[str, Any]:
    started = time.monotonic()
    outcome: dict[str, Any] = {"job_id": spec.job_id, "party": ctx.self_id, "kind": spec.kind}
    result_path = ctx.workdir / RESULT_NAME
    sf = None
    initialised = False
    phase = "import"
    try:
        status.phase(phase)
        import secretflow as sf  # noqa: PLC0415  (heavy; only in this process)

        phase = "init"
        status.phase(phase)
        prober = PeerProber(spec.peers(ctx.self_id), status.peer_answered)
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
        sf.shutdown()
        phase = "done"
        status.phase(phase)
    except BaseException as exc:  # noqa: BLE001  rayfed ends a failed job with SIGINT/sys.exit
        traceback.print_exc()
        outcome.update(ok=False, error=_describe(exc, phase))
        outcome.pop("result", None)
        if sf is not None and initialised and phase != "shutdown":
            try:
                sf.shutdown(on_error=True)
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
    outcome.update(phase=phase, final=True, seconds=round(time.monotonic() - started, 3),
                   phases=status.data["phases"])
    write_json_atomic(result_path, outcome)
    return outcome


def _describe(exc: BaseException, phase: str) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return (f"interrupted in phase {phase} (SIGINT; rayfed sends it to itself when a "
                "cross-silo send fails)")
    if isinstance(exc, SystemExit):
        return (f"exited in phase {phase} with code {exc.code} (rayfed exits after a "
                "cross-silo send failure)")
    text = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__} in phase {phase}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfnode.runner", description=__doc__)
    parser.add_argument("--spec", required=True, type=Path, help="validated full job spec (JSON)")
    parser.add_argument("--workdir", required=True, type=Path, help="the job's work dir")
    parser.add_argument("--env-file", type=Path, default=None,
                        help="node env file (default: this process's environment)")
    args = parser.parse_args(argv)

    # RAY_ADDRESS would override the address given to ray.init.
    os.environ.pop("RAY_ADDRESS", None)
    config = load_config(args.env_file)
    spec = JobSpec.from_dict(json.loads(args.spec.read_text(encoding="utf-8")))
    args.workdir.mkdir(parents=True, exist_ok=True)
    status = StatusFile(args.workdir / STATUS_NAME, spec, config.node_id)
    _self_deadline(spec.deadline_seconds + SELF_DEADLINE_GRACE_SECONDS, status)
    ctx = JobContext(spec=spec, config=config, workdir=args.workdir)
    outcome = run(spec, ctx, status)
    print(json.dumps(outcome, sort_keys=True), flush=True)
    # Skip interpreter teardown: Ray/rayfed threads can hang it after a failure.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if outcome["ok"] else 1)


if __name__ == "__main__":
    main()
