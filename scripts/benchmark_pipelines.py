"""Pipelines: the platform against SecretFlow's component entry run by hand.

Runs against the two-party demo federation of ``scripts/demo.sh up`` (podman
containers sff-demo-alice and sff-demo-bob) and measures the example
pipelines of ``examples/pipelines/`` on the breast-cancer data of
``examples/breast_cancer.py``:

  lr   psi -> split -> statistics -> standardise -> SS-SGD -> predict -> evaluate
  sgb  psi -> split -> SecureBoost (HEU ou 2048) -> predict -> evaluate

each a) through the platform (``sfnode submit SPEC`` started on both parties
at once: broker, Celery worker, supervised runner on a settled node) and b) by
hand: ``scripts/by_hand.py`` started on both parties at once as the service
user, which checks the same spec as a worker does and hands the steps to
``comp_eval`` through the runner's own code (``sfnode.compeval``: one
SecretFlow session, this node's TLS on every link), without broker, worker,
supervisor or runner. Runs alternate platform/by hand within each repetition,
the platform on port slot 0, by hand on the last slot. The wall time of one
run is from its start until both parties have returned.

  .venv/bin/python scripts/benchmark_pipelines.py [--repeat R] [--only lr|sgb] [--json FILE]

It prints figures and asserts nothing about them: the exit code is 1 only if
a job fails or its AUC is below 0.95 on a party, 2 if the federation cannot
be reached. See docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmark import (
    NODE_ENV,
    PARTIES,
    PLATFORM_SLOT,
    RESULT_MARK,
    RUN_MARGIN_SECONDS,
    VENV_PYTHON,
    Bench,
    Finished,
    Run,
    against_the_demo,
    by_hand_command,
    exec_root,
    failure,
    machine,
    medians,
    overhead,
    own_inputs,
    part_medians,
    platform_overhead,
    positive,
    run_both,
    settle,
    submit_command,
    trust_bundle,
    write_spec,
)
from sfnode.jobdir import WORKDIR_UMASK

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PIPELINES = ("lr", "sgb")
MIN_AUC = 0.95
RATIO_TARGET = 1.10  # platform / by hand, upper bound (issue 12)
DATA_SUBDIR = "bc"  # under DATA_DIR, as the example specs read it
MAKER_DIR = "/tmp/sff-bench-bc"  # inside alice's container: the data's maker and output


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / "pipelines" / f"{name}.json").read_text(encoding="utf-8"))


def upload_data(fed: Bench) -> dict[str, Any]:
    """Make the example data on alice with the venv's Python and put each party's table
    into its own DATA_DIR/bc/; the joined table's truth (rows) as it reports it."""
    maker = (EXAMPLES / "breast_cancer.py").read_text(encoding="utf-8")
    alice = Bench.container("alice")
    exec_root(alice, ["sh", "-c", f"rm -rf {MAKER_DIR} && mkdir {MAKER_DIR}"])
    exec_root(alice, [VENV_PYTHON, "-", MAKER_DIR], input_text=maker)
    for party in PARTIES:
        table = exec_root(alice, ["cat", f"{MAKER_DIR}/{party}.csv"])
        target = f"{fed.configs[party].data_dir}/{DATA_SUBDIR}"
        exec_root(Bench.container(party), ["sh", "-c", (
            f"mkdir -p {target} && cat > {target}/{party}.csv")], input_text=table)
        own_inputs(Bench.container(party), target)
    truth = json.loads(exec_root(alice, ["cat", f"{MAKER_DIR}/truth.json"]))
    exec_root(alice, ["rm", "-rf", MAKER_DIR])
    return truth


def spec_for(name: str, job_id: str, slot: int) -> dict[str, Any]:
    return {**example(name), "job_id": job_id, "slot": slot}


def auc_of(result: dict[str, Any]) -> float | None:
    for step in result.get("steps", []):
        if step.get("id") == "eval":
            return step["outputs"]["report"]["report"]["SummaryReport"]["auc"]
    return None


def check_auc(what: str, done: Finished, result: dict[str, Any]) -> float:
    auc = auc_of(result)
    if auc is None or auc < MIN_AUC:
        raise failure(what, done, f"AUC {auc!r}, expected >= {MIN_AUC}")
    return auc


def step_seconds(result: dict[str, Any]) -> dict[str, float]:
    return {s["id"]: s["seconds"] for s in result.get("steps", [])}


# yacl's words when a brpc link sends a request again (after its timeout or an error)
RESEND_MARK = "send request failed and retry"


def resends(log: str) -> int:
    return log.count(RESEND_MARK)


def platform_resends(fed: Bench, party: str, job_id: str) -> int:
    """The link's resends in the job's logs on ``party`` (the runner's, and SPU's)."""
    workdir = f"{fed.configs[party].job_dir}/{job_id}"
    return resends(exec_root(Bench.container(party), [
        "sh", "-c", f"cat {workdir}/runner.log {workdir}/spu.log 2>/dev/null || true"]))


