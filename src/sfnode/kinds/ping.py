"""Kind ``ping``: every party's PYU sends its id to every other party.

No parameters. A run proves that rayfed links every pair of parties.
"""

from __future__ import annotations

from typing import Any

from sfnode.kinds._kind import Kind, ParamCheck
from sfnode.sfargs import JobContext


def validate(params: dict[str, Any], check: ParamCheck) -> dict[str, Any]:
    check.known_params(params, ())
    return {}


def _identity(value: Any) -> Any:
    return value


def _receipt(value: Any, at: str) -> dict[str, Any]:
    return {"received": value, "at": at}


def run(sf: Any, ctx: JobContext) -> dict[str, Any]:
    """Each party's PYU produces its id; every value is moved to every other party."""
    ids = ctx.spec.party_ids
    pyus = {pid: sf.PYU(pid) for pid in ids}
    own = {pid: pyus[pid](_identity)(pid) for pid in ids}
    routes = [(src, dst) for src in ids for dst in ids if src != dst]
    receipts = [pyus[dst](_receipt)(own[src].to(pyus[dst]), dst) for src, dst in routes]
    revealed = sf.reveal(receipts)
    exchanges = [
        {"from": src, "to": dst, "received": r["received"], "ok": r["received"] == src}
        for (src, dst), r in zip(routes, revealed, strict=True)
    ]
    reached = sorted({e["to"] for e in exchanges if e["ok"]})
    return {"parties": ids, "reached": reached, "exchanges": exchanges}


KIND = Kind(validate=validate, run=run)
