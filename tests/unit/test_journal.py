"""The audit journal: appended in order, whole lines, nothing but its own fields."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from sfnode.journal import Journal, JournalError, digest


def test_entries_come_back_in_the_order_written(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl", "bob")
    journal.record("proposal_received", job_id="j1", peer="alice", kind="psi")
    journal.record("decision", job_id="j1", outcome="refused", rule="peers.alice.datasets",
                   reason="may not read private/x.csv")
    journal.record("proposal_received", job_id="j2", peer="carol", kind="psi")
    events = [(e["event"], e["job_id"]) for e in journal.entries()]
    assert events == [("proposal_received", "j1"), ("decision", "j1"), ("proposal_received", "j2")]
    assert [e["event"] for e in journal.entries("j1")] == ["proposal_received", "decision"]
    assert all(e["party"] == "bob" and isinstance(e["ts"], float) for e in journal.entries())
    assert (tmp_path / "journal.jsonl").stat().st_mode & 0o777 == 0o640


def test_a_spec_or_a_result_cannot_be_written_into_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl", "bob")
    with pytest.raises(JournalError, match="cannot hold params"):
        journal.record("ended", job_id="j1", params={"values": {"bob": 4}})
    with pytest.raises(JournalError, match="unknown journal event"):
        journal.record("gossip", job_id="j1")
    assert list(journal.entries()) == []


def test_concurrent_writers_leave_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"

    def write(n: int) -> None:
        journal = Journal(path, "bob")
        for i in range(50):
            journal.record("started", job_id=f"j{n}-{i}", reason="x" * 500)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 200 and all(json.loads(line)["event"] == "started" for line in lines)


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, "bob")
    journal.record("started", job_id="j1")
    with path.open("a") as handle:
        handle.write('{"ts": 1, "event": "ended", "job_')
    assert [e["job_id"] for e in journal.entries()] == ["j1"]


def test_a_digest_depends_on_the_value_not_on_key_order() -> None:
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert digest({"a": 1}).startswith("sha256:")
