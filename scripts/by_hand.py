"""SecretFlow by hand: the benchmark's bare job (scripts/benchmark.py).

Run by a node venv's Python (3.10) as the service user, on every party at
once, with one argument: a JSON object that scripts/benchmark.py builds with
the worker app's own builders (sfnode.sfargs: the sf.init, sf.SPU and link
arguments of a job), so platform and by-hand runs differ only in what the
platform adds around them. For a pipeline (scripts/benchmark_pipelines.py) it
holds the job spec, and the steps run through the runner's own code for them
(sfnode.compeval) with no broker, worker, supervisor or runner around it. Before sf.init it makes the job's work dir and, on
a node with TLS, writes the job's trust bundle there (the ca_cert of its TLS
links), as the platform's supervisor does. Prints one ``BENCH_RESULT {...}``
line.
"""
import json
import os
import sys
import threading
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
    os._exit(code)  # as the runner: skip a teardown Ray/rayfed threads can hang


def expire():
    finish({"ok": False, "error": f"self-deadline of {cfg['deadline']} s passed"}, 124)


timer = threading.Timer(cfg["deadline"], expire)
timer.daemon = True
timer.start()


def as_int32(value):
    import numpy as np
    return np.int32(value)


def add_all(*values):
    import functools
    import operator
    return functools.reduce(operator.add, values)


def prepare_workdir():
    """The job's work dir as the supervisor makes it: group-writable (the Ray head's
    actors, its own user, write the outputs there), the set-group-ID bit and that group
    inherited from the node's jobs/ dir. With TLS, the job's trust bundle in it, with the
    supervisor's mode: the Ray head's actors (rayfed's proxies, SPU) read it through the
    group."""
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


def pipeline():
    """SecretFlow's component entry on this party's side of a pipeline, without the
    platform: the spec is checked and normalised as a worker does, then the steps' own
    NodeEvalParams go to ``comp_eval`` in one SecretFlow session with this node's TLS
    (sfnode.compeval, the runner's code: stock ``comp_eval`` leaves its links without TLS
    and restarts them for every step, see docs/pipelines.md). Marks "import", each
    "step <id>" as it begins, "shutdown" and "done";
    prints its result once before the shutdown too ("final": false)."""
    from pathlib import Path

    import secretflow.component.entry  # noqa: F401  (the component library, registered)
    from sfnode import compeval
    from sfnode.config import NodeConfig
    from sfnode.federation import load_federation
    from sfnode.sfargs import JobContext
    from sfnode.spec import expand_spec, validate_spec
    mark("import")
    config = NodeConfig.from_env_file(cfg["env_file"])
    federation = load_federation(config.federation_file)
    spec = validate_spec(expand_spec(cfg["spec"], federation, config.job_deadline_seconds),
                         config, federation)
    ctx = JobContext(spec, config, Path(cfg["workdir"]["path"]), on_phase=mark)

    def before_shutdown(result):
        # as the runner records its result before the links shut down: a process that
        # brpc ends in the shutdown (it has, once) still has its answer out
        mark("shutdown")
        print("BENCH_RESULT " + json.dumps({"ok": True, "result": result, "phases": phases,
                                            "final": False}), flush=True)

    result = compeval.run_pipeline(ctx, before_shutdown=before_shutdown)
    mark("done")
    return result


def main():
    prepare_workdir()
    if cfg["kind"] == "pipeline":
        return pipeline()
    import secretflow as sf
    mark("import")
    sf.init(**cfg["init"])
    mark("init")
    spu = sf.SPU(cfg["spu"], link_desc=cfg["link_desc"])
    if cfg["kind"] == "spu_sum":
        shares = [sf.PYU(p)(as_int32)(cfg["value"] if p == cfg["self"] else 0).to(spu)
                  for p in cfg["ids"]]
        result = {"sum": int(sf.reveal(spu(add_all)(*shares)))}
    else:
        # PSI writes a scratch file beside its input, and inputs are read-only to the
        # Ray head: as the platform does, PSI reads this party's input through a link
        # in the work dir
        psi = dict(cfg["psi"])
        link = os.path.join(cfg["workdir"]["path"], "input-" + cfg["self"] + ".csv")
        if not os.path.islink(link):
            os.symlink(psi["input_path"][cfg["self"]], link)
        psi["input_path"] = {**psi["input_path"], cfg["self"]: link}
        reports = spu.psi(**psi)  # its output goes to the work dir
        result = {"parties": {r["party"]: {"original_count": int(r["original_count"]),
                                           "intersection_count": int(r["intersection_count"])}
                              for r in reports}}
    mark("run")
    sf.shutdown()
    mark("shutdown")
    return result


try:
    finish({"ok": True, "result": main()}, 0)
except BaseException as exc:
    traceback.print_exc()
    finish({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 1)
