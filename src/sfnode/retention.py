"""What a node keeps on disk: finished jobs' work dirs and Ray's session logs.

Nothing else prunes them, and a full disk would take Redis's append-only
file (the queue) down with it. A job's work dir is a candidate only once it
holds a final result (a running job never has one; a job abandoned by a
stopped worker gets one at the next worker start), and never the job named
in ``keep``. Candidates older than the retention age go; then the oldest go
until all work dirs together fit the retention size. Ray's session
directories other than the current one go once older than the age.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from sfnode.config import NodeConfig
from sfnode.jobdir import RESULT_NAME, read_json

RAY_CURRENT_SESSION = "session_latest"


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _finished_at(workdir: Path) -> float | None:
    result = read_json(workdir / RESULT_NAME)
    if not isinstance(result, dict) or not result.get("final"):
        return None
    try:
        return (workdir / RESULT_NAME).stat().st_mtime
    except OSError:
        return None


def prune_jobs(job_root: Path, max_age_seconds: float, max_total_bytes: int,
               keep: Iterable[str] = (), now: float | None = None) -> list[Path]:
    """Remove finished work dirs past the age, then the oldest past the size; return them."""
    now = time.time() if now is None else now
    if not job_root.is_dir():
        return []
    keep = set(keep)
    dirs = [d for d in job_root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    sizes = {d: _size(d) for d in dirs}
    finished = sorted(((t, d) for d in dirs if d.name not in keep
                       and (t := _finished_at(d)) is not None), key=lambda item: item[0])
    total = sum(sizes.values())
    removed = []
    for finished_at, workdir in finished:
        if now - finished_at <= max_age_seconds and total <= max_total_bytes:
            continue
        shutil.rmtree(workdir, ignore_errors=True)
        total -= sizes[workdir]
        removed.append(workdir)
    return removed


def prune_ray_sessions(temp_dir: Path, max_age_seconds: float, now: float | None = None) -> list[Path]:
    """Remove Ray's session directories older than the age, never the current one."""
    now = time.time() if now is None else now
    if not temp_dir.is_dir():
        return []
    current = (temp_dir / RAY_CURRENT_SESSION).resolve()
    removed = []
    for session in sorted(temp_dir.glob("session_*")):
        if session.is_symlink() or not session.is_dir() or session.resolve() == current:
            continue
        if now - session.stat().st_mtime > max_age_seconds:
            shutil.rmtree(session, ignore_errors=True)
            removed.append(session)
    return removed


def prune(config: NodeConfig, keep: Iterable[str] = ()) -> list[Path]:
    """This node's retention: finished jobs, then Ray's old sessions."""
    age = config.job_retention_days * 86400
    removed = prune_jobs(config.job_dir, age, config.job_retention_mb * 1024 * 1024, keep)
    if config.ray_temp_dir is not None:
        removed += prune_ray_sessions(config.ray_temp_dir, age)
    return removed