def run_platform(fed: Bench, name: str, job_id: str, rep: int) -> Run:
    spec_path = write_spec(fed, spec_for(name, job_id, PLATFORM_SLOT))
    wall, done = run_both({p: submit_command(p, spec_path) for p in PARTIES},
                          fed.deadline + RUN_MARGIN_SECONDS)
    what = f"{name} platform run {rep} (job {job_id})"
    parties = {}
    for party in PARTIES:
        try:
            answer = json.loads(done[party].stdout)["results"][party]
        except (ValueError, KeyError, TypeError):
            raise failure(what, done[party], "no JSON answer from sfnode submit") from None
        if done[party].returncode != 0 or not answer.get("ok"):
            raise failure(what, done[party], f"the job failed: {answer.get('error') or answer}")
        result = answer.get("result") or {}
        marks = answer.get("phases") or {}
        parties[party] = {
            "seconds": done[party].seconds, "job_seconds": answer.get("seconds"),
            "auc": check_auc(what, done[party], result), "step_seconds": step_seconds(result),
            # the runner's first mark ("run") is its start: SecretFlow's base already imported
            "phase_seconds": phases_of(marks, marks.get("run", 0.0)),
            "overhead_seconds": platform_overhead(done[party], marks),
            "link_resends": platform_resends(fed, party, job_id)}
    return Run(f"{name} platform", rep, job_id, wall, parties)


def phases_of(marks: dict[str, float], start: float) -> dict[str, float]:
    """Seconds per part of a run from its marks (when each phase began; "step <id>" as each
    step began, "shutdown" after the last, "done"): before the first step from ``start``
    (imports, the spec, the session's links), the steps, the shutdown."""
    steps = [v for k, v in marks.items() if k.startswith("step ")]
    out: dict[str, float] = {}
    if steps:
        out["before_steps"] = round(min(steps) - start, 3)
        if "shutdown" in marks:
            out["steps"] = round(marks["shutdown"] - min(steps), 3)
    if "shutdown" in marks and "done" in marks:
        out["shutdown"] = round(marks["done"] - marks["shutdown"], 3)
    return out


def by_hand_config(fed: Bench, party: str, spec: dict[str, Any]) -> dict[str, Any]:
    """by_hand.py's argument for a pipeline: the spec, the node's env file, and the job's
    work dir (JOB_DIR/<job>, where the steps' outputs go) with its trust bundle."""
    ctx = fed.context(party, "pipeline", spec["job_id"], spec["slot"])
    ctx = replace(ctx, workdir=fed.configs[party].job_dir / spec["job_id"])
    return {"kind": "pipeline", "self": party, "deadline": fed.deadline, "env_file": NODE_ENV,
            "spec": spec, "workdir": {"path": str(ctx.workdir), "umask": WORKDIR_UMASK},
            "trust_bundle": trust_bundle(ctx, fed.federation)}


def run_by_hand(fed: Bench, name: str, job_id: str, rep: int) -> Run:
    spec = spec_for(name, job_id, fed.bare_slot)
    commands = {p: by_hand_command(p, by_hand_config(fed, p, spec)) for p in PARTIES}
    wall, done = run_both(commands, fed.deadline + RUN_MARGIN_SECONDS)
    what = f"{name} by-hand run {rep} (job {job_id})"
    parties = {}
    for party in PARTIES:
        lines = [ln for ln in done[party].stdout.splitlines() if ln.startswith(RESULT_MARK)]
        if not lines:
            raise failure(what, done[party], "by_hand.py printed no result")
        out = json.loads(lines[-1][len(RESULT_MARK):])
        # a result given before the shutdown stands if the process then died in it, as the
        # platform's does (its runner writes the result first)
        died_in_shutdown = out.get("final") is False and done[party].returncode != 0
        if not out.get("ok") or (done[party].returncode != 0 and not died_in_shutdown):
            raise failure(what, done[party], f"the by-hand job failed: {out.get('error')}")
        phases = phases_of(out.get("phases") or {}, 0.0)  # from the process's start
        parties[party] = {"seconds": done[party].seconds,
                          "auc": check_auc(what, done[party], out["result"]),
                          "step_seconds": step_seconds(out["result"]), "phase_seconds": phases,
                          "died_in_shutdown": died_in_shutdown,
                          "link_resends": resends(done[party].stdout + done[party].stderr)}
    return Run(f"{name} by hand", rep, job_id, wall, parties)


def clean_up(fed: Bench, job_ids: list[str]) -> None:
    """Remove the runs' work dirs (their models and predictions) and the spec files."""
    for party in PARTIES:
        job_dir = fed.configs[party].job_dir
        exec_root(Bench.container(party), ["rm", "-rf", "/tmp/sff-bench",
                                           *(f"{job_dir}/{job}" for job in job_ids)])


