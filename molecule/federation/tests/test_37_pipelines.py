"""Pipelines of SecretFlow components between alice and bob (issue 12).

The data and specs are the examples' (examples/breast_cancer.py,
examples/pipelines/): scikit-learn's breast-cancer set (it ships in the nodes'
venv), an id column added, 15 features at alice with the label, the other 15
at bob, rows shuffled differently on each side and a few rows on one side
only. It is made on alice by the venv's own Python, with the joined table's
statistics as pandas computes them, and uploaded to each party with
playbooks/upload.yml.
Jobs go through playbooks/job.yml (the single administrator's path), so the
workers validate and run them as any job.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import PARTIES, unique_job_id
from shared import JOBS_DIR, VENV
from test_25_tls import clear_text_drops

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SLOTS = {"lr": 7, "sgb": 8, "later": 9, "bad": 10}


@pytest.fixture(scope="module")
def bc(three_parties, party_hosts, tmp_path_factory) -> dict:
    """The example pipelines' data (examples/breast_cancer.py, made on alice by the venv's
    own Python) uploaded to alice and bob as bc/alice.csv and bc/bob.csv; the truth."""
    alice = party_hosts["alice"]
    work = tmp_path_factory.mktemp("bc")
    maker = (EXAMPLES / "breast_cancer.py").read_text()
    alice.run_expect([0], f"rm -rf /tmp/bc && mkdir /tmp/bc && cat > /tmp/bc/make.py <<'EOF'\n{maker}\nEOF")
    made = alice.run(f"{VENV}/bin/python /tmp/bc/make.py /tmp/bc")
    assert made.rc == 0, made.stderr
    for pid in ("alice", "bob"):
        (work / f"{pid}.csv").write_text(alice.check_output(f"cat /tmp/bc/{pid}.csv") + "\n")
        three_parties.upload(PARTIES[pid], work / f"{pid}.csv", f"bc/{pid}.csv")
    return json.loads(alice.check_output("cat /tmp/bc/truth.json"))


def example(name: str) -> dict:
    """An example pipeline spec of examples/pipelines/."""
    return json.loads((EXAMPLES / "pipelines" / f"{name}.json").read_text())


def lr_steps() -> list[dict]:
    return example("lr")["params"]["steps"]


def pipeline(kind: str, steps: list[dict], **params) -> dict:
    base = example("lr")
    return {**base, "job_id": unique_job_id(f"pl-{kind}"), "slot": SLOTS[kind],
            "params": {"tables": base["params"]["tables"], "steps": steps, **params}}


def step_of(steps: list[dict], step_id: str) -> dict:
    return next(s for s in steps if s["id"] == step_id)


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
    spec = pipeline("lr", lr_steps())
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
    began = status["phases"]  # phase: when it began
    assert [p for p in sorted(began, key=began.get) if p.startswith("step ")] == [
        f"step {s['id']}" for s in lr_steps()], began


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
    sgb = example("sgb")
    spec = {**sgb, "job_id": unique_job_id("pl-sgb"), "slot": SLOTS["sgb"]}
    run = three_parties.run(spec, timeout=1200)
    assert run.rc == 0, run
    for pid, result in run.results.items():
        assert result["ok"] and auc(result) >= 0.95, (pid, result.get("error"), step(result, "eval"))


def test_a_later_job_predicts_with_the_model_an_earlier_job_trained(three_parties, party_hosts, lr_job, bc):
    earlier = lr_job["spec"]["job_id"]
    spec = pipeline("later", [
        {"id": "predict", "component": "ml.predict/ss_sgd_predict:1.0.0",
         "inputs": {"input_model": {"job": earlier, "output": "train.output_model"},
                    "input_ds": {"job": earlier, "output": "scale_test.output_ds"}},
         "attrs": step_of(lr_steps(), "predict")["attrs"]}])
    run = three_parties.run(spec, timeout=1200)
    assert run.rc == 0, run
    alice = party_hosts["alice"]
    before = scores(alice, step(lr_job["results"]["alice"], "predict")["outputs"]["output_ds"]["paths"][0])
    after = scores(alice, step(run.results["alice"], "predict")["outputs"]["output_ds"]["paths"][0])
    assert set(after) == set(before) and len(before) > 100
    assert all(math.isclose(after[i], before[i], abs_tol=1e-6) for i in before)


@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda s: step_of(s, "train").update(component="ml.train/ss_sgd_trian:1.0.0"),
     "params.steps[train].component", "is not a component of this node's SecretFlow"),
    (lambda s: step_of(s, "train")["attrs"].update(epoch=3),
     "params.steps[train].attrs.epoch", "is not an attribute of ml.train/ss_sgd_train:1.0.0"),
    (lambda s: step_of(s, "train")["attrs"].update(epochs="3"),
     "params.steps[train].attrs.epochs", "is not an integer"),
    (lambda s: step_of(s, "train")["attrs"].update({"input/input_ds/label": ["label"]}),
     "params.steps[train].attrs.input/input_ds/label", "names column 'label', which is not in the schema"),
    (lambda s: step_of(s, "predict")["inputs"].update(input_model="training.output_model"),
     "params.steps[predict].inputs.input_model", "is neither a table of params.tables nor the output of an earlier step"),
])
def test_a_bad_pipeline_is_refused_naming_the_step_and_field(party_hosts, bc, change, field, words):
    steps = lr_steps()
    change(steps)
    spec = pipeline("bad", steps)
    bob = party_hosts["bob"]
    bob.run_expect([0], f"cat > /tmp/{spec['job_id']}.json <<'EOF'\n{json.dumps(spec)}\nEOF")
    run = bob.run(f"{VENV}/bin/sfnode validate /tmp/{spec['job_id']}.json")
    assert run.rc != 0
    # one problem, the one made: "job spec field <field>: <value> <reason>"
    assert run.stderr.startswith(f"job spec field {field}: ") and "\n" not in run.stderr.strip(), run.stderr
    assert words in run.stderr, run.stderr


def test_a_bad_pipeline_submitted_runs_nowhere_and_the_workers_stay_up(three_parties, party_hosts, bc):
    steps = lr_steps()
    step_of(steps, "train")["attrs"]["epochs"] = 0
    spec = pipeline("bad", steps)
    run = three_parties.run(spec, timeout=600)
    assert run.rc != 0
    for pid in ("alice", "bob"):
        result = run.results[pid]
        assert result["ok"] is False and "params.steps[train].attrs.epochs" in json.dumps(result), (pid, result)
        assert party_hosts[pid].run(f"test -e {JOBS_DIR}/{spec['job_id']}/status.json").rc != 0
        assert party_hosts[pid].run(f"{VENV}/bin/sfnode health --timeout 60").rc == 0
