"""The component catalogue: what SecretFlow's component library offers, as JSON.

SecretFlow describes each of its components (``domain/name:version``) by a
``ComponentDef``: its attributes (type, bounds, allowed values, defaults),
its inputs (table types and column attributes) and its outputs. Importing the
library to read them costs seconds and hundreds of MiB, more than the job
channel may spend on each proposal, so the definitions are written once per
venv (``python -m sfnode.catalogue --write``, run at provisioning) to
``<venv>/share/sfnode/components.json`` and the pipeline kind validates job
specs against that file. Nothing else in this module imports SecretFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfnode.jobdir import write_json_atomic

CATALOGUE_NAME = "components.json"
# The components the platform's own tests run (docs/pipelines.md); every other one of the
# library is offered as SecretFlow ships it.
TESTED = (
    "data_prep/psi",
    "data_prep/train_test_split",
    "stats/table_statistics",
    "preprocessing/feature_calculate",
    "preprocessing/substitution",
    "ml.train/ss_sgd_train",
    "ml.predict/ss_sgd_predict",
    "ml.train/sgb_train",
    "ml.predict/sgb_predict",
    "ml.eval/biclassification_eval",
)


def default_path() -> Path:
    """Where this venv's catalogue is (the venv is the interpreter's prefix)."""
    return Path(sys.prefix) / "share" / "sfnode" / CATALOGUE_NAME


def build() -> dict[str, Any]:
    """The catalogue of the SecretFlow installed here (imports it: seconds)."""
    from google.protobuf.json_format import MessageToDict  # noqa: PLC0415
    from secretflow_spec import Registry  # noqa: PLC0415

    import secretflow.component.entry  # noqa: F401, PLC0415  (registers the components)
    from secretflow.version import __version__  # noqa: PLC0415

    components = {}
    for definition in sorted(Registry.get_definitions(), key=lambda d: (d.domain, d.name)):
        comp = MessageToDict(definition.component_def, preserving_proto_field_name=True)
        components[f"{definition.domain}/{definition.name}"] = comp
    return {"secretflow": __version__, "components": components}


def write(path: Path) -> bool:
    """Write the catalogue to ``path``; whether its content changed."""
    catalogue = build()
    try:
        if json.loads(path.read_text(encoding="utf-8")) == catalogue:
            return False
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, catalogue)
    os.chmod(path, 0o644)
    return True


@dataclass(frozen=True)
class Catalogue:
    """The components by ``domain/name``, each a ``ComponentDef`` as a JSON mapping."""

    secretflow: str
    components: Mapping[str, Mapping[str, Any]]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Catalogue:
        return cls(secretflow=str(data.get("secretflow", "")), components=dict(data["components"]))

    def ids(self) -> list[str]:
        return [f"{key}:{comp.get('version', '')}" for key, comp in self.components.items()]


class CatalogueMissing(RuntimeError):
    """No catalogue for this venv (and it could not be built)."""


def load(path: Path | None = None, *, build_missing: bool = True) -> Catalogue:
    """This venv's catalogue; built (in a child process, which imports SecretFlow) when it
    is missing and ``build_missing``, e.g. on a node provisioned before catalogues existed."""
    path = path or default_path()
    if not path.exists() and build_missing:
        subprocess.run([sys.executable, "-m", "sfnode.catalogue", "--write", str(path)],
                       check=False, capture_output=True, timeout=300)
    try:
        return Catalogue.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError) as exc:
        raise CatalogueMissing(f"no component catalogue at {path} ({exc}); write it with "
                               f"{sys.executable} -m sfnode.catalogue --write") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfnode.catalogue", description=__doc__)
    parser.add_argument("--write", type=Path, nargs="?", const=default_path(), metavar="PATH",
                        help=f"write the catalogue (default {default_path()}); prints "
                             "'changed' or 'unchanged'")
    args = parser.parse_args(argv)
    if args.write is None:
        json.dump(build(), sys.stdout, indent=1, sort_keys=True)
        print()
        return 0
    print("changed" if write(args.write) else "unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
