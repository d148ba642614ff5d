"""A pipeline step's component and attributes, checked against the catalogue.

SecretFlow's own checks of a component's parameters happen when the
component runs, on every party at once, and some of them are silent (an
attribute of the wrong type reads as 0). Here the same definitions
(``sfnode.catalogue``) are applied to a step of a job spec before anything
runs: the component exists, every attribute is one it has and of its type,
within its bounds and among its allowed values, every attribute it needs is
there, every input is one it takes and of a type it reads, and every column
an attribute names is in the schema of the table given for that input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sfnode.problems import MISSING, is_int

COMPONENT_ID_RE = re.compile(r"([a-z][a-z0-9_.]*)/([a-z][a-z0-9_]*):(\d+)\.(\d+)\.(\d+)")
COMPONENT_ID_PATTERN = "domain/name:X.Y.Z"

SCALAR_TYPES = {"AT_FLOAT": "a number", "AT_INT": "an integer", "AT_STRING": "a string",
                "AT_BOOL": "true or false"}
LIST_TYPES = {"AT_FLOATS": "AT_FLOAT", "AT_INTS": "AT_INT", "AT_STRINGS": "AT_STRING",
              "AT_BOOLS": "AT_BOOL"}
# Which field of SecretFlow's Attribute proto holds a value of each type.
ATTRIBUTE_FIELD = {"AT_FLOAT": "f", "AT_INT": "i64", "AT_STRING": "s", "AT_BOOL": "b",
                   "AT_FLOATS": "fs", "AT_INTS": "i64s", "AT_STRINGS": "ss", "AT_BOOLS": "bs",
                   "AT_PARTY": "ss", "AT_UNION_GROUP": "s", "AT_CUSTOM_PROTOBUF": "s",
                   "AT_COLUMNS": "ss"}
# A pseudo type: the columns an input's table attribute names (``input/<input>/<name>``).
COLUMNS = "AT_COLUMNS"


def attr_path(attr: Mapping[str, Any]) -> str:
    return "/".join([*attr.get("prefixes", []), attr["name"]])


def _applies(item: Mapping[str, Any], minor: int) -> bool:
    """Whether an attribute or input of a definition exists in minor version ``minor``."""
    low = int(item.get("minor_min", 0) or 0)
    high = int(item.get("minor_max", -1))
    return minor >= low and (high == -1 or minor <= high)


@dataclass(frozen=True)
class AttrDef:
    path: str
    type: str  # AT_* (ATTR_TYPE_UNSPECIFIED for a union's plain choice), or COLUMNS
    atomic: Mapping[str, Any]
    union_default: str | None = None
    input_name: str | None = None  # COLUMNS: the input whose table it names columns of
    col_min: int = 0
    col_max: int = 0  # 0: no upper limit

    @property
    def settable(self) -> bool:
        return self.type in ATTRIBUTE_FIELD

    @property
    def required(self) -> bool:
        if self.type == COLUMNS:
            return self.col_min > 0
        if self.type == "AT_PARTY":
            return int(self.atomic.get("list_min_length_inclusive", 0) or 0) > 0
        if self.type in SCALAR_TYPES or self.type in LIST_TYPES or self.type == "AT_CUSTOM_PROTOBUF":
            return not self.atomic.get("is_optional", False)
        return False


@dataclass(frozen=True)
class IoDef:
    name: str
    types: tuple[str, ...]
    optional: bool
    variable: bool


@dataclass(frozen=True)
class Component:
    """One version of a component, as a step uses it."""

    id: str  # as the step gave it: domain/name:X.Y.Z
    key: str  # domain/name
    version: str  # the version the library has
    attrs: Mapping[str, AttrDef]
    inputs: tuple[IoDef, ...]
    outputs: tuple[IoDef, ...]

    def attribute_field(self, path: str) -> str:
        """The field of SecretFlow's Attribute proto that carries attribute ``path``."""
        return ATTRIBUTE_FIELD[self.attrs[path].type]


def resolve(catalogue: Mapping[str, Mapping[str, Any]], comp_id: str) -> Component | str:
    """The component a step names, or why there is none (a sentence ending in what is
    valid). A step may name an older minor version of the same major than the library's:
    the library then runs it with that minor's attributes."""
    match = COMPONENT_ID_RE.fullmatch(comp_id) if isinstance(comp_id, str) else None
    if match is None:
        return f"is not a component id; expected {COMPONENT_ID_PATTERN}"
    key = f"{match.group(1)}/{match.group(2)}"
    definition = catalogue.get(key)
    if definition is None:
        close = [k for k in catalogue if k.split("/")[-1] == match.group(2)
                 or k.split("/")[0] == match.group(1)]
        hint = f" (in domain {match.group(1)}: {', '.join(_ids(catalogue, close))})" if close else ""
        return (f"is not a component of this node's SecretFlow{hint}; expected one of the "
                "ids `sfnode components` lists")
    major, minor = int(match.group(3)), int(match.group(4))
    version = definition.get("version", "")
    have = [int(x) for x in version.split(".")]
    if major != have[0] or minor > have[1]:
        return (f"is not a version this node's SecretFlow has; expected {key}:{version} "
                f"(or an older {have[0]}.x minor)")
    return _component(comp_id, key, definition, minor)


