"""Problems found in one input, collected so that all are reported at once.

The env file, the federation file and a job spec are each checked in full
before anything is refused: every check adds a :class:`Problem` naming where
(an env key, a path in the file, a spec field), the value found there, what
is wrong and what would be valid, and the caller raises once with them all.
Each input words its problems in a :class:`Style` of its own, so an operator
reads ``RAY_PORT=80 ...`` for the env file, ``parties[1].ip: ...`` for the
federation file and ``job spec field slot: ...`` for a job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# A field the input does not have (``None`` could be a value it has).
MISSING: Any = object()


def is_int(value: Any) -> bool:
    """An integer, and not a bool (JSON ``true`` would otherwise pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Problem:
    field: str  # where: an env key, a path in a file, a spec field; "" for the whole input
    value: Any  # what was found there, MISSING when nothing was
    expected: str  # what would be valid, in short
    message: str  # the whole sentence, as an operator reads it

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "value": None if self.value is MISSING else self.value,
            "expected": self.expected,
            "message": self.message,
        }


@dataclass(frozen=True)
class Style:
    """How one input words a problem, from ``{field}``, ``{value}`` and ``{reason}``.

    ``reason`` says what is wrong and ends with what would be valid. A MISSING
    value is shown as ``missing`` when given, else the ``without_value``
    wording is used; a problem of the whole input (no field) is its reason.
    """

    with_value: str
    without_value: str
    missing: str | None = None
    limit: int | None = None  # a longer shown value is cut

    def show(self, value: Any) -> str:
        if value is MISSING and self.missing is not None:
            return self.missing
        text = repr(value)
        if self.limit is not None and len(text) > self.limit:
            text = text[: self.limit - 3] + "..."
        return text

    def sentence(self, field: str, value: Any, reason: str) -> str:
        if not field:
            return reason
        if value is MISSING and self.missing is None:
            return self.without_value.format(field=field, reason=reason)
        return self.with_value.format(field=field, value=self.show(value), reason=reason)


class Problems:
    """The collector: every check of one input adds to it, the caller raises once."""

    def __init__(self, style: Style) -> None:
        self.style = style
        self.items: list[Problem] = []

    def add(self, field: str, value: Any, reason: str, expected: str) -> None:
        message = self.style.sentence(field, value, reason)
        self.items.append(Problem(field, value, expected, message))

    def one_of(self, field: str, value: Any, choices: Sequence[str], reason: str) -> bool:
        """Whether ``value`` is one of ``choices``; if not, "<reason>; expected one of ..."."""
        if value in choices:
            return True
        self.add(field, value, f"{reason}; expected one of {', '.join(choices)}",
                 ", ".join(choices))
        return False

    def only(self, prefix: str, mapping: Mapping[str, Any], allowed: Sequence[str],
             reason: str) -> bool:
        """Whether every key of ``mapping`` is allowed; each other key is a problem of
        field ``<prefix><key>``: "<reason>; expected only ..."."""
        ok = True
        for key in mapping:
            if key not in allowed:
                self.add(f"{prefix}{key}", mapping[key], f"{reason}; expected only "
                         f"{', '.join(allowed)}", ", ".join(allowed))
                ok = False
        return ok

    @property
    def messages(self) -> list[str]:
        return [p.message for p in self.items]

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.items)

    def raise_if_any(self, error: Callable[[list[Problem]], Exception]) -> None:
        if self.items:
            raise error(list(self.items))


class ProblemsError(ValueError):
    """One or more problems in one input file or environment, all reported together.

    ``problems`` holds the sentences (what the health task and ``sfnode status``
    pass on), ``records`` the same as :class:`Problem` records.
    """

    what = "input"
    default_source = "input"

    def __init__(self, problems: Sequence[Problem | str], source: str | None = None) -> None:
        self.records = [p if isinstance(p, Problem) else Problem("", MISSING, "", p)
                        for p in problems]
        self.problems = [p.message for p in self.records]
        self.source = source or self.default_source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {self.what} ({self.source}):\n{lines}")
