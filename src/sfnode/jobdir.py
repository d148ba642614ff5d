"""The job directory: how the supervisor and the runner talk, through files.

``JOB_DIR/<job_id>/`` is a job's work dir. The supervisor writes
``spec.json`` (the validated full spec) and sends the runner's output to
``runner.log``; the runner writes ``status.json`` (its pid, its phase and
when each began, which peers answered) as it goes and ``result.json`` at the
end (``final: true``; a result of phase ``shutdown`` with ``final: false``
means the job finished but the closing barrier had not). ``JOB_DIR/.slots/``
holds one lock file per port slot. Either side may be killed at any moment,
so a file is only ever replaced whole.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

SPEC_NAME = "spec.json"
STATUS_NAME = "status.json"
RESULT_NAME = "result.json"
LOG_NAME = "runner.log"
SLOTS_DIR = ".slots"
# The phases status.json and result.json name, in order; the supervisor adds
# "validate" (refused before starting) and "start" (nothing written yet).
PHASES = ("import", "init", "run", "shutdown", "done")


def workdir(job_root: Path, job_id: str) -> Path:
    """The work dir of ``job_id`` under ``JOB_DIR``."""
    return job_root / job_id


def slot_lock_path(job_root: Path, slot: int) -> Path:
    return job_root / SLOTS_DIR / f"{slot}.lock"


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` by ``data`` as JSON: a reader, or a crash, finds the old or the new file.

    The new content reaches the disk before the rename and the rename before
    returning, so a power cut cannot leave an empty result behind a rename.
    """
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path) -> Any:
    """The file's JSON, or None when it is absent or not JSON (nothing written yet)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