def _ids(catalogue: Mapping[str, Mapping[str, Any]], keys: Sequence[str]) -> list[str]:
    return [f"{k}:{catalogue[k].get('version', '')}" for k in keys]


def _component(comp_id: str, key: str, definition: Mapping[str, Any], minor: int) -> Component:
    attrs: dict[str, AttrDef] = {}
    for attr in definition.get("attrs", []):
        if not _applies(attr, minor):
            continue
        kind = attr.get("type", "ATTR_TYPE_UNSPECIFIED")
        union = attr.get("union") or {}
        attrs[attr_path(attr)] = AttrDef(attr_path(attr), kind, attr.get("atomic") or {},
                                         union.get("default_selection") if kind == "AT_UNION_GROUP" else None)
    inputs = []
    for io in definition.get("inputs", []):
        if not _applies(io, minor):
            continue
        inputs.append(IoDef(io["name"], tuple(io.get("types", [])), bool(io.get("is_optional")),
                            bool(io.get("is_variable"))))
        for col in io.get("attrs", []):
            path = f"input/{io['name']}/{col['name']}"
            attrs[path] = AttrDef(path, COLUMNS, {}, input_name=io["name"],
                                  col_min=int(col.get("col_min_cnt_inclusive", 0) or 0),
                                  col_max=int(col.get("col_max_cnt_inclusive", 0) or 0))
    outputs = tuple(IoDef(io["name"], tuple(io.get("types", [])), False, False)
                    for io in definition.get("outputs", []) if _applies(io, minor))
    return Component(comp_id, key, definition.get("version", ""), attrs, tuple(inputs), outputs)


# --- attribute values ------------------------------------------------------------------------


@dataclass
class AttrCheck:
    """The problems of one step's attributes: (attribute path, value, reason, expected)."""

    component: Component
    parties: Sequence[str]
    # per input name: the columns of the table given for it (None: not known before it runs)
    columns: Mapping[str, set[str] | None]
    problems: list[tuple[str, Any, str, str]] = field(default_factory=list)

    def add(self, path: str, value: Any, reason: str, expected: str) -> None:
        self.problems.append((path, value, reason, expected))


def check_attrs(attrs: Mapping[str, Any], check: AttrCheck) -> dict[str, Any]:
    """Check a step's ``attrs`` (attribute path -> JSON value); the attributes normalised
    (a single party or column as a list). Adds every problem to ``check``."""
    comp = check.component
    clean: dict[str, Any] = {}
    for path, value in attrs.items():
        definition = comp.attrs.get(path)
        if definition is None:
            check.add(path, value, f"is not an attribute of {comp.key}:{comp.version}",
                      _attr_list(comp))
            continue
        if not definition.settable:
            members = [p for p in comp.attrs if p.startswith(path + "/") and comp.attrs[p].settable]
            check.add(path, value, f"is a group of {comp.key}, not an attribute; "
                      f"expected its members ({', '.join(members) or 'none'}) or, for a "
                      "choice, the name of the choice as the group's value", "a member attribute")
            continue
        normal = _check_value(definition, value, check)
        if normal is not MISSING:
            clean[path] = normal
    for path, definition in comp.attrs.items():
        if definition.required and path not in attrs and _active(comp, path, attrs) \
                and _input_given(definition, check):
            check.add(path, MISSING, f"is required by {comp.key}:{comp.version}",
                      _expected(definition, check))
    return clean


def _input_given(definition: AttrDef, check: AttrCheck) -> bool:
    return definition.input_name is None or definition.input_name in check.columns


def _active(comp: Component, path: str, given: Mapping[str, Any]) -> bool:
    """Whether an attribute inside union choices applies: every union above it selects
    the branch it is in (the given choice, else the union's default)."""
    parts = path.split("/")
    if parts[0] == "input":
        return True
    for depth in range(1, len(parts)):
        parent = comp.attrs.get("/".join(parts[:depth]))
        if parent is not None and parent.type == "AT_UNION_GROUP":
            chosen = given.get(parent.path, parent.union_default)
            if chosen != parts[depth]:
                return False
    return True


def _attr_list(comp: Component) -> str:
    paths = [p for p, d in comp.attrs.items() if d.settable]
    return "one of " + ", ".join(paths) if paths else "no attributes"


