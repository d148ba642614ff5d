"""The audit journal: what this node was asked, what it decided and why, what it ran.

One JSON object per line, appended (``O_APPEND``, under an exclusive lock,
flushed to disk before the call returns), never rewritten or pruned by this
package. It holds no secret and no data row: a job appears by its id, kind,
parties and the digest of its spec (the spec's params can hold a party's
values), a result by its digest. ``sfnode audit`` prints it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

JOURNAL_MODE = 0o640
# What an entry may hold: anything else is refused (so a spec or a result never slips in).
FIELDS = frozenset({
    "job_id", "kind", "parties", "peer", "initiator", "spec_digest", "outcome", "rule",
    "reason", "phase", "ok", "result_digest", "error", "by", "slot",
})
EVENTS = frozenset({
    "proposal_sent",      # this node proposed a job to a peer (peer: whom), and the answer
    "proposal_received",  # a peer proposed a job here (peer: who)
    "decision",           # this node's policy decided (outcome, rule, reason)
    "approved",           # a person approved a waiting job here (by: who ran sfnode)
    "refused",            # a person refused a waiting job here
    "start_sent",         # every party accepted: this node told a peer to run its part (peer)
    "start_received",     # the initiator told this node to run its accepted part (peer)
    "started",            # the job's runner started here
    "ended",              # the job ended here (ok, phase, result_digest or error)
    "cancel_sent",        # this node told a peer to end a job (peer, reason)
    "cancel_received",    # a peer told this node to end a job (peer, reason)
    "refused_call",       # a call on the job channel was refused (peer if known, reason)
})


class JournalError(ValueError):
    """An entry this journal does not hold (an unknown event or field)."""


def digest(value: Any) -> str:
    """``sha256:<hex>`` of a JSON value, with sorted keys (the same value, the same digest)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


class Journal:
    def __init__(self, path: Path, party: str) -> None:
        self.path = path
        self.party = party

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one entry; the entry as written."""
        if event not in EVENTS:
            raise JournalError(f"unknown journal event {event!r}; expected one of "
                               f"{', '.join(sorted(EVENTS))}")
        unknown = sorted(set(fields) - FIELDS)
        if unknown:
            raise JournalError(f"journal event {event!r} cannot hold {', '.join(unknown)}")
        entry = {"ts": round(time.time(), 3), "party": self.party, "event": event,
                 **{k: v for k, v in fields.items() if v is not None}}
        line = (json.dumps(entry, sort_keys=True) + "\n").encode("ascii")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, JOURNAL_MODE)
        try:
            os.fchmod(fd, JOURNAL_MODE)  # whatever the umask
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock
        return entry

    def entries(self, job_id: str | None = None) -> Iterator[dict[str, Any]]:
        """The entries in the order written (of one job, given ``job_id``); a line that is
        not JSON (a torn write after a crash) is skipped."""
        try:
            handle = self.path.open(encoding="utf-8")
        except FileNotFoundError:
            return
        with handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and (job_id is None or entry.get("job_id") == job_id):
                    yield entry
