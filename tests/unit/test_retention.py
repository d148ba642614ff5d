from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sfnode.retention import prune_jobs, prune_ray_sessions

DAY = 86400


def job(root: Path, name: str, age_days: float, size: int = 10, final: bool = True) -> Path:
    workdir = root / name
    workdir.mkdir(parents=True)
    (workdir / "runner.log").write_bytes(b"x" * size)
    if final:
        result = workdir / "result.json"
        result.write_text(json.dumps({"ok": True, "final": True}))
        stamp = time.time() - age_days * DAY
        os.utime(result, (stamp, stamp))
    return workdir


def test_finished_jobs_past_the_age_go_running_ones_stay(tmp_path: Path) -> None:
    old = job(tmp_path, "old-1", 20)
    recent = job(tmp_path, "recent-1", 1)
    running = job(tmp_path, "running-1", 0, final=False)
    os.utime(running, (time.time() - 40 * DAY,) * 2)  # an old dir, but no final result
    (tmp_path / ".slots").mkdir()
    assert prune_jobs(tmp_path, 14 * DAY, 10**9) == [old]
    assert not old.exists() and recent.exists() and running.exists() and (tmp_path / ".slots").exists()


def test_the_oldest_finished_jobs_go_until_all_fit_the_size(tmp_path: Path) -> None:
    oldest = job(tmp_path, "a-1", 3, size=1000)
    middle = job(tmp_path, "b-1", 2, size=1000)
    newest = job(tmp_path, "c-1", 1, size=1000)
    running = job(tmp_path, "d-1", 0, size=1000, final=False)
    removed = prune_jobs(tmp_path, 14 * DAY, 2200)
    assert removed == [oldest, middle]
    assert newest.exists() and running.exists()


def test_the_job_being_answered_is_kept(tmp_path: Path) -> None:
    kept = job(tmp_path, "mine-1", 30)
    assert prune_jobs(tmp_path, DAY, 10**9, keep=["mine-1"]) == []
    assert kept.exists()


def test_old_ray_sessions_go_never_the_current_one(tmp_path: Path) -> None:
    old, current, recent = (tmp_path / f"session_{n}" for n in ("2026-01-01", "2026-02-01", "2026-11-25"))
    for session in (old, current, recent):
        (session / "logs").mkdir(parents=True)
    (tmp_path / "session_latest").symlink_to(current.name)
    for session in (old, current):
        os.utime(session, (time.time() - 30 * DAY,) * 2)
    assert prune_ray_sessions(tmp_path, 14 * DAY) == [old]
    assert current.exists() and recent.exists() and (tmp_path / "session_latest").is_symlink()
