"""The kinds registry: every public module of sfnode.kinds is a kind, and nothing else."""
from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import full_spec, one_problem
from sfnode import kinds
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.spec import validate_spec

ECHO = textwrap.dedent('''
    """Kind echo: a stand-in added beside the package's own kinds."""
    from __future__ import annotations

    from typing import Any

    from sfnode.kinds._kind import Kind, ParamCheck
    from sfnode.sfargs import JobContext


    def validate(params: dict[str, Any], check: ParamCheck) -> dict[str, Any]:
        check.known_params(params, ("text",))
        text = params.get("text", "")
        if not isinstance(text, str):
            check.add("params.text", text, "is not valid; expected a string", "a string")
        return {"text": text}


    def run(sf: Any, ctx: JobContext) -> dict[str, Any]:
        return {"text": ctx.spec.params["text"]}


    KIND = Kind(validate=validate, run=run)
''')


@pytest.fixture
def extra_kind_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A second directory of the sfnode.kinds package, as if a module had been added to it."""
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(tmp_path)])
    kinds.registry.cache_clear()
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("sfnode.kinds.") and
                 m.rpartition(".")[2] in {p.stem for p in tmp_path.glob("*.py")}]:
        del sys.modules[name]
    kinds.registry.cache_clear()


def test_the_registry_is_exactly_the_public_modules_of_the_package() -> None:
    package = Path(kinds.__file__).parent
    modules = sorted(p.stem for p in package.glob("*.py") if not p.stem.startswith("_"))
    assert list(kinds.names()) == modules
    assert set(modules) >= {"ping", "spu_sum", "psi"}
    assert kinds.uses_spu("spu_sum") and kinds.uses_spu("psi") and not kinds.uses_spu("ping")


def test_a_module_added_to_the_package_is_a_kind(extra_kind_dir: Path, config: NodeConfig,
                                                  federation: Federation) -> None:
    (extra_kind_dir / "echo.py").write_text(ECHO)
    (extra_kind_dir / "_helpers.py").write_text("VALUE = 1\n")  # private: not a kind
    assert "echo" in kinds.names() and "_helpers" not in kinds.names()
    spec = validate_spec(full_spec("echo", params={"text": "hi"}), config, federation)
    assert spec.params == {"text": "hi"}
    err = one_problem(full_spec("echo", params={"text": 5}), config, federation)
    assert str(err) == "job spec field params.text: 5 is not valid; expected a string"
    err = one_problem(full_spec("pong"), config, federation)
    assert str(err) == (f"job spec field kind: 'pong' is not a known job kind; expected one "
                        f"of {', '.join(sorted(kinds.names()))}")
    assert "echo" in err.expected


def test_a_public_module_without_a_kind_is_refused(extra_kind_dir: Path) -> None:
    (extra_kind_dir / "notes.py").write_text("TEXT = 'not a kind'\n")
    with pytest.raises(TypeError, match=r"sfnode.kinds.notes defines no KIND = Kind\(...\)"):
        kinds.registry()


def test_an_unknown_kind_lists_the_registered_ones(config: NodeConfig,
                                                   federation: Federation) -> None:
    err = one_problem(full_spec("pong"), config, federation)
    assert (err.field, err.value) == ("kind", "pong")
    assert err.expected == ", ".join(kinds.names())
