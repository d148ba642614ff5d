"""Input files of a job: paths relative to DATA_DIR, checked on the party that owns them."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from sfnode.config import NodeConfig
from sfnode.kinds._kind import ParamCheck

RELATIVE_PATH = "a relative path that stays inside DATA_DIR"


def data_path(config: NodeConfig, relative: str) -> Path:
    """An input path of a spec (already validated as relative) under DATA_DIR."""
    return config.data_dir / os.path.normpath(relative)


def check_relative_path(where: str, path: Any, check: ParamCheck) -> str | None:
    """``path`` normalised, if it is relative and stays inside DATA_DIR (else a problem)."""
    data_dir = check.config.data_dir
    if not isinstance(path, str) or not path or "\x00" in path:
        check.add(where, path, f"is not a path; expected {RELATIVE_PATH}", RELATIVE_PATH)
        return None
    if PurePosixPath(path).is_absolute():
        check.add(where, path, f"is an absolute path; expected {RELATIVE_PATH} ({data_dir})",
                  RELATIVE_PATH)
        return None
    normal = os.path.normpath(path)
    if normal in (".", "..") or normal.startswith("../"):
        check.add(where, path, f"leaves DATA_DIR after normalisation ({normal!r}); "
                  f"expected {RELATIVE_PATH} ({data_dir})", RELATIVE_PATH)
        return None
    return normal


def csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def check_own_file(where: str, given: str, normal: str, columns: Sequence[str] | None,
                   check: ParamCheck, columns_field: str) -> None:
    """This party's own input: inside DATA_DIR (after links), a file, a CSV whose header
    has every one of ``columns`` (problems name ``<where>.<columns_field>``)."""
    config = check.config
    full = config.data_dir / normal
    root = os.path.realpath(config.data_dir)
    real = os.path.realpath(full)
    if os.path.commonpath([root, real]) != root:
        check.add(f"{where}.path", given, f"resolves to {real}, outside DATA_DIR ({root}); "
                  "expected a file inside DATA_DIR", "a file inside DATA_DIR")
        return
    if not os.path.isfile(real):
        check.add(f"{where}.path", given, f"does not exist on party {config.node_id} "
                  f"({full}); expected an existing CSV file under DATA_DIR", "an existing file")
        return
    if not columns:
        return
    try:
        header = csv_header(Path(real))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        check.add(f"{where}.path", given, f"cannot be read as CSV ({exc}); expected a "
                  "CSV file with a header row", "a readable CSV file")
        return
    for column in columns:
        if column not in header:
            check.add(f"{where}.{columns_field}", list(columns), f"names column {column!r}, "
                      f"which is not in the header of {full} (columns: "
                      f"{', '.join(header) or 'none'}); expected existing column names",
                      "existing column names")
