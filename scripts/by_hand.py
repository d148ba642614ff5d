"""SecretFlow by hand: the benchmark's bare job (scripts/benchmark.py).

Run by a node venv's Python (3.10) as the service user, on every party at
once, with one argument: a JSON object that scripts/benchmark.py builds with
the worker app's own builders (sfnode.sfargs: the sf.init, sf.SPU and link
arguments of a job), so platform and by-hand runs differ only in what the
platform adds around them. Prints one ``BENCH_RESULT {...}`` line.
"""
import json, os, sys, threading, time, traceback

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
    finish({"ok": False, "error": "self-deadline of %s s passed" % cfg["deadline"]}, 124)


timer = threading.Timer(cfg["deadline"], expire)
timer.daemon = True
timer.start()


def as_int32(value):
    import numpy as np
    return np.int32(value)


def add_all(*values):
    import functools, operator
    return functools.reduce(operator.add, values)


def main():
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
        out_dir = os.path.dirname(cfg["psi"]["output_path"][cfg["self"]])
        # group-writable (the Ray head's actors, its own user, write here); the
        # set-group-ID bit comes from the parent, as with the platform's work dirs
        previous = os.umask(0o007)
        os.makedirs(out_dir, exist_ok=True)
        os.umask(previous)
        reports = spu.psi(**cfg["psi"])
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
    finish({"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}, 1)