def _expected(definition: AttrDef, check: AttrCheck) -> str:
    kind = definition.type
    if kind == COLUMNS:
        count = _count_text(definition.col_min, definition.col_max)
        cols = check.columns.get(definition.input_name or "")
        where = f" of {definition.input_name}'s table"
        return f"a list of {count} column name(s){where}" + (f" ({', '.join(sorted(cols))})" if cols else "")
    if kind == "AT_PARTY":
        low = int(definition.atomic.get("list_min_length_inclusive", 0) or 0)
        high = int(definition.atomic.get("list_max_length_inclusive", -1) or -1)
        return f"a list of {_count_text(low, max(high, 0))} of the job's parties ({', '.join(check.parties)})"
    if kind == "AT_UNION_GROUP":
        choices = _choices(check.component, definition.path)
        return "one of " + ", ".join(choices)
    if kind == "AT_CUSTOM_PROTOBUF":
        return "a string (JSON of the attribute's message)"
    if kind in LIST_TYPES:
        low = int(definition.atomic.get("list_min_length_inclusive", 0) or 0)
        high = int(definition.atomic.get("list_max_length_inclusive", -1) or -1)
        return f"a list of {_count_text(low, max(high, 0))} {_scalar_text(LIST_TYPES[kind], definition)}"
    return _scalar_text(kind, definition)


def _count_text(low: int, high: int) -> str:
    if high <= 0:
        return f"at least {low}" if low else "any number"
    return str(low) if low == high else f"{low} to {high}"


def _choices(comp: Component, path: str) -> list[str]:
    depth = path.count("/") + 1
    return [p.split("/")[-1] for p in comp.attrs
            if p.startswith(path + "/") and p.count("/") == depth]


def _scalar_text(kind: str, definition: AttrDef) -> str:
    text = SCALAR_TYPES[kind]
    allowed = _allowed(definition, kind)
    if allowed:
        return f"{text}, one of {', '.join(map(str, allowed))}"
    low, high = _bound(definition, "lower", kind), _bound(definition, "upper", kind)
    if low is not None:
        text += f" {'>=' if definition.atomic.get('lower_bound_inclusive') else '>'} {low}"
    if high is not None:
        text += f"{',' if low is not None else ''} {'<=' if definition.atomic.get('upper_bound_inclusive') else '<'} {high}"
    return text


def _allowed(definition: AttrDef, kind: str) -> list[Any]:
    allowed = definition.atomic.get("allowed_values") or {}
    values = allowed.get(ATTRIBUTE_FIELD[kind] + "s" if kind in SCALAR_TYPES else "", [])
    return [_number(v, kind) for v in values]


def _bound(definition: AttrDef, side: str, kind: str) -> float | int | None:
    if not definition.atomic.get(f"{side}_bound_enabled"):
        return None
    raw = (definition.atomic.get(f"{side}_bound") or {}).get(ATTRIBUTE_FIELD[kind], 0)
    return _number(raw, kind)


def _number(raw: Any, kind: str) -> Any:
    if kind == "AT_INT":
        return int(raw)
    if kind == "AT_FLOAT":
        return float(raw)
    return raw


def _scalar_ok(kind: str, value: Any) -> bool:
    if kind == "AT_FLOAT":
        return (isinstance(value, (int, float)) and not isinstance(value, bool))
    if kind == "AT_INT":
        return is_int(value)
    if kind == "AT_STRING":
        return isinstance(value, str)
    return isinstance(value, bool)


def _in_bounds(definition: AttrDef, kind: str, value: Any) -> bool:
    allowed = _allowed(definition, kind)
    if allowed and value not in allowed:
        return False
    low, high = _bound(definition, "lower", kind), _bound(definition, "upper", kind)
    if low is not None:
        inclusive = definition.atomic.get("lower_bound_inclusive", False)
        if value < low or (value == low and not inclusive):
            return False
    if high is not None:
        inclusive = definition.atomic.get("upper_bound_inclusive", False)
        if value > high or (value == high and not inclusive):
            return False
    return True


