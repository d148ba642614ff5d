"""Every role's defaults/main.yml and meta/argument_specs.yml agree.

Names must match both ways and types must match. Literal defaults must be
equal; a templated default ("{{ ... }}") may be documented in the spec by a
sentence instead, since the spec is documentation of what it resolves to.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


def _roles_with_defaults() -> list[Path]:
    return sorted(p.parent.parent for p in ROLES.glob("*/defaults/main.yml"))


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def _templated(value: object) -> bool:
    return isinstance(value, str) and "{{" in value


@pytest.mark.parametrize("role", _roles_with_defaults(), ids=lambda p: p.name)
def test_defaults_and_spec_agree(role: Path) -> None:
    defaults = _load(role / "defaults" / "main.yml")
    spec = _load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    problems = []
    for name in sorted(set(defaults) - set(spec)):
        problems.append(f"{name}: in defaults/main.yml, missing from argument_specs.yml")
    for name in sorted(set(spec) - set(defaults)):
        if not spec[name].get("required"):
            problems.append(f"{name}: in argument_specs.yml, missing from defaults/main.yml")
    for name in sorted(set(defaults) & set(spec)):
        value, entry = defaults[name], spec[name]
        if "default" not in entry:
            problems.append(f"{name}: argument_specs.yml documents no default")
            continue
        if _templated(value):
            continue
        expected = TYPES.get(entry.get("type", "str"))
        if expected is not None and not isinstance(value, expected):
            problems.append(f"{name}: default {value!r} is not of type {entry.get('type')}")
        if entry["default"] != value:
            problems.append(f"{name}: defaults say {value!r}, argument_specs say {entry['default']!r}")
        if "choices" in entry and value not in entry["choices"]:
            problems.append(f"{name}: default {value!r} is not among choices {entry['choices']}")
    assert not problems, f"role {role.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("role", _roles_with_defaults(), ids=lambda p: p.name)
def test_variables_carry_the_role_prefix(role: Path) -> None:
    prefix = role.name + "_"
    bad = [name for name in _load(role / "defaults" / "main.yml") if not name.startswith(prefix)]
    assert not bad, f"role {role.name}: variables without the prefix {prefix!r}: {bad}"


def test_readme_variable_table_matches_the_specs() -> None:
    import subprocess
    import sys

    root = ROLES.parent
    result = subprocess.run([sys.executable, str(root / "scripts" / "variables_table.py"), "--check",
                             str(root / "README.md")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
