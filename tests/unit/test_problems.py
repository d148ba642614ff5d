"""The one problems collector, in the three wordings that config, federation and spec use."""
from __future__ import annotations

import pytest

from sfnode.config import ENV_STYLE, ConfigError, PortRange, port_slots
from sfnode.federation import FILE_STYLE, FederationError
from sfnode.problems import MISSING, Problems, Style, is_int
from sfnode.spec import SPEC_STYLE, SpecError


@pytest.mark.parametrize(("style", "field", "value", "expected"), [
    (ENV_STYLE, "RAY_PORT", "80", "RAY_PORT='80' is bad; expected X"),
    (ENV_STYLE, "JOB_DIR", MISSING, "JOB_DIR is bad; expected X"),
    (FILE_STYLE, "parties[1].ip", "10.89.0", "parties[1].ip: '10.89.0' is bad; expected X"),
    (FILE_STYLE, "parties[1]", MISSING, "parties[1]: is bad; expected X"),
    (SPEC_STYLE, "slot", 5, "job spec field slot: 5 is bad; expected X"),
    (SPEC_STYLE, "slot", MISSING, "job spec field slot: missing is bad; expected X"),
    (SPEC_STYLE, "params", "x" * 200, "job spec field params: '" + "x" * 116 + "... is bad; "
                                      "expected X"),
    (FILE_STYLE, "", MISSING, "is bad; expected X"),  # a problem of the whole input
])
def test_each_input_words_a_problem_its_way(style: Style, field: str, value: object,
                                            expected: str) -> None:
    problems = Problems(style)
    problems.add(field, value, "is bad; expected X", "X")
    (problem,) = problems
    assert problem.message == expected
    assert problem.to_dict() == {"field": field, "value": None if value is MISSING else value,
                                 "expected": "X", "message": expected}


def test_nothing_is_raised_until_asked_and_then_everything() -> None:
    problems = Problems(ENV_STYLE)
    problems.raise_if_any(ConfigError)
    problems.add("A", "1", "is bad", "good")
    problems.add("B", "2", "is worse", "good")
    with pytest.raises(ConfigError) as err:
        problems.raise_if_any(lambda found: ConfigError(found, "node.env"))
    assert err.value.problems == ["A='1' is bad", "B='2' is worse"]
    assert [r.field for r in err.value.records] == ["A", "B"]
    assert str(err.value) == ("invalid node configuration (node.env):\n  - A='1' is bad\n"
                              "  - B='2' is worse")


def test_errors_keep_their_public_attributes() -> None:
    assert FederationError(["cannot read: gone"]).problems == ["cannot read: gone"]
    problems = Problems(SPEC_STYLE)
    problems.add("slot", "0", "is not a port slot", "an integer >= 0")
    with pytest.raises(SpecError) as err:
        problems.raise_if_any(SpecError)
    assert (err.value.field, err.value.value, err.value.expected) == ("slot", "0",
                                                                       "an integer >= 0")
    assert err.value.to_dicts()[0]["message"] == "job spec field slot: '0' is not a port slot"


def test_is_int_refuses_bools() -> None:
    assert is_int(3) and not is_int(True) and not is_int("3") and not is_int(3.0)


def test_port_slots_are_the_shorter_range() -> None:
    assert port_slots(PortRange(20000, 20031), PortRange(21000, 21009)) == 10


def test_one_of_and_only_word_their_expectations() -> None:
    problems = Problems(SPEC_STYLE)
    assert problems.one_of("kind", "ping", ("ping", "psi"), "is not a known job kind")
    assert not problems.one_of("kind", ["ping"], ("ping", "psi"), "is not a known job kind")
    assert problems.only("parties[0].", {"id": 1}, ("id", "ip"), "is not a party field")
    assert not problems.only("parties[0].", {"id": 1, "port": 2}, ("id", "ip"),
                             "is not a party field")
    assert problems.messages == [
        "job spec field kind: ['ping'] is not a known job kind; expected one of ping, psi",
        "job spec field parties[0].port: 2 is not a party field; expected only id, ip"]
    assert [p.expected for p in problems] == ["ping, psi", "id, ip"]
