"""This party's job policy: what each peer may ask of this node, decided here.

An organisation keeps its policy in its own inventory (``job_channel_policy``);
the job_channel role writes it to ``/etc/secretflow/policy.json`` (see
docs/interfaces.md). Nothing is allowed by default: a peer without a rule, a
kind not listed for it, a dataset outside its patterns are all refused, each
naming the rule that refused and why. A proposal that passes every rule is
``accepted`` (queued on this node's worker) or, for a kind marked ``manual``,
``waiting`` for a person (``sfnode approve`` / ``sfnode refuse``).

The file::

    {"version": 1,
     "peers": {
       "alice": {"kinds": {"psi": "accept", "spu_sum": "manual"},
                 "datasets": ["shared/*"],
                 "max_deadline_seconds": 1800,
                 "reveal_to": ["alice"],
                 "max_concurrent_jobs": 1}}}

``datasets`` are patterns of paths under this party's DATA_DIR, matched part
by part (``*`` never crosses a ``/``). ``reveal_to`` names the parties besides
this one that a job's result may reach (a PSI broadcast, a revealed sum).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sfnode import kinds
from sfnode.config import MAX_DEADLINE_SECONDS, NODE_ID_RE
from sfnode.jobspec import JobSpec
from sfnode.problems import MISSING, Problems, ProblemsError, Style, is_int

POLICY_VERSION = 1
DECISIONS = ("accept", "manual")
ACCEPTED, REFUSED, WAITING = "accepted", "refused", "waiting"
RULE_FIELDS = ("kinds", "datasets", "max_deadline_seconds", "reveal_to", "max_concurrent_jobs")
MAX_CONCURRENT_JOBS = 1024
FILE_STYLE = Style(with_value="{field}: {value} {reason}", without_value="{field}: {reason}")


class PolicyError(ProblemsError):
    """Problems in a policy file."""

    what = "job policy"
    default_source = "policy"


@dataclass(frozen=True)
class PeerRule:
    """What one peer may ask of this party."""

    peer: str
    kinds: Mapping[str, str] = field(default_factory=dict)  # kind -> accept | manual
    datasets: tuple[str, ...] = ()
    max_deadline_seconds: int = MAX_DEADLINE_SECONDS
    reveal_to: tuple[str, ...] = ()
    max_concurrent_jobs: int = 1

    def may_read(self, path: str) -> bool:
        return any(path_matches(path, pattern) for pattern in self.datasets)


@dataclass(frozen=True)
class Policy:
    party: str  # whose policy this is
    peers: Mapping[str, PeerRule] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    outcome: str  # accepted | refused | waiting
    rule: str  # the rule that decided, as a path in the policy (peers.alice.datasets)
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"outcome": self.outcome, "rule": self.rule, "reason": self.reason}


def path_matches(path: str, pattern: str) -> bool:
    """Whether a relative path matches a pattern part by part (``*`` stays within a part)."""
    parts, wanted = PurePosixPath(path).parts, PurePosixPath(pattern).parts
    return len(parts) == len(wanted) and all(
        fnmatch.fnmatchcase(part, want) for part, want in zip(parts, wanted))


def parse_policy(data: Any, party: str, source: str = "policy") -> Policy:
    """The policy of ``party`` from a parsed file; every problem at once (PolicyError)."""
    problems = Problems(FILE_STYLE)
    if not isinstance(data, Mapping):
        problems.add("", data, "the policy is not a JSON object; expected {\"version\": 1, "
                     "\"peers\": {...}}", "an object")
        problems.raise_if_any(lambda found: PolicyError(found, source))
    problems.only("", data, ("version", "peers"), "is not a policy field")
    if data.get("version", MISSING) != POLICY_VERSION:
        problems.add("version", data.get("version", MISSING),
                     f"is not a policy version this node reads; expected {POLICY_VERSION}",
                     str(POLICY_VERSION))
    peers = data.get("peers", {})
    rules: dict[str, PeerRule] = {}
    if not isinstance(peers, Mapping):
        problems.add("peers", peers, "is not valid; expected an object of peer rules by party "
                     "id", "{party: rule}")
    else:
        for peer, rule in peers.items():
            parsed = _peer_rule(f"peers.{peer}", peer, rule, party, problems)
            if parsed is not None:
                rules[peer] = parsed
    problems.raise_if_any(lambda found: PolicyError(found, source))
    return Policy(party=party, peers=rules)


def _peer_rule(where: str, peer: Any, rule: Any, party: str,
               problems: Problems) -> PeerRule | None:
    before = len(problems)
    if not isinstance(peer, str) or not NODE_ID_RE.fullmatch(peer) or peer == party:
        problems.add(where, peer, f"is not a peer; expected the id of another party than "
                     f"{party}", "a party id")
    if not isinstance(rule, Mapping):
        problems.add(where, rule, f"is not valid; expected an object with {', '.join(RULE_FIELDS)}",
                     "an object")
        return None
    problems.only(f"{where}.", rule, RULE_FIELDS, "is not a rule field")
    kind_rules = rule.get("kinds", {})
    known = kinds.names()
    if not isinstance(kind_rules, Mapping):
        problems.add(f"{where}.kinds", kind_rules, "is not valid; expected an object of job "
                     "kinds, each accept or manual", "{kind: accept|manual}")
        kind_rules = {}
    for kind, how in kind_rules.items():
        problems.one_of(f"{where}.kinds", kind, known, "is not a job kind")
        problems.one_of(f"{where}.kinds.{kind}", how, DECISIONS, "is not a decision")
    datasets = rule.get("datasets", [])
    if not _strings(datasets) or not all(_relative_pattern(p) for p in datasets):
        problems.add(f"{where}.datasets", datasets, "is not valid; expected a list of path "
                     "patterns relative to DATA_DIR (no '..', not absolute)", "[pattern]")
    deadline = rule.get("max_deadline_seconds", MAX_DEADLINE_SECONDS)
    if not is_int(deadline) or not 1 <= deadline <= MAX_DEADLINE_SECONDS:
        problems.add(f"{where}.max_deadline_seconds", deadline, f"is not valid; expected an "
                     f"integer in 1..{MAX_DEADLINE_SECONDS}", f"1..{MAX_DEADLINE_SECONDS}")
    reveal_to = rule.get("reveal_to", [])
    if not _strings(reveal_to) or not all(NODE_ID_RE.fullmatch(p) for p in reveal_to):
        problems.add(f"{where}.reveal_to", reveal_to, "is not valid; expected a list of party "
                     "ids", "[party]")
    concurrent = rule.get("max_concurrent_jobs", 1)
    if not is_int(concurrent) or not 0 <= concurrent <= MAX_CONCURRENT_JOBS:
        problems.add(f"{where}.max_concurrent_jobs", concurrent, f"is not valid; expected an "
                     f"integer in 0..{MAX_CONCURRENT_JOBS}", f"0..{MAX_CONCURRENT_JOBS}")
    if len(problems) != before:
        return None
    return PeerRule(peer=peer, kinds=dict(kind_rules), datasets=tuple(datasets),
                    max_deadline_seconds=deadline, reveal_to=tuple(reveal_to),
                    max_concurrent_jobs=concurrent)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _relative_pattern(pattern: str) -> bool:
    path = PurePosixPath(pattern)
    return not path.is_absolute() and ".." not in path.parts and "\x00" not in pattern


def load_policy(path: Path, party: str) -> Policy:
    """The policy file at ``path``; a missing file is a policy that allows nothing."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Policy(party=party)
    except OSError as exc:
        raise PolicyError([f"cannot read the policy: {exc.strerror}"], str(path)) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PolicyError([f"not JSON: {exc}"], str(path)) from None
    return parse_policy(data, party, str(path))


