"""Filters of playbooks/status.yml: the federation's status from the nodes'
reports (``sfnode status`` on every node), as a document and as text.

``status_federation(reports, missing, limited, outside)`` -> ``{"ok", "verdict",
"problems", "warnings", "parties", "matrix"}`` (docs/interfaces.md); every problem names
its party. ``status_lines(document)`` -> the text the playbook prints.
Standalone (no import of the worker app): it runs in the controller's Ansible.
"""
from __future__ import annotations

from typing import Any

REACHABLE = ("listening", "refused")
# The order a block lists them in (sfnode prints its JSON with sorted keys).
VERSION_ORDER = ("python", "secretflow", "ray", "click", "celery")


def _ordered(mapping: dict[str, Any], order: tuple[str, ...]) -> list[tuple[str, Any]]:
    return sorted(mapping.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))


def _cell(row: dict[str, Any] | None) -> str:
    if not row:
        return "n/a"
    bad = [f"{kind} {row.get(kind)}" for kind in ("rayfed", "spu") if row.get(kind) not in REACHABLE]
    if not bad:
        return "open"
    return "BLOCKED" if len(bad) == 2 and row.get("rayfed") == row.get("spu") else ", ".join(bad)


def status_federation(reports: list[dict[str, Any]], missing: list[str] | None = None,
                      limited: bool = False, outside: list[str] | None = None) -> dict[str, Any]:
    """The federation's document: every party's report, the reachability
    matrix (row reaches column), every problem prefixed with its party, and
    the one-line verdict. ``missing``: hosts of the run that gave no report
    (unreachable); ``limited``: the run covers part of the group only, so a
    peer in a federation file without a report is not a problem; ``outside``:
    the parties of the inventory's cards (other organisations report their
    own), listed in the federation files as they should be."""
    parties = {r.get("node_id") or f"host {i}": r for i, r in enumerate(reports)}
    ids = sorted(parties)
    problems: list[str] = []
    for pid in ids:
        report = parties[pid]
        problems.extend(f"{pid}: {p}" for p in report.get("problems") or [])
        peers = set(report.get("reachability") or {})
        if "reachability" in report:
            for other in sorted(set(ids) - peers - {pid}):
                problems.append(f"{pid}: its federation file does not list {other} (run site.yml)")
            if not limited:
                for other in sorted(peers - set(ids) - set(outside or ())):
                    problems.append(f"{pid}: its federation file lists {other}, which is not in this run "
                                    "(not in the inventory, or unreachable)")
    for host in missing or []:
        problems.append(f"{host}: no report (unreachable, or the status run failed there)")
    matrix = {pid: {to: ("-" if to == pid else _cell((parties[pid].get("reachability") or {}).get(to)))
                    for to in ids} for pid in ids}
    # what needs doing soon (a certificate near its end) without being unhealthy yet
    warnings = [f"{pid}: {w}" for pid in ids for w in parties[pid].get("warnings") or []]
    ok = not problems and bool(parties)
    if ok:
        verdict = f"VERDICT: HEALTHY: {len(ids)} parties ({', '.join(ids)}), every check passed"
    elif not parties:
        verdict = "VERDICT: UNHEALTHY: no party reported; " + "; ".join(problems)
    else:
        verdict = f"VERDICT: UNHEALTHY: {len(problems)} problem(s): " + "; ".join(problems)
    return {"ok": ok, "verdict": verdict, "problems": problems, "warnings": warnings, "parties": parties,
            "matrix": matrix}


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int):
        return ""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _bytes(value: Any) -> str:
    try:
        size = float(value)
    except (TypeError, ValueError):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "?"


def _redis(redis: dict[str, Any]) -> str:
    aof = "on" if redis.get("aof_enabled") else "OFF"
    if redis.get("aof_enabled") and redis.get("aof_last_write_status") not in (None, "ok"):
        aof += f" (last write {redis['aof_last_write_status']})"
    return (f"answers with the password, memory {_bytes(redis.get('used_memory'))} of "
            f"{_bytes(redis.get('maxmemory'))} ({redis.get('maxmemory_policy')}), AOF {aof}, "
            f"queue {redis.get('queue_length')}")