def _names(value: Any) -> list[str] | None:
    """A name or a list of names, as a list (None: neither)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return list(value)
    return None


def _count_ok(count: int, low: int, high: int) -> bool:
    return count >= low and (high <= 0 or count <= high)


def _check_value(definition: AttrDef, value: Any, check: AttrCheck) -> Any:
    kind = definition.type
    path = definition.path

    def bad(reason: str) -> Any:
        check.add(path, value, reason, _expected(definition, check))
        return MISSING

    if kind in SCALAR_TYPES:
        if not _scalar_ok(kind, value):
            return bad(f"is not {SCALAR_TYPES[kind]}; expected {_expected(definition, check)}")
        if not _in_bounds(definition, kind, value):
            return bad(f"is out of range; expected {_expected(definition, check)}")
        return float(value) if kind == "AT_FLOAT" else value
    if kind in LIST_TYPES:
        element = LIST_TYPES[kind]
        low = int(definition.atomic.get("list_min_length_inclusive", 0) or 0)
        high = int(definition.atomic.get("list_max_length_inclusive", -1) or -1)
        if not isinstance(value, list) or not all(_scalar_ok(element, v) for v in value):
            return bad(f"is not a list of the attribute's type; expected {_expected(definition, check)}")
        if not _count_ok(len(value), low, max(high, 0)) or \
                not all(_in_bounds(definition, element, v) for v in value):
            return bad(f"is out of range; expected {_expected(definition, check)}")
        return [float(v) for v in value] if element == "AT_FLOAT" else list(value)
    if kind == "AT_PARTY":
        names = _names(value)
        low = int(definition.atomic.get("list_min_length_inclusive", 0) or 0)
        high = int(definition.atomic.get("list_max_length_inclusive", -1) or -1)
        if names is None or any(n not in check.parties for n in names) \
                or not _count_ok(len(names), low, max(high, 0)):
            return bad(f"is not valid; expected {_expected(definition, check)}")
        return names
    if kind == COLUMNS:
        names = _names(value)
        if names is None or not _count_ok(len(names), definition.col_min, definition.col_max) \
                or len(set(names)) != len(names):
            return bad(f"is not valid; expected {_expected(definition, check)}")
        known = check.columns.get(definition.input_name or "")
        if known is not None:
            for name in names:
                if name not in known:
                    check.add(path, value, f"names column {name!r}, which is not in the schema "
                              f"of the table given as {definition.input_name} (columns: "
                              f"{', '.join(sorted(known))}); expected columns of that table",
                              "columns of that table")
                    return MISSING
        return names
    if kind == "AT_UNION_GROUP":
        choices = _choices(check.component, path)
        if value not in choices:
            return bad(f"is not a choice of {path}; expected one of {', '.join(choices)}")
        return value
    if kind == "AT_CUSTOM_PROTOBUF":
        if not isinstance(value, str):
            return bad("is not a string; expected a string (JSON of the attribute's message)")
        return value
    return bad("is not supported here")


# --- what `sfnode components` shows ----------------------------------------------------------


def describe(catalogue: Mapping[str, Mapping[str, Any]], key: str) -> dict[str, Any]:
    """A component as a job spec uses it: its id, what it does, its attributes (path, type,
    default, what is valid, whether required), inputs (types, column attributes) and outputs."""
    definition = catalogue[key]
    comp = _component(f"{key}:{definition.get('version', '')}", key, definition,
                      int(definition.get("version", "0.0.0").split(".")[1]))
    check = AttrCheck(comp, ["<party>"], {io.name: None for io in comp.inputs})
    attrs = []
    for path, attr in comp.attrs.items():
        if not attr.settable:
            continue
        entry: dict[str, Any] = {"path": path, "type": attr.type.removeprefix("AT_").lower(),
                                 "valid": _expected(attr, check), "required": attr.required}
        default = attr.atomic.get("default_value")
        if default is not None and attr.type in ATTRIBUTE_FIELD:
            raw = default.get(ATTRIBUTE_FIELD[attr.type], _zero(attr.type))
            entry["default"] = [_number(v, LIST_TYPES[attr.type]) for v in raw] \
                if attr.type in LIST_TYPES else _number(raw, attr.type)
        elif attr.union_default:
            entry["default"] = attr.union_default
        if "/" in path and not path.startswith("input/"):
            entry["applies"] = "when " + " and ".join(_conditions(comp, path))
        attrs.append(entry)
    return {"id": comp.id, "description": str(definition.get("desc", "")).strip(), "attrs": attrs,
            "inputs": [{"name": io.name, "types": list(io.types), "optional": io.optional} for io in comp.inputs],
            "outputs": [{"name": io.name, "types": list(io.types)} for io in comp.outputs]}


def _zero(kind: str) -> Any:
    """The value proto3 leaves out of JSON: the type's zero."""
    return {"AT_FLOAT": 0.0, "AT_INT": 0, "AT_BOOL": False, "AT_STRING": ""}.get(kind, [])


def _conditions(comp: Component, path: str) -> list[str]:
    parts = path.split("/")
    found = []
    for depth in range(1, len(parts)):
        parent = comp.attrs.get("/".join(parts[:depth]))
        if parent is not None and parent.type == "AT_UNION_GROUP":
            found.append(f"{parent.path} is {parts[depth]}")
    return found or ["its group is given"]