def decide(policy: Policy, spec: JobSpec, proposer: str, running: int = 0,
           resolve: Callable[[str], str | None] = lambda path: path) -> Decision:
    """How this party answers ``proposer``'s proposal of ``spec`` (already validated here),
    with ``running`` of ``proposer``'s jobs running or queued on this node. ``resolve``
    gives what a path really names under DATA_DIR (links followed; None: outside it): both
    the path and what it names must be allowed."""
    me = policy.party
    rule = policy.peers.get(proposer)
    if rule is None:
        return Decision(REFUSED, "peers", f"party {proposer} has no rule in the policy of "
                        f"party {me}: it may propose nothing")
    where = f"peers.{proposer}"
    how = rule.kinds.get(spec.kind)
    if how is None:
        allowed = ", ".join(sorted(rule.kinds)) or "none"
        return Decision(REFUSED, f"{where}.kinds", f"party {me} does not take jobs of kind "
                        f"{spec.kind} from {proposer} (allowed: {allowed})")
    if spec.deadline_seconds > rule.max_deadline_seconds:
        return Decision(REFUSED, f"{where}.max_deadline_seconds",
                        f"deadline {spec.deadline_seconds} s is longer than the "
                        f"{rule.max_deadline_seconds} s party {me} accepts from {proposer}")
    kind = kinds.get(spec.kind)
    for path in kind.reads(spec.params, me):
        real = resolve(path)
        if not rule.may_read(path) or real is None or not rule.may_read(real):
            allowed = ", ".join(rule.datasets) or "none"
            return Decision(REFUSED, f"{where}.datasets",
                            f"{proposer}'s job may not read {path} on party {me} "
                            f"(allowed: {allowed})")
    told = [p for p in kind.reveals(spec.params, tuple(spec.party_ids))
            if p != me and p not in rule.reveal_to]
    if told:
        return Decision(REFUSED, f"{where}.reveal_to",
                        f"the result would reach {', '.join(told)}, to whom party {me} "
                        f"reveals nothing of {proposer}'s jobs (allowed: "
                        f"{', '.join(rule.reveal_to) or 'none'})")
    if running >= rule.max_concurrent_jobs:
        return Decision(REFUSED, f"{where}.max_concurrent_jobs",
                        f"{proposer} already has {running} job(s) on party {me}, the most it "
                        f"may have at once is {rule.max_concurrent_jobs}")
    if how == "manual":
        return Decision(WAITING, f"{where}.kinds.{spec.kind}",
                        f"a person on party {me} decides jobs of kind {spec.kind} from "
                        f"{proposer} (sfnode approve / sfnode refuse)")
    return Decision(ACCEPTED, f"{where}.kinds.{spec.kind}",
                    f"party {me} accepts jobs of kind {spec.kind} from {proposer}")

