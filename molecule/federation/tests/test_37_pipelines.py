"""Pipelines of SecretFlow components between alice and bob (issue 12).

The data: scikit-learn's breast-cancer set (it ships in the nodes' venv), an id
column added, 15 features at alice with the label, the other 15 at bob, rows
shuffled differently on each side and a few rows on one side only. It is made
on alice by the venv's own Python, with the joined table's statistics as
pandas computes them, and uploaded to each party with playbooks/upload.yml.
Jobs go through playbooks/job.yml (the single administrator's path), so the
workers validate and run them as any job.
"""
from __future__ import annotations

import json
import math

import pytest

from conftest import PARTIES, unique_job_id
from shared import JOBS_DIR, NODE, VENV
from test_25_tls import clear_text_drops

DATA_DIR = f"{NODE['node_data_dir']}/data"
SLOTS = {"lr": 7, "sgb": 8, "later": 9, "bad": 10}
MAKE_DATA = r'''
import json, sys
import numpy as np, pandas as pd
from sklearn.datasets import load_breast_cancer
out = sys.argv[1]
data = load_breast_cancer()
frame = pd.DataFrame(data.data, columns=[f"f{i:02d}" for i in range(30)])
frame.insert(0, "id", np.arange(100000, 100000 + len(frame)))
frame["y"] = data.target
alice = frame[["id"] + [f"f{i:02d}" for i in range(15)] + ["y"]].rename(columns=lambda c: c.replace("f", "a", 1) if c.startswith("f") else c)
bob = frame[["id"] + [f"f{i:02d}" for i in range(15, 30)]].rename(columns=lambda c: c.replace("f", "b", 1) if c.startswith("f") else c)
alice = alice[alice.id % 50 != 0].sample(frac=1.0, random_state=1)   # 12 rows only at bob
bob = bob[bob.id % 61 != 7].sample(frac=1.0, random_state=2)         # 9 rows only at alice
alice.to_csv(f"{out}/alice.csv", index=False)
bob.to_csv(f"{out}/bob.csv", index=False)
joined = alice.merge(bob, on="id")
truth = {c: {"count": int(joined[c].count()), "mean": float(joined[c].mean()), "min": float(joined[c].min()),
             "max": float(joined[c].max())} for c in joined.columns if c != "id"}
json.dump({"rows": len(joined), "stats": truth, "alice": list(alice.columns), "bob": list(bob.columns)},
          open(f"{out}/truth.json", "w"))
'''


@pytest.fixture(scope="module")
def bc(three_parties, party_hosts, tmp_path_factory) -> dict:
    """The breast-cancer tables on alice and bob (bc/alice.csv, bc/bob.csv) and the truth."""
    alice = party_hosts["alice"]
    work = tmp_path_factory.mktemp("bc")
    alice.run_expect([0], "rm -rf /tmp/bc && mkdir /tmp/bc")
    (work / "make.py").write_text(MAKE_DATA)
    alice.run_expect([0], f"cat > /tmp/bc/make.py <<'EOF'\n{MAKE_DATA}\nEOF")
    made = alice.run(f"{VENV}/bin/python /tmp/bc/make.py /tmp/bc")
    assert made.rc == 0, made.stderr
    for pid in ("alice", "bob"):
        (work / f"{pid}.csv").write_text(alice.check_output(f"cat /tmp/bc/{pid}.csv") + "\n")
        three_parties.upload(PARTIES[pid], work / f"{pid}.csv", f"bc/{pid}.csv")
    return json.loads(alice.check_output("cat /tmp/bc/truth.json"))


def tables(truth: dict) -> dict:
    def schema(columns: list[str], labels: tuple[str, ...] = ()) -> dict:
        return {"ids": {"id": "int"}, "features": {c: "float" for c in columns if c not in ("id", *labels)},
                "labels": {c: "int" for c in labels}}
    return {"alice_bc": {"party": "alice", "path": "bc/alice.csv", **schema(truth["alice"], ("y",))},
            "bob_bc": {"party": "bob", "path": "bc/bob.csv", **schema(truth["bob"])}}


def features(truth: dict) -> list[str]:
    return [c for c in truth["alice"] + truth["bob"] if c not in ("id", "y")]


JOIN = {"id": "join", "component": "data_prep/psi:1.0.0", "inputs": {"input_ds1": "alice_bc", "input_ds2": "bob_bc"},
        "attrs": {"input/input_ds1/keys": ["id"], "input/input_ds2/keys": ["id"], "protocol": "PROTOCOL_RR22"}}
SPLIT = {"id": "split", "component": "data_prep/train_test_split:1.0.0", "inputs": {"input_ds": "join.output_ds"},
         "attrs": {"train_size": 0.7, "test_size": 0.3, "random_state": 42}}
