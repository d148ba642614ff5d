"""What a job kind is: a parameter check and a run function."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sfnode.config import NodeConfig
from sfnode.problems import Problems
from sfnode.sfargs import JobContext


@dataclass(frozen=True)
class ParamCheck:
    """What a kind's ``validate`` gets besides the params.

    It runs on every party before anything starts, after the generic checks
    passed (a known kind, a clean party list), and adds every problem to
    ``problems`` rather than raising.
    """

    kind: str
    party_ids: list[str]
    config: NodeConfig  # this node: its id, its DATA_DIR
    problems: Problems
    check_files: bool  # whether this node's own input files are opened and checked

    def add(self, field: str, value: Any, reason: str, expected: str) -> None:
        """A problem of field ``field`` (``params.x``, ...); see :meth:`Problems.add`."""
        self.problems.add(field, value, reason, expected)

    def one_of(self, field: str, value: Any, choices: Sequence[str], reason: str) -> bool:
        """Whether ``value`` is one of ``choices``; if not, "<reason>; expected one of ..."."""
        return self.problems.one_of(field, value, choices, reason)

    def known_params(self, params: dict[str, Any], allowed: tuple[str, ...]) -> None:
        """Every parameter not in ``allowed`` is a problem."""
        expected = ", ".join(allowed) if allowed else "no parameters"
        for key in params:
            if key not in allowed:
                self.add(f"params.{key}", params[key], f"is not a parameter of kind {self.kind}; "
                         f"expected {expected}", expected)

    def of_parties(self, field: str, mapping: Mapping[str, Any]) -> None:
        """A per-party param (``{party: ...}``): every key not a party of the job is a problem."""
        self.problems.only(f"{field}.", mapping, self.party_ids, "is for a party not in the job")


# params -> the params normalised (defaults filled in); problems go to the ParamCheck.
Validate = Callable[[dict[str, Any], ParamCheck], dict[str, Any]]
# (the secretflow module, the job) -> the job's result (JSON-able), run after sf.init.
Run = Callable[[Any, JobContext], dict[str, Any]]
# (validated params, a party) -> the paths under that party's DATA_DIR the job reads there.
Reads = Callable[[dict[str, Any], str], tuple[str, ...]]
# (validated params, the job's parties) -> the parties that get the job's result.
Reveals = Callable[[dict[str, Any], tuple[str, ...]], tuple[str, ...]]


def reads_nothing(params: dict[str, Any], party: str) -> tuple[str, ...]:
    return ()


def reveals_to_all(params: dict[str, Any], parties: tuple[str, ...]) -> tuple[str, ...]:
    return parties


@dataclass(frozen=True)
class Kind:
    """A job kind; its name is the name of the module that defines it as ``KIND``."""

    validate: Validate
    run: Run
    uses_spu: bool = False  # whether a job of this kind binds the slot's SPU ports
    # What a party's policy decides on: the datasets a job reads on a party, and who
    # learns its result.
    reads: Reads = reads_nothing
    reveals: Reveals = reveals_to_all
    # Whether the kind starts SecretFlow itself (its component entry, without Ray): the
    # runner then calls ``run`` without ``sf.init`` and with ``sf`` None.
    starts_secretflow: bool = False
