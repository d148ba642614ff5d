"""A party's job policy, as its inventory holds it (job_channel_policy).

- job_policy_problems: every problem of the policy at once, each naming the
  party, the variable path, the value and what would be valid (the worker
  app's own parser decides what is valid).
- job_policy_strangers: the peers a policy names that are no party of the
  federation (yet: an organisation writes its rules before it has a card).
- job_policy_document: the policy file the channel reads (docs/interfaces.md).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    from sfnode.policy import POLICY_VERSION, PolicyError, parse_policy
except ImportError:  # a controller venv without the app installed: use the checkout's
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "src"))
    from sfnode.policy import POLICY_VERSION, PolicyError, parse_policy

VARIABLE = "job_channel_policy"


def job_policy_document(policy: Any) -> dict[str, Any]:
    return {"version": POLICY_VERSION, "peers": policy or {}}


def job_policy_problems(policy: Any, party: str) -> list[str]:
    """What is wrong with ``party``'s policy."""
    problems: list[str] = []
    try:
        parse_policy(job_policy_document(policy), party, VARIABLE)
    except PolicyError as exc:
        for record in exc.records:
            field = record.field
            message = record.message
            if field.startswith("peers"):
                message = VARIABLE + message[len("peers"):]
            problems.append(f"party {party}: {message}")
    return problems


def job_policy_strangers(policy: Any, party: str, parties: Any = ()) -> list[str]:
    """The peers ``party``'s policy names that are not among ``parties`` (the federation's ids)."""
    if not isinstance(policy, dict):
        return []
    known = {str(p) for p in parties or ()}
    return sorted(str(peer) for peer in policy if peer != party and peer not in known)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"job_policy_problems": job_policy_problems, "job_policy_strangers": job_policy_strangers,
                "job_policy_document": job_policy_document}
