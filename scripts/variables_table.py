"""Print the README's variable table from the roles' argument specs.

Usage: python scripts/variables_table.py [--check README.md]
With --check, exit 1 when the README's table differs from the specs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- variables:begin -->", "<!-- variables:end -->"


def _cell(value: object) -> str:
    if isinstance(value, (dict, list)):
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    else:
        text = str(value)
    return "`" + text.replace("|", "\\|") + "`" if text else '`""`'


def table() -> str:
    rows = [BEGIN, "| variable | default | what |", "|---|---|---|"]
    for spec_file in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        main = yaml.safe_load(spec_file.read_text())["argument_specs"].get("main")
        if not main:
            continue
        role = spec_file.parent.parent.name
        for name, entry in main["options"].items():
            if not name.startswith(role + "_"):
                continue  # another role's variable, read by this one: that role's row says it
            default = "(required)" if entry.get("required") else _cell(entry.get("default", ""))
            description = " ".join(str(entry.get("description", "")).split()).replace("|", "\\|")
            rows.append(f"| `{name}` | {default} | {description} |")
    rows.append(END)
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        text = Path(argv[1]).read_text()
        # exactly one table: a second marker would hide a stale copy after the first
        current = text[text.index(BEGIN): text.index(END) + len(END)] if BEGIN in text else ""
        if text.count(BEGIN) != 1 or text.count(END) != 1 or current != table():
            print(f"{argv[1]}: the variable table (one begin and one end marker) differs from the argument specs; "
                  "regenerate it with python scripts/variables_table.py", file=sys.stderr)
            return 1
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
