"""Pipelines: the same SecretFlow component calls through the platform and by hand.

Runs against the two-party demo federation of ``scripts/demo.sh up`` (podman
containers sff-demo-alice and sff-demo-bob, whose run uploads the breast-cancer
tables ``demo/bc.csv``) and measures two pipelines (docs/pipelines.md):

  lr   PSI, split, standardisation, SS-SGD train and predict, evaluation (7 steps)
  sgb  PSI, split, SecureBoost train and predict (HEU ou), evaluation (5 steps)

each a) through the platform (``sfnode submit SPEC`` started on both parties
at once: broker, Celery worker, validation, supervised runner), b) by hand:
a script started on both parties at once with the node venv's Python, as the
service user, that makes the same ``comp_eval`` calls in one SecretFlow
session with the worker app's own builders (``sfnode.compeval``), on another
port slot. The wall time of one run is from its start until both parties have
returned. Runs are sequential and alternate platform/by hand.

  .venv/bin/python scripts/benchmark_pipelines.py [--repeat R] [--json FILE]

It prints figures and asserts nothing about them: the exit code is 1 only if a
run fails or its AUC is below 0.95, 2 if the federation cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark as bench  # noqa: E402  (scripts/benchmark.py: the demo federation, podman, runs)

from sfnode.config import DRIVER_ENVIRONMENT  # noqa: E402
from sfnode.jobdir import WORKDIR_UMASK  # noqa: E402

BY_HAND = Path(__file__).resolve().parent / "pipeline_by_hand.py"
PLATFORM_SLOT, BY_HAND_SLOT = 2, 3
A = [f"f{i:02d}" for i in range(15)]
B = [f"f{i:02d}" for i in range(15, 30)]
TABLES = {"alice_bc": {"party": "alice", "path": "demo/bc.csv", "ids": {"id": "int"},
                       "features": {c: "float" for c in A}, "labels": {"y": "int"}},
          "bob_bc": {"party": "bob", "path": "demo/bc.csv", "ids": {"id": "int"},
                     "features": {c: "float" for c in B}}}
JOIN = {"id": "join", "component": "data_prep/psi:1.0.0", "inputs": {"input_ds1": "alice_bc", "input_ds2": "bob_bc"},
        "attrs": {"input/input_ds1/keys": ["id"], "input/input_ds2/keys": ["id"]}}
SPLIT = {"id": "split", "component": "data_prep/train_test_split:1.0.0", "inputs": {"input_ds": "join.output_ds"},
         "attrs": {"train_size": 0.7, "test_size": 0.3, "random_state": 42}}
PREDICT = {"receiver": ["alice"], "pred_name": "pred", "save_label": True}
EVAL = {"id": "eval", "component": "ml.eval/biclassification_eval:1.0.0", "inputs": {"input_ds": "predict.output_ds"},
        "attrs": {"input/input_ds/label": ["y"], "input/input_ds/prediction": ["pred"]}}
PIPELINES: dict[str, dict[str, Any]] = {
    "lr": {"steps": [
        JOIN, SPLIT,
        {"id": "scale", "component": "preprocessing/feature_calculate:1.0.0", "inputs": {"input_ds": "split.train_ds"},
         "attrs": {"rules": '{"op": "STANDARDIZE"}', "input/input_ds/features": A + B}},
        {"id": "scale_test", "component": "preprocessing/substitution:1.0.0",
         "inputs": {"input_ds": "split.test_ds", "input_rule": "scale.output_rule"}},
        {"id": "train", "component": "ml.train/ss_sgd_train:1.0.0", "inputs": {"input_ds": "scale.output_ds"},
         "attrs": {"epochs": 10, "batch_size": 64, "input/input_ds/label": ["y"],
                   "input/input_ds/feature_selects": A + B}},
        {"id": "predict", "component": "ml.predict/ss_sgd_predict:1.0.0",
         "inputs": {"input_model": "train.output_model", "input_ds": "scale_test.output_ds"}, "attrs": PREDICT},
        EVAL]},
    "sgb": {"steps": [
        JOIN, SPLIT,
        {"id": "train", "component": "ml.train/sgb_train:1.1.0", "inputs": {"input_ds": "split.train_ds"},
         "attrs": {"num_boost_round": 5, "max_depth": 4, "learning_rate": 0.3, "input/input_ds/label": ["y"],
                   "input/input_ds/feature_selects": A + B}},
        {"id": "predict", "component": "ml.predict/sgb_predict:1.0.0",
         "inputs": {"input_model": "train.output_model", "input_ds": "split.test_ds"}, "attrs": PREDICT},
        EVAL], "heu": {"schema": "ou", "key_size": 2048}},
}
TARGET = 1.10  # platform / by hand, upper bound
MIN_AUC = 0.95


def spec(name: str, job_id: str, slot: int) -> dict[str, Any]:
    return {"job_id": job_id, "kind": "pipeline", "parties": list(bench.PARTIES), "slot": slot,
            "deadline_seconds": 900, "params": {"tables": TABLES, **PIPELINES[name]}}


def auc_of(result: dict[str, Any]) -> float:
    step = next(s for s in result["steps"] if s["id"] == "eval")
    return float(step["outputs"]["report"]["report"]["SummaryReport"]["auc"])


def run_platform(fed: bench.Bench, name: str, rep: int) -> dict[str, Any]:
    job_id = f"bench-{name}-p{rep}-{int(time.time())}"
    path = bench.write_spec(fed, spec(name, job_id, PLATFORM_SLOT))
    wall, done = bench.run_both({p: bench.submit_command(p, path) for p in bench.PARTIES},
                                timeout=900 + bench.RUN_MARGIN_SECONDS)
    aucs = {}
    for party, finished in done.items():
        try:
            answer = json.loads(finished.stdout)["results"][party]
        except (ValueError, KeyError):
            raise bench.BenchError(f"{name} platform on {party}: {bench.tail(finished.stdout + finished.stderr)}")
        if not answer.get("ok"):
            raise bench.BenchError(f"{name} platform on {party}: {answer.get('error')}")
        aucs[party] = auc_of(answer["result"])
    return {"seconds": wall, "auc": aucs}


def by_hand_command(fed: bench.Bench, name: str, party: str, job_id: str) -> list[str]:
    ctx = fed.context(party, "pipeline", job_id, BY_HAND_SLOT)
    # a pipeline's work dir is JOB_DIR/<job> (its outputs are named relative to JOB_DIR)
    workdir = ctx.config.job_dir / job_id
    bundle = bench.trust_bundle(ctx, fed.federation)
    if bundle is not None:
        bundle["path"] = str(workdir / "peers.pem")
    config = {"spec": {**spec(name, job_id, BY_HAND_SLOT), "parties": [p.to_dict() for p in ctx.spec.parties]},
              "workdir": {"path": str(workdir), "umask": WORKDIR_UMASK}, "trust_bundle": bundle}
    return ["podman", "exec", "-u", bench.NODE_USER, "-w", bench.NODE_HOME, fed.container(party),
            "env", "-u", "RAY_ADDRESS", f"HOME={bench.NODE_HOME}",
            *(f"{key}={value}" for key, value in DRIVER_ENVIRONMENT.items()),
            bench.VENV_PYTHON, "-c", BY_HAND.read_text(), json.dumps(config)]


def run_by_hand(fed: bench.Bench, name: str, rep: int) -> dict[str, Any]:
    job_id = f"bench-{name}-h{rep}-{int(time.time())}"
    wall, done = bench.run_both({p: by_hand_command(fed, name, p, job_id) for p in bench.PARTIES},
                                timeout=900 + bench.RUN_MARGIN_SECONDS)
    aucs, phases = {}, {}
    for party, finished in done.items():
        line = next((x for x in finished.stdout.splitlines() if x.startswith(bench.RESULT_MARK)), None)
        answer = json.loads(line[len(bench.RESULT_MARK):]) if line else {}
        if not answer.get("ok"):
            raise bench.BenchError(f"{name} by hand on {party}: {answer.get('error') or bench.tail(finished.stderr)}")
        aucs[party] = auc_of(answer["result"])
        phases[party] = answer["phases"]
    return {"seconds": wall, "auc": aucs, "phases": phases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        fed = bench.load_bench()
    except bench.SetupError as exc:
        print(f"benchmark_pipelines: {exc}", file=sys.stderr)
        return 2
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for rep in range(args.repeat):
            for name in PIPELINES:
                for how, run in (("platform", run_platform), ("by hand", run_by_hand)):
                    outcome = run(fed, name, rep)
                    runs.setdefault(f"{name} {how}", []).append(outcome)
                    print(f"{name} {how} #{rep}: {outcome['seconds']:.1f} s, AUC "
                          f"{', '.join(f'{p} {a:.4f}' for p, a in outcome['auc'].items())}", flush=True)
                    if min(outcome["auc"].values()) < MIN_AUC:
                        raise bench.BenchError(f"{name} {how}: AUC below {MIN_AUC}")
    except bench.BenchError as exc:
        print(f"benchmark_pipelines: FAILED: {exc}", file=sys.stderr)
        return 1
    medians = {key: round(statistics.median(r["seconds"] for r in values), 2) for key, values in runs.items()}
    print(f"\nmedians of {args.repeat} runs (wall seconds, both parties):")
    for key, value in medians.items():
        print(f"  {key:16} {value:7.2f}")
    ratios = {name: round(medians[f"{name} platform"] / medians[f"{name} by hand"], 3) for name in PIPELINES}
    for name, ratio in ratios.items():
        print(f"  {name}: platform / by hand = {ratio:.3f} (target <= {TARGET}: "
              f"{'met' if ratio <= TARGET else 'missed'})")
    if args.json:
        args.json.write_text(json.dumps({"machine": bench.machine(), "medians": medians, "ratios": ratios,
                                         "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
