"""The job directory: how the supervisor and the runner talk, through files.

``JOB_DIR/<job_id>/`` is a job's work dir. The supervisor writes
``spec.json`` (the validated full spec) and sends the runner's output to
``runner.log``; the runner writes ``status.json`` (its pid, its phase and
when each began, which peers answered) as it goes and ``result.json`` at the
end (``final: true``; a result of phase ``shutdown`` with ``final: false``
means the job finished but the closing barrier had not). On a node with TLS
the supervisor also writes ``peers.pem``, the job's trust bundle: the
certificates of the job's other parties, which its TLS links accept (mode
0640: the Ray head's actors read it through the work dir's group).
``JOB_DIR/.slots/`` holds one lock file per port slot. Either side may be killed at any moment,
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
PEERS_CERT_NAME = "peers.pem"
# Where a pipeline keeps each output's description (SecretFlow's DistData, as JSON), by
# ``<step>.<output>``, for its later steps and later jobs.
OUTPUTS_DIR = "outputs"
# Readable by the Ray head's user through the work dir's (setgid) group, by no one else.
PEERS_CERT_MODE = 0o640
SLOTS_DIR = ".slots"
# A job's cancellations, one per party that asked (who and why), written by the job
# channel or ``sfnode cancel``, honoured by the job's supervisor when the party is one of
# the job's: ``JOB_DIR/.cancel/<job_id>/<party>.json``.
CANCEL_DIR = ".cancel"
# The phases status.json and result.json name, in order; the supervisor adds
# "validate" (refused before starting) and "start" (nothing written yet).
PHASES = ("import", "init", "run", "shutdown", "done")


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22): with
    the pid, it names one process for good (a pid is reused, the pair is not). None: gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        # the command name (field 2) is in parentheses and may hold spaces
        return int(stat.rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def cancel_path(job_root: Path, job_id: str, party: str) -> Path:
    """Where ``party``'s cancellation of ``job_id`` waits for the job's supervisor."""
    return job_root / CANCEL_DIR / job_id / f"{party}.json"


def write_cancel(job_root: Path, job_id: str, party: str, reason: str) -> bool:
    """Record ``party``'s cancellation of ``job_id`` (its first reason stands); whether it
    is new."""
    path = cancel_path(job_root, job_id, party)
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    if path.exists():
        return False
    write_json_atomic(path, {"job_id": job_id, "by": party, "reason": reason})
    return True


def cancellations(job_root: Path, job_id: str) -> list[dict[str, Any]]:
    """Every cancellation of ``job_id``, oldest first."""
    directory = job_root / CANCEL_DIR / job_id
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime):
        marker = read_json(path)
        if isinstance(marker, dict) and isinstance(marker.get("by"), str):
            found.append(marker)
    return found


def workdir(job_root: Path, job_id: str) -> Path:
    """The work dir of ``job_id`` under ``JOB_DIR``."""
    return job_root / job_id


# A job's work dir is group-writable: the Ray head's actors (its own user, in
# the work dir's group) write the job's outputs there.
WORKDIR_UMASK = 0o007


def make_workdir(path: Path) -> None:
    """Create a job's work dir: mode 0770 plus the set-group-ID bit inherited from
    JOB_DIR (the roles make it 02750, in the Ray head's group), so what the job's
    processes create there belongs to that group. The worker's unit forbids setting
    that bit (RestrictSUIDSGID: a chmod with it is refused), hence the inheritance,
    and a umask around mkdir for the group's write bit."""
    previous = os.umask(WORKDIR_UMASK)
    try:
        path.mkdir(parents=True)
    finally:
        os.umask(previous)


def output_record(job_root: Path, job_id: str, ref: str) -> Path:
    """The saved description of output ``<step>.<output>`` of pipeline job ``job_id``."""
    return workdir(job_root, job_id) / OUTPUTS_DIR / f"{ref}.json"


def slot_lock_path(job_root: Path, slot: int) -> Path:
    return job_root / SLOTS_DIR / f"{slot}.lock"


def peers_cert_path(workdir: Path) -> Path:
    """The job's trust bundle (the ``ca_cert`` of its TLS links) in its work dir."""
    return workdir / PEERS_CERT_NAME


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` by ``data`` as JSON: a reader, or a crash, finds the old or the new file.

    The new content reaches the disk before the rename and the rename before
    returning, so a power cut cannot leave an empty result behind a rename.
    """
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_peers_cert(workdir: Path, bundle: str) -> Path:
    """Write the job's trust bundle (PEM certificates) to its work dir, mode 0640."""
    path = peers_cert_path(workdir)
    write_text_atomic(path, bundle, PEERS_CERT_MODE)
    return path


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Replace ``path`` by ``text`` as :func:`write_json_atomic` does; ``mode``: its
    permission bits (else the umask's). Its group is the directory's when that is setgid."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
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
