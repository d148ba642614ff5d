"""Every role's defaults/main.yml and meta/argument_specs.yml agree, and the
specs document every entry point other files call and every variable a role
reads from another role.

Names must match both ways and types must match. Literal defaults must be
equal; a templated default ("{{ ... }}") may be documented in the spec by a
sentence instead, since the spec is documentation of what it resolves to.
An option named with another role's prefix is that role's variable, read
here: it is declared, not defaulted, and it is not in the README's table.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}
# Jinja in a string, and the keys whose values are Jinja without braces.
JINJA = re.compile(r"{{(.*?)}}|{%(.*?)%}", re.S)
BARE_JINJA = {"when", "that", "failed_when", "changed_when", "until"}
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ROLE_ACTIONS = ("ansible.builtin.include_role", "ansible.builtin.import_role")


def _roles() -> list[Path]:
    return sorted(p.parent.parent for p in ROLES.glob("*/meta/argument_specs.yml"))


def _roles_with_defaults() -> list[Path]:
    return sorted(p.parent.parent for p in ROLES.glob("*/defaults/main.yml"))


def _load(path: Path) -> dict:
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _specs(role: Path) -> dict:
    return _load(role / "meta" / "argument_specs.yml")["argument_specs"]


def _own(role: Path, names) -> list[str]:
    return [name for name in names if name.startswith(role.name + "_")]


def _variables(role: Path) -> set[str]:
    """What a role owns: its defaults, its fixed vars and its required options."""
    main = _specs(role).get("main", {}).get("options", {})
    return set(_load(role / "defaults" / "main.yml")) | set(_load(role / "vars" / "main.yml")) | set(_own(role, main))


def _templated(value: object) -> bool:
    return isinstance(value, str) and "{{" in value


@pytest.mark.parametrize("role", _roles_with_defaults(), ids=lambda p: p.name)
def test_defaults_and_spec_agree(role: Path) -> None:
    defaults = _load(role / "defaults" / "main.yml")
    options = _specs(role)["main"]["options"]
    spec = {name: options[name] for name in _own(role, options)}
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


def _tasks(node) -> Iterator[dict]:
    """Every task of a playbook, a task file or a block, nested ones included."""
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
            yield from _tasks(node.get(key))
        yield node


def _entry_points_called() -> Iterator[tuple[Path, str, str]]:
    """(calling file, role, entry point) of every include_role/import_role with tasks_from."""
    callers = [ROOT / "site.yml", *sorted(ROOT.glob("playbooks/*.yml")), *sorted(ROOT.glob("molecule/*/*.yml")),
               *sorted(ROLES.glob("*/tasks/*.yml")), *sorted(ROLES.glob("*/handlers/*.yml"))]
    for path in callers:
        for task in _tasks(yaml.safe_load(path.read_text())):
            for action in ROLE_ACTIONS:
                args = task.get(action)
                if isinstance(args, dict) and "tasks_from" in args:
                    names = task["loop"] if "{{" in str(args["name"]) else [args["name"]]
                    for name in names:
                        yield path, name, Path(args["tasks_from"]).stem


def test_every_entry_point_called_from_outside_its_role_has_a_spec() -> None:
    problems = []
    for caller, name, entry in sorted(set(_entry_points_called())):
        role = ROLES / name
        if caller.is_relative_to(role):
            continue
        if entry not in _specs(role):
            problems.append(f"{caller.relative_to(ROOT)} calls {name}'s tasks/{entry}.yml, "
                            f"which roles/{name}/meta/argument_specs.yml does not document")
    for role in _roles():
        for entry in _specs(role):
            if not (role / "tasks" / f"{entry}.yml").exists():
                problems.append(f"roles/{role.name}: argument_specs.yml documents {entry}, which has no tasks/{entry}.yml")
    assert not problems, "\n".join(problems)


def _expressions(node, bare: bool = False) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _expressions(value, key in BARE_JINJA)
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item, bare)
    elif isinstance(node, str):
        if bare:
            yield node
        for match in JINJA.finditer(node):
            yield match.group(1) or match.group(2)


def _names_read(role: Path) -> set[str]:
    """Every name in the Jinja of a role's tasks, handlers, templates, defaults and vars."""
    names: set[str] = set()
    for path in sorted(role.glob("*/*")):
        if path.parent.name not in ("tasks", "handlers", "templates", "defaults", "vars"):
            continue
        text = path.read_text()
        if path.suffix == ".yml":
            expressions = _expressions(yaml.safe_load(text))
        else:
            expressions = (a or b for a, b in JINJA.findall(text))
        for expression in expressions:
            names |= set(NAME.findall(QUOTED.sub("", expression)))
    return names


@pytest.mark.parametrize("role", _roles(), ids=lambda p: p.name)
def test_what_a_role_reads_from_other_roles_is_declared_in_its_specs(role: Path) -> None:
    owners = {name: other.name for other in _roles() if other != role for name in _variables(other)}
    declared = {name for entry in _specs(role).values() for name in entry.get("options") or {}}
    problems = [f"reads {name} of role {owners[name]}; declare it in an entry point's options"
                for name in sorted(_names_read(role) & set(owners) - declared)]
    prefixes = {other.name + "_": other.name for other in _roles() if other != role}
    for name in sorted(declared - set(_own(role, declared)) - set(owners)):
        owner = next((r for prefix, r in prefixes.items() if name.startswith(prefix)), None)
        if owner:
            problems.append(f"declares {name}, which role {owner} does not have")
    assert not problems, f"role {role.name}:\n" + "\n".join(problems)
