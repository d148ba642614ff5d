"""Ask the local Ray head for its resources: ``python -m sfnode.probe --address IP:PORT``.

Run as a subprocess with a timeout by the health task, so the long-lived
Celery worker never connects to Ray itself. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfnode.probe", description=__doc__)
    parser.add_argument("--address", required=True, help="the Ray head's GCS address IP:PORT")
    args = parser.parse_args(argv)
    os.environ.pop("RAY_ADDRESS", None)  # it would override --address
    try:
        import ray

        ray.init(address=args.address, log_to_driver=False, logging_level="error")
        try:
            resources = ray.cluster_resources()
            nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        finally:
            ray.shutdown()
    except Exception as exc:  # noqa: BLE001  reported, not raised: this is a probe
        print(json.dumps({"ok": False, "address": args.address,
                          "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps({"ok": True, "address": args.address, "nodes": nodes,
                      "resources": {k: v for k, v in sorted(resources.items())}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
