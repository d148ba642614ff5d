"""A party's job policy: parsed with every problem named, and its decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import full_spec
from sfnode.jobspec import JobSpec
from sfnode.policy import (ACCEPTED, REFUSED, WAITING, PolicyError, decide, load_policy,
                           parse_policy, path_matches)

BOB = {"version": 1, "peers": {
    "alice": {"kinds": {"psi": "accept", "spu_sum": "manual"}, "datasets": ["shared/*"],
              "max_deadline_seconds": 1800, "reveal_to": ["alice"], "max_concurrent_jobs": 1},
}}


def psi(path: str = "shared/ids.csv", broadcast: bool = True, deadline: int = 600,
        receiver: str = "alice") -> JobSpec:
    spec = full_spec("psi", deadline_seconds=deadline, params={
        "inputs": {"alice": {"path": "a.csv", "keys": ["id"]}, "bob": {"path": path, "keys": ["id"]}},
        "receiver": receiver, "protocol": "PROTOCOL_RR22", "broadcast_result": broadcast})
    return JobSpec.from_dict(spec)


def bob_policy(**changes: Any) -> Any:
    rule = {**BOB["peers"]["alice"], **changes}
    return parse_policy({"version": 1, "peers": {"alice": rule}}, "bob")


def test_a_psi_on_a_shared_file_is_accepted() -> None:
    decision = decide(bob_policy(), psi(), "alice")
    assert decision.outcome == ACCEPTED and decision.rule == "peers.alice.kinds.psi"


def test_a_private_file_is_refused_naming_the_rule_and_the_path() -> None:
    decision = decide(bob_policy(), psi("private/x.csv"), "alice")
    assert decision.outcome == REFUSED and decision.rule == "peers.alice.datasets"
    assert "private/x.csv" in decision.reason and "party bob" in decision.reason
    assert "shared/*" in decision.reason


def test_a_peer_without_a_rule_may_propose_nothing() -> None:
    decision = decide(bob_policy(), psi(), "carol")
    assert (decision.outcome, decision.rule) == (REFUSED, "peers")
    assert "party carol has no rule in the policy of party bob" in decision.reason


def test_a_kind_not_listed_is_refused_naming_the_allowed_ones() -> None:
    decision = decide(bob_policy(kinds={"spu_sum": "accept"}), psi(), "alice")
    assert (decision.outcome, decision.rule) == (REFUSED, "peers.alice.kinds")
    assert "kind psi" in decision.reason and "allowed: spu_sum" in decision.reason


def test_a_manual_kind_waits_for_a_person() -> None:
    decision = decide(bob_policy(kinds={"psi": "manual"}), psi(), "alice")
    assert decision.outcome == WAITING and "sfnode approve" in decision.reason


@pytest.mark.parametrize("changes, spec, rule", [
    ({"max_deadline_seconds": 300}, psi(deadline=600), "peers.alice.max_deadline_seconds"),
    ({"reveal_to": []}, psi(), "peers.alice.reveal_to"),
])
def test_deadline_and_reveal_limits(changes: dict[str, Any], spec: JobSpec, rule: str) -> None:
    decision = decide(bob_policy(**changes), spec, "alice")
    assert (decision.outcome, decision.rule) == (REFUSED, rule)


def test_a_result_only_this_party_receives_needs_no_reveal_rule() -> None:
    assert decide(bob_policy(reveal_to=[]), psi(broadcast=False, receiver="bob"),
                  "alice").outcome == ACCEPTED
    # the receiver is the proposer: the intersection reaches alice
    assert decide(bob_policy(reveal_to=[]), psi(broadcast=False),
                  "alice").rule == "peers.alice.reveal_to"


def test_a_peer_at_its_limit_of_jobs_is_refused() -> None:
    decision = decide(bob_policy(max_concurrent_jobs=1), psi(), "alice", running=1)
    assert (decision.outcome, decision.rule) == (REFUSED, "peers.alice.max_concurrent_jobs")


@pytest.mark.parametrize("path, pattern, matches", [
    ("shared/ids.csv", "shared/*", True), ("shared/sub/ids.csv", "shared/*", False),
    ("shared/ids.csv", "shared/*.csv", True), ("private/x.csv", "shared/*", False),
    ("ids.csv", "*", True), ("shared", "shared/*", False),
])
def test_patterns_match_part_by_part(path: str, pattern: str, matches: bool) -> None:
    assert path_matches(path, pattern) is matches


def test_every_problem_of_a_policy_is_named_at_once() -> None:
    bad = {"version": 2, "extra": 1, "peers": {
        "bob": {"kinds": {}},  # its own party
        "alice": {"kinds": {"psy": "accept", "psi": "sometimes"}, "datasets": ["/etc/*", "../x"],
                  "max_deadline_seconds": 0, "reveal_to": "alice", "max_concurrent_jobs": -1,
                  "colour": "red"}}}
    with pytest.raises(PolicyError) as caught:
        parse_policy(bad, "bob", "bob's policy")
    text = str(caught.value)
    for expected in ("version: 2 is not a policy version", "extra: 1 is not a policy field",
                     "peers.bob: 'bob' is not a peer", "peers.alice.kinds: 'psy' is not a job kind",
                     "peers.alice.kinds.psi: 'sometimes' is not a decision",
                     "peers.alice.datasets:", "peers.alice.max_deadline_seconds: 0",
                     "peers.alice.reveal_to: 'alice'", "peers.alice.max_concurrent_jobs: -1",
                     "peers.alice.colour: 'red' is not a rule field"):
        assert expected in text, (expected, text)
    assert "bob's policy" in text


def test_no_policy_file_allows_nothing(tmp_path: Path) -> None:
    policy = load_policy(tmp_path / "policy.json", "bob")
    assert decide(policy, psi(), "alice").outcome == REFUSED


def test_a_policy_file_that_is_not_json_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text("{peers:")
    with pytest.raises(PolicyError, match=str(path)):
        load_policy(path, "bob")
