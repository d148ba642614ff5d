"""Warm Ray workers: idle workers of this node's Ray head, ready for the next job.

A job's actors (rayfed's two proxies, its PYU and SPU) each need a Ray worker
process. Started on demand, each costs a new process that imports SecretFlow:
seconds per actor. The Ray head preloads SecretFlow into every worker it starts
(``ray_head_preload_modules``) and keeps up to ``RAY_WARM_WORKERS`` idle ones
alive; the worker app asks its raylet for the missing ones before and after
every job, so a job finds them already started.

Isolation is as with workers started on demand: Ray binds a worker to the first
job that uses it and ends it when that job ends, so a warm worker serves one
job only. Topping up never fails a job: the pool is only a head start.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from sfnode.config import NodeConfig

log = logging.getLogger(__name__)

# The title Ray gives a worker that no job uses yet (set as it starts, before its preload).
IDLE_TITLE = b"ray::IDLE"
# short: a pool process asks at its start, which Celery allows only a few seconds
PRESTART_TIMEOUT_SECONDS = 2.0


class Prestart(Protocol):
    def __call__(self, address: str, count: int) -> None: ...


def idle_workers(proc: Path = Path("/proc")) -> int:
    """How many Ray workers on this host are idle (or starting) and bound to no job."""
    count = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if cmdline.startswith(IDLE_TITLE):
            count += 1
    return count


def load_stubs() -> tuple[Any, Any, Any]:
    """grpc and Ray's raylet messages and stub (about 0.5 s to import: done once per process)."""
    import grpc  # noqa: PLC0415
    from ray.core.generated import node_manager_pb2, node_manager_pb2_grpc  # noqa: PLC0415

    return grpc, node_manager_pb2, node_manager_pb2_grpc


def prestart(address: str, count: int) -> None:
    """Ask the raylet at ``address`` (node IP and node manager port) to start ``count``
    Python workers bound to no job."""
    grpc, messages, stubs = load_stubs()
    request = messages.PrestartWorkersRequest(language=0, num_workers=count)  # 0: PYTHON
    with grpc.insecure_channel(address) as channel:
        stubs.NodeManagerServiceStub(channel).PrestartWorkers(
            request, timeout=PRESTART_TIMEOUT_SECONDS)


def missing(config: NodeConfig, idle: int) -> int:
    """How many warm workers to start so that ``config.ray_warm_workers`` are idle."""
    if config.ray_node_manager_port is None:
        return 0
    return max(0, config.ray_warm_workers - idle)


def top_up(config: NodeConfig, *, count_idle: Any = idle_workers,
           start: Prestart = prestart) -> int:
    """Start the missing warm workers; how many were asked for. Never raises."""
    try:
        wanted = missing(config, count_idle())
        if wanted:
            start(f"{config.node_ip}:{config.ray_node_manager_port}", wanted)
        return wanted
    except Exception as exc:  # noqa: BLE001  a head start, never a reason to fail a job
        log.warning("sfnode: could not start warm Ray workers on party %s: %s",
                    config.node_id, exc)
        return 0


def wait_and_prestart(address: str, count: int, wait_seconds: float,
                      start: Prestart = prestart) -> bool:
    """Ask the raylet at ``address`` for ``count`` workers, retrying while it starts (up to
    ``wait_seconds``); whether it took the request."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            start(address, count)
            return True
        except Exception as exc:  # noqa: BLE001  not listening yet
            if time.monotonic() >= deadline:
                log.warning("sfnode: the raylet at %s took no request for warm workers: %s",
                            address, exc)
                return False
            time.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sfnode.warm --address IP:PORT --workers N``: the Ray head's unit fills
    its pool once the raylet listens (the worker app keeps it full after each job)."""
    parser = argparse.ArgumentParser(prog="python -m sfnode.warm", description=main.__doc__)
    parser.add_argument("--address", required=True, help="the raylet's IP:node-manager-port")
    parser.add_argument("--workers", type=int, required=True, help="warm workers to start")
    parser.add_argument("--wait", type=float, default=60.0,
                        help="seconds to wait for the raylet (default 60)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.workers <= 0:
        return 0
    return 0 if wait_and_prestart(args.address, args.workers, args.wait) else 1


if __name__ == "__main__":
    sys.exit(main())
