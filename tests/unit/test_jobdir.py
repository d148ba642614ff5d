"""The job directory protocol: files replaced whole, read back or None."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sfnode import jobdir


def test_write_reaches_the_disk_before_and_after_the_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / jobdir.RESULT_NAME
    jobdir.write_json_atomic(target, {"ok": True, "final": True})
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"]
    assert events[0][1].endswith(".tmp")  # the new content, before it takes the name
    assert events[2][1] == str(tmp_path)  # the directory entry, after
    assert jobdir.read_json(target) == {"ok": True, "final": True}
    assert [p.name for p in tmp_path.iterdir()] == [jobdir.RESULT_NAME]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / jobdir.STATUS_NAME
    jobdir.write_json_atomic(target, {"phase": "init"})
    with pytest.raises(TypeError):
        jobdir.write_json_atomic(target, {"phase": object()})
    assert json.loads(target.read_text()) == {"phase": "init"}
    assert [p.name for p in tmp_path.iterdir()] == [jobdir.STATUS_NAME]


def test_read_json_is_none_for_absent_or_partial_files(tmp_path: Path) -> None:
    assert jobdir.read_json(tmp_path / "absent.json") is None
    (tmp_path / "partial.json").write_text('{"ok": tr')
    assert jobdir.read_json(tmp_path / "partial.json") is None


def test_paths_under_job_dir(tmp_path: Path) -> None:
    assert jobdir.workdir(tmp_path, "psi-1") == tmp_path / "psi-1"
    assert jobdir.slot_lock_path(tmp_path, 3) == tmp_path / ".slots" / "3.lock"


def test_the_trust_bundle_is_0640_in_the_work_dirs_group(tmp_path: Path) -> None:
    workdir = tmp_path / "job-1"
    workdir.mkdir()
    others = [g for g in ([1] if os.geteuid() == 0 else os.getgroups()) if g != os.getegid()]
    if not others:
        pytest.skip("no group other than the effective one to give the work dir")
    os.chown(workdir, -1, others[0])
    os.chmod(workdir, 0o2770)  # as the supervisor makes it
    old_umask = os.umask(0o077)  # the mode does not depend on the umask
    try:
        path = jobdir.write_peers_cert(workdir, "-----BEGIN CERTIFICATE-----\nMIIB\n"
                                                "-----END CERTIFICATE-----\n")
    finally:
        os.umask(old_umask)
    assert path == workdir / "peers.pem" == jobdir.peers_cert_path(workdir)
    assert path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    info = path.stat()
    assert info.st_mode & 0o7777 == 0o640
    assert info.st_gid == others[0]  # the Ray head's group, through the setgid work dir
    assert [p.name for p in workdir.iterdir()] == ["peers.pem"]  # no temp file left


def test_a_work_dir_is_group_writable_and_inherits_the_job_dirs_group(tmp_path: Path) -> None:
    """No chmod with the set-group-ID bit (the worker's unit refuses it): the bit is inherited."""
    root = tmp_path / "jobs"
    root.mkdir()
    os.chmod(root, 0o2750)  # as the roles make JOB_DIR
    old_umask = os.umask(0o027)  # the worker's unit's UMask
    try:
        jobdir.make_workdir(root / "job-1")
        (root / "job-1" / "spec.json").write_text("{}")
        umask_after = os.umask(0o027)
    finally:
        os.umask(old_umask)
    assert umask_after == 0o027  # the process's umask is back
    info = (root / "job-1").stat()
    assert info.st_mode & 0o7777 == 0o2770
    assert info.st_gid == root.stat().st_gid
    assert (root / "job-1" / "spec.json").stat().st_gid == root.stat().st_gid