EVAL = {"id": "eval", "component": "ml.eval/biclassification_eval:1.0.0", "inputs": {"input_ds": "predict.output_ds"},
        "attrs": {"input/input_ds/label": ["y"], "input/input_ds/prediction": ["pred"]}}
PREDICT_ATTRS = {"receiver": ["alice"], "pred_name": "pred", "save_label": True, "save_ids": True}


def lr_steps(truth: dict) -> list[dict]:
    feats = features(truth)
    return [JOIN, SPLIT,
            {"id": "stats", "component": "stats/table_statistics:1.0.0", "inputs": {"input_ds": "join.output_ds"},
             "attrs": {"input/input_ds/features": [*feats, "y"]}},
            # SS-SGD needs standardised features (about 0.85 AUC without) and a batch no larger
            # than the training rows (with more, it makes no update and reports success)
            {"id": "scale", "component": "preprocessing/feature_calculate:1.0.0",
             "inputs": {"input_ds": "split.train_ds"},
             "attrs": {"rules": '{"op": "STANDARDIZE"}', "input/input_ds/features": feats}},
            {"id": "scale_test", "component": "preprocessing/substitution:1.0.0",
             "inputs": {"input_ds": "split.test_ds", "input_rule": "scale.output_rule"}, "attrs": {}},
            {"id": "train", "component": "ml.train/ss_sgd_train:1.0.0", "inputs": {"input_ds": "scale.output_ds"},
             "attrs": {"epochs": 10, "learning_rate": 0.1, "batch_size": 64, "input/input_ds/label": ["y"],
                       "input/input_ds/feature_selects": feats}},
            {"id": "predict", "component": "ml.predict/ss_sgd_predict:1.0.0",
             "inputs": {"input_model": "train.output_model", "input_ds": "scale_test.output_ds"},
             "attrs": PREDICT_ATTRS},
            EVAL]


def pipeline(kind: str, truth: dict, steps: list[dict], **params) -> dict:
    return {"job_id": unique_job_id(f"pl-{kind}"), "kind": "pipeline", "parties": ["alice", "bob"],
            "slot": SLOTS[kind], "deadline_seconds": 900,
            "params": {"tables": tables(truth), "steps": steps, **params}}


def step(result: dict, step_id: str) -> dict:
    return next(s for s in result["result"]["steps"] if s["id"] == step_id)


def auc(result: dict) -> float:
    return step(result, "eval")["outputs"]["report"]["report"]["SummaryReport"]["auc"]


def scores(host, path: str) -> dict[int, float]:
    """A prediction output (ORC) by id, read with the node's venv."""
    code = (f"import pyarrow.orc as o, json; t = o.read_table('{path}').to_pydict(); "
            "print(json.dumps(dict(zip(t['id'], t['pred']))))")
    return {int(k): v for k, v in json.loads(host.check_output(f"{VENV}/bin/python -c \"{code}\"")).items()}


@pytest.fixture(scope="module")
def lr_job(three_parties, party_hosts, bc) -> dict:
    alice = party_hosts["alice"]
    dropped = clear_text_drops(alice)
    spec = pipeline("lr", bc, lr_steps(bc))
    run = three_parties.run(spec, timeout=1200)
    assert run.rc == 0, run
    # on the wire: the firewall drops a connection to a job port that does not begin with a
    # TLS record; the job ran, and nothing was dropped (the component links speak TLS)
    assert clear_text_drops(alice) == dropped
    return {"spec": spec, "results": run.results}


def test_vertical_lr_psi_split_train_predict_eval(lr_job, party_hosts):
    results = lr_job["results"]
    assert set(results) == {"alice", "bob"} and all(r["ok"] for r in results.values()), results
    for pid, result in results.items():
        assert auc(result) >= 0.95, (pid, step(result, "eval"))
        # each party's outputs stay with it: the prediction (receiver alice) is alice's only
        predicted = step(result, "predict")["outputs"]["output_ds"]
        assert ("paths" in predicted) == (pid == "alice"), (pid, predicted)
        for path in predicted.get("paths", []):
            assert path.startswith(f"{JOBS_DIR}/{lr_job['spec']['job_id']}/"), path
            assert party_hosts[pid].file(path).exists
    # the job's progress named each step as it ran
    status = json.loads(party_hosts["bob"].check_output(f"cat {JOBS_DIR}/{lr_job['spec']['job_id']}/status.json"))
    assert [p for p in status["phases"] if p.startswith("step ")] == [f"step {s['id']}" for s in lr_steps({
        "alice": [], "bob": []})], status["phases"]


def test_table_statistics_agree_with_pandas(lr_job, bc):
    for pid, result in lr_job["results"].items():
        report = step(result, "stats")["outputs"]["report"]["report"]
        table = next(iter(report.values()))
        assert set(table) == set(bc["stats"]), (pid, sorted(table))
        for column, truth in bc["stats"].items():
            got = table[column]
            assert int(got["count(non-NA count)"]) == truth["count"] == bc["rows"], (column, got)
            for name in ("mean", "min", "max"):
                assert math.isclose(float(got[name]), truth[name], rel_tol=1e-6, abs_tol=1e-12), (column, name, got)