def log_run(run: Run) -> None:
    aucs = ", ".join(f"{p} AUC {v['auc']:.4f}, {v['link_resends']} resends"
                     + (", died in its shutdown" if v.get("died_in_shutdown") else "")
                     for p, v in run.parties.items())
    print(f"  {run.measurement:<16} rep {run.rep}: {run.seconds:7.2f} s  ({aucs})", flush=True)


def measurements(runs: list[Run]) -> list[str]:
    return list(dict.fromkeys(r.measurement for r in runs))


def ratios(med: dict[str, float]) -> dict[str, float]:
    return {name: round(med[f"{name} platform"] / med[f"{name} by hand"], 3)
            for name in PIPELINES if f"{name} platform" in med and f"{name} by hand" in med}


def print_report(runs: list[Run], info: dict[str, Any], exec_s: float | None) -> None:
    med = medians(runs, measurements(runs))
    print()
    print(f"{'measurement':<16} {'median s':>9}   runs (s)")
    for name, value in med.items():
        each = " ".join(f"{r.seconds:.2f}" for r in runs if r.measurement == name)
        print(f"{name:<16} {value:>9.2f}   {each}")
    print()
    print("median seconds per phase (over runs and parties)")
    for name, parts in part_medians(runs, ("phase_seconds",), measurements(runs)).items():
        print(f"  {name:<16} " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    for name, parts in part_medians(runs, ("overhead_seconds",), measurements(runs)).items():
        own = overhead(parts, exec_s)
        print(f"  {name:<16} " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
              + (f"; less one podman exec ({exec_s:.2f}): {own:.2f}" if own is not None else ""))
    print("median seconds per step (over runs and parties)")
    for name, parts in part_medians(runs, ("step_seconds",), measurements(runs)).items():
        print(f"  {name:<16} " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    print()
    print(f"{'ratio platform/by hand':<24} {'value':>6}  target")
    for name, value in ratios(med).items():
        verdict = "meets" if value <= RATIO_TARGET else "MISSES"
        print(f"{name:<24} {value:>6.3f}  <= {RATIO_TARGET}  {verdict}")
    print()
    print(f"machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, "
          f"kernel {info['kernel']} {info['arch']}, {info['podman']}")


def run_all(fed: Bench, args: argparse.Namespace, runs: list[Run], job_ids: list[str]) -> None:
    stamp = time.strftime("%m%d%H%M") + "-" + secrets.token_hex(2)
    truth = upload_data(fed)
    print(f"example data: {truth['rows']} rows in the joined table; runs (platform slot "
          f"{PLATFORM_SLOT}, by hand slot {fed.bare_slot}, TLS {'on' if fed.tls else 'off'}):",
          flush=True)
    for rep in range(1, args.repeat + 1):
        for name in args.only or PIPELINES:
            job = f"bench-{stamp}-{name}-plat{rep}"
            job_ids.append(job)
            print(f"  settled: {settle(fed)}", flush=True)
            runs.append(run_platform(fed, name, job, rep))
            log_run(runs[-1])
            job = f"bench-{stamp}-{name}-hand{rep}"
            job_ids.append(job)
            # the platform's nodes refill their warm pools after a job: by hand waits for that
            print(f"  settled: {settle(fed)}", flush=True)
            runs.append(run_by_hand(fed, name, job, rep))
            log_run(runs[-1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="The example pipelines through the platform (sfnode submit) against "
                    "comp_eval by hand on the demo federation: median wall seconds, phases, "
                    "steps and the ratio.")
    parser.add_argument("--repeat", type=positive, default=3,
                        help="runs of each measurement (default 3)")
    parser.add_argument("--only", action="append", choices=PIPELINES,
                        help="only this pipeline (repeatable; default: both)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the figures and every run to FILE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    info = machine()
    runs: list[Run] = []
    job_ids: list[str] = []

    def tidy(fed: Bench, error: str | None) -> None:
        if error is None:
            clean_up(fed, job_ids)
        else:
            print(f"work dirs kept for a look: {', '.join(job_ids)} in each party's JOB_DIR",
                  file=sys.stderr)

    outcome = against_the_demo(lambda fed: run_all(fed, args, runs, job_ids), tidy)
    exec_s, error, code = outcome.exec_s, outcome.error, outcome.code
    print_report(runs, info, exec_s)
    if args.json:
        names = measurements(runs)
        med = medians(runs, names)
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ok": error is None, "error": error,
            "repeat": args.repeat, "machine": info, "podman_exec_seconds": exec_s,
            "medians_seconds": med, "ratios": ratios(med), "ratio_target": RATIO_TARGET,
            "phase_medians_seconds": part_medians(runs, ("phase_seconds",), names),
            "overhead_medians_seconds": part_medians(runs, ("overhead_seconds",), names),
            "step_medians_seconds": part_medians(runs, ("step_seconds",), names),
            "runs": [{"measurement": r.measurement, "rep": r.rep, "job_id": r.job_id,
                      "seconds": r.seconds, "parties": r.parties} for r in runs],
        }, indent=2) + "\n", encoding="utf-8")
    if error:
        print(f"\nbenchmark FAILED: {error}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
