"""pattern_checks: settings that end up in unit files, redis.conf or the env
file, checked against the pattern of what they may hold.

A newline or a space in such a value would add a directive or an argument
(``redis_maxmemory: "1gb\\nslaveof ..."``), so every such string is matched
whole before anything is rendered. Input: a list of ``{name, value, kind}`` (one
of KINDS) or ``{name, value, pattern, valid}``; ``value`` is a string or a
number, or a list whose every element must match. Output: ``[{ok, msg}]`` for
roles/common/tasks/checks.yml.
"""
from __future__ import annotations

import re
from typing import Any


# What several roles' settings hold: (pattern, what is valid).
KINDS = {
    "path": (r"/[A-Za-z0-9._/-]*", "an absolute path of letters, digits, '.', '_', '-' and '/'"),
    "account": (r"[a-z_][a-z0-9_-]{0,31}", "a lowercase user or group name"),
    "systemd_memory": (r"[0-9]+[KMGT]?|[0-9]{1,2}%|100%|infinity",
                       "bytes with an optional K, M, G or T suffix, a percentage such as 40%, or infinity"),
}


def _matches(value: Any, pattern: str) -> bool:
    return not isinstance(value, (dict, bool)) and re.fullmatch(pattern, str(value)) is not None


def pattern_checks(patterns: list[dict[str, Any]], party: str) -> list[dict[str, Any]]:
    checks = []
    for item in patterns:
        value = item["value"]
        pattern, valid = KINDS[item["kind"]] if "kind" in item else (item["pattern"], item["valid"])
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if not _matches(v, pattern)]
        shown = ", ".join(repr(v) for v in bad)
        checks.append({
            "ok": not bad,
            "msg": f"party {party}: {item['name']} is {shown}; valid: {valid}"
                   + ("" if not isinstance(value, list) else " (each element)"),
        })
    return checks


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pattern_checks": pattern_checks}
