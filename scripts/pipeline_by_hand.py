"""A pipeline by hand: the pipeline benchmark's bare run (scripts/benchmark_pipelines.py).

Run by a node venv's Python as the service user, on every party at once, with
one argument: a JSON object with the job's full spec, its work dir and (on a
node with TLS) its trust bundle. It checks the spec as a worker would (that
normalises the params), makes the work dir and trust bundle as the supervisor
does, and makes the same ``comp_eval`` calls in one SecretFlow session with
the worker app's own builders (``sfnode.compeval``); no broker, worker or
runner around it. Prints one ``BENCH_RESULT {...}`` line.
"""
import json
import os
import sys
import time
import traceback

cfg = json.loads(sys.argv[1])
t0 = time.monotonic()
phases = {}


def mark(name):
    phases[name] = round(time.monotonic() - t0, 3)


def finish(out, code):
    out["phases"] = phases
    print("BENCH_RESULT " + json.dumps(out), flush=True)
    sys.stderr.flush()
    os._exit(code)  # SecretFlow's threads can hang the interpreter's teardown


def main():
    from pathlib import Path

    from sfnode.config import load_config
    from sfnode.federation import load_federation
    from sfnode.sfargs import JobContext
    from sfnode.spec import validate_spec

    config = load_config("/etc/secretflow/node.env")
    spec = validate_spec(cfg["spec"], config, load_federation(config.federation_file))
    previous = os.umask(cfg["workdir"]["umask"])
    try:
        os.makedirs(cfg["workdir"]["path"], exist_ok=True)
    finally:
        os.umask(previous)
    bundle = cfg["trust_bundle"]
    if bundle is not None:
        with open(bundle["path"], "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), bundle["mode"])
            handle.write(bundle["text"])
    mark("prepare")
    import secretflow.component.entry  # noqa: F401
    mark("import")
    from sfnode.compeval import run_pipeline

    result = run_pipeline(JobContext(spec=spec, config=config, workdir=Path(cfg["workdir"]["path"])))
    mark("run")
    return result


try:
    finish({"ok": True, "result": main()}, 0)
except BaseException as exc:  # noqa: BLE001
    traceback.print_exc()
    finish({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 1)