def test_secureboost_psi_split_train_predict_eval(three_parties, bc):
    feats = features(bc)
    spec = pipeline("sgb", bc, [JOIN, SPLIT,
                                {"id": "train", "component": "ml.train/sgb_train:1.1.0",
                                 "inputs": {"input_ds": "split.train_ds"},
                                 "attrs": {"num_boost_round": 5, "max_depth": 4, "learning_rate": 0.3,
                                           "input/input_ds/label": ["y"], "input/input_ds/feature_selects": feats}},
                                {"id": "predict", "component": "ml.predict/sgb_predict:1.0.0",
                                 "inputs": {"input_model": "train.output_model", "input_ds": "split.test_ds"},
                                 "attrs": PREDICT_ATTRS},
                                EVAL],
                    heu={"schema": "ou", "key_size": 2048})
    run = three_parties.run(spec, timeout=1200)
    assert run.rc == 0, run
    for pid, result in run.results.items():
        assert result["ok"] and auc(result) >= 0.95, (pid, result.get("error"), step(result, "eval"))


def test_a_later_job_predicts_with_the_model_an_earlier_job_trained(three_parties, party_hosts, lr_job, bc):
    earlier = lr_job["spec"]["job_id"]
    spec = pipeline("later", bc, [
        {"id": "predict", "component": "ml.predict/ss_sgd_predict:1.0.0",
         "inputs": {"input_model": {"job": earlier, "output": "train.output_model"},
                    "input_ds": {"job": earlier, "output": "scale_test.output_ds"}},
         "attrs": PREDICT_ATTRS}])
    run = three_parties.run(spec, timeout=1200)
    assert run.rc == 0, run
    alice = party_hosts["alice"]
    before = scores(alice, step(lr_job["results"]["alice"], "predict")["outputs"]["output_ds"]["paths"][0])
    after = scores(alice, step(run.results["alice"], "predict")["outputs"]["output_ds"]["paths"][0])
    assert set(after) == set(before) and len(before) > 100
    assert all(math.isclose(after[i], before[i], abs_tol=1e-6) for i in before)


@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda s: s[5].update(component="ml.train/ss_sgd_trian:1.0.0"),
     "params.steps[train].component", "is not a component of this node's SecretFlow"),
    (lambda s: s[5]["attrs"].update(epoch=3),
     "params.steps[train].attrs.epoch", "is not an attribute of ml.train/ss_sgd_train:1.0.0"),
    (lambda s: s[5]["attrs"].update(epochs="3"),
     "params.steps[train].attrs.epochs", "is not an integer"),
    (lambda s: s[5]["attrs"].update({"input/input_ds/label": ["label"]}),
     "params.steps[train].attrs.input/input_ds/label", "names column 'label', which is not in the schema"),
    (lambda s: s[6]["inputs"].update(input_model="training.output_model"),
     "params.steps[predict].inputs.input_model", "is neither a table of params.tables nor the output of an earlier step"),
])
def test_a_bad_pipeline_is_refused_naming_the_step_and_field(party_hosts, bc, change, field, words):
    steps = json.loads(json.dumps(lr_steps(bc)))
    change(steps)
    spec = pipeline("bad", bc, steps)
    bob = party_hosts["bob"]
    bob.run_expect([0], f"cat > /tmp/{spec['job_id']}.json <<'EOF'\n{json.dumps(spec)}\nEOF")
    run = bob.run(f"{VENV}/bin/sfnode validate /tmp/{spec['job_id']}.json")
    assert run.rc != 0
    # one problem, the one made: "job spec field <field>: <value> <reason>"
    assert run.stderr.startswith(f"job spec field {field}: ") and "\n" not in run.stderr.strip(), run.stderr
    assert words in run.stderr, run.stderr


def test_a_bad_pipeline_submitted_runs_nowhere_and_the_workers_stay_up(three_parties, party_hosts, bc):
    steps = lr_steps(bc)
    steps[5] = {**steps[5], "attrs": {**steps[5]["attrs"], "epochs": 0}}
    spec = pipeline("bad", bc, steps)
    run = three_parties.run(spec, timeout=600)
    assert run.rc != 0
    for pid in ("alice", "bob"):
        result = run.results[pid]
        assert result["ok"] is False and "params.steps[train].attrs.epochs" in json.dumps(result), (pid, result)
        assert party_hosts[pid].run(f"test -e {JOBS_DIR}/{spec['job_id']}/status.json").rc != 0
        assert party_hosts[pid].run(f"{VENV}/bin/sfnode health --timeout 60").rc == 0
