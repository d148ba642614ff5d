"""What a node says about itself: its venv's versions and its Ray head's resources.

The health task and ``sfnode status`` ask the same things. The Ray head is
asked from a subprocess (``python -m sfnode.probe``) with a timeout, so the
asking process never joins Ray itself.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from sfnode.config import NodeConfig, child_environment

PROBE_MODULE = "sfnode.probe"
PROBE_TIMEOUT_SECONDS = 60
VERSIONED_DISTRIBUTIONS = ("secretflow", "ray", "click", "celery")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def probe_ray(config: NodeConfig, timeout: float | None = None) -> dict[str, Any]:
    """The Ray head's resources, asked from a subprocess (this process never joins Ray)."""
    timeout = PROBE_TIMEOUT_SECONDS if timeout is None else timeout
    address = config.ray_address
    try:
        proc = subprocess.run(
            [sys.executable, "-m", PROBE_MODULE, "--address", address],
            capture_output=True, text=True, timeout=timeout, env=child_environment(config),
            check=False, start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return {"address": address, "resources": None,
                "error": f"no answer from the Ray head at {address} within {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                answer = json.loads(line)
            except ValueError:
                break
            if answer.get("ok"):
                return {"address": address, "resources": answer.get("resources"),
                        "nodes": answer.get("nodes")}
            return {"address": address, "resources": None, "error": answer.get("error")}
    tail = "\n".join(proc.stderr.splitlines()[-5:])
    return {"address": address, "resources": None,
            "error": f"probe exited with code {proc.returncode}: {tail}"}