def _ray(ray: dict[str, Any]) -> str:
    res = ray.get("resources") or {}
    return (f"GCS {ray.get('address')} alive, CPU {res.get('CPU', '?')}, object store "
            f"{_bytes(res.get('object_store_memory'))}, memory {_bytes(res.get('memory'))}, "
            f"nodes {ray.get('nodes', '?')}")


def _celery(celery: dict[str, Any]) -> str:
    return f"answers a ping in {celery.get('round_trip_ms')} ms ({', '.join(celery.get('workers') or [])})"


# A report's probes, each a line: its label, then what it found when the service answered.
PROBES = (("redis", "redis:    ", _redis), ("ray", "ray head: ", _ray), ("celery", "worker:   ", _celery))


def _block(pid: str, r: dict[str, Any]) -> list[str]:
    lines = [f"== {pid} ({r.get('node_ip', '?')}): {'ok' if r.get('ok') else 'UNHEALTHY'}"]
    units = []
    # units in the report's order: the node's SERVICE_UNITS (redis, ray_head, worker)
    for unit, u in (r.get("units") or {}).items():
        up = _duration(u.get("uptime_seconds"))
        state = u.get("active") if u.get("active") == "active" else str(u.get("active")).upper()
        units.append(f"{u.get('what', unit)} {state}" + (f" (up {up})" if up else f" ({u.get('sub')})"))
    if units:
        lines.append("units:    " + ", ".join(units))
    if r.get("versions"):
        lines.append("versions: " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in _ordered(r["versions"], VERSION_ORDER)))
    for key, label, answered in PROBES:
        probe = r.get(key)
        if probe is not None:
            lines.append(label + (answered(probe) if probe.get("answers") else f"NO ANSWER ({probe.get('error')})"))
    sockets = r.get("sockets")
    if sockets:
        listens = sockets.get("listens") or {}
        lines.append("sockets:  " + ", ".join(
            f"{name} {where} {'listening' if listens.get(name) else 'NOT LISTENING'}"
            for name, where in (sockets.get("expected") or {}).items()))
    certificates = [c for c in r.get("certificates") or [] if c.get("tls")]
    if certificates:
        lines.append("certs:    " + ", ".join(
            f"{c.get('party')} until {str(c.get('not_after', '?'))[:10]} ({c.get('days_left', '?')} days)"
            for c in certificates))
    lines.extend(f"problem:  {p}" for p in r.get("problems") or [])
    lines.extend(f"warning:  {w}" for w in r.get("warnings") or [])
    return lines


def status_lines(document: dict[str, Any]) -> list[str]:
    """The text of the whole status: a block per party, the matrix, the verdict."""
    lines: list[str] = []
    for pid, report in document["parties"].items():
        lines.extend(_block(pid, report))
        lines.append("")
    ids = sorted(document["matrix"])
    if ids:
        width = max([len("from \\ to")] + [len(i) for i in ids] + [len(c) for row in document["matrix"].values()
                                                                   for c in row.values()])
        lines.append("reachability: row -> column, a TCP connect to the first rayfed and SPU port")
        lines.append(" | ".join(["from \\ to".ljust(width)] + [i.ljust(width) for i in ids]).rstrip())
        for pid in ids:
            lines.append(" | ".join([pid.ljust(width)] + [document["matrix"][pid][to].ljust(width)
                                                          for to in ids]).rstrip())
        lines.append("(open = the peer's host answered on both ports: something listens, or nothing does "
                     "because no job uses slot 0; filtered = no answer: a firewall drops it)")
        lines.append("")
    lines.extend(f"WARNING: {w}" for w in document.get("warnings") or [])
    lines.append(document["verdict"])
    return lines


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"status_federation": status_federation, "status_lines": status_lines}
