"""Kind pipeline: steps checked against the component catalogue before anything runs.

The catalogue here (tests/unit/data/components.json) is the one SecretFlow
1.12.0b0 gives for the components the platform tests, written by
``python -m sfnode.catalogue``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import full_spec, problems_of
from sfnode import catalogue
from sfnode.config import NodeConfig
from sfnode.federation import Federation
from sfnode.kinds import get
from sfnode.jobdir import output_record
from sfnode.spec import validate_spec

CATALOGUE = Path(__file__).parent / "data" / "components.json"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALICE_FEATURES = {"a1": "float", "a2": "float"}
BOB_FEATURES = {"b1": "float", "b2": "float"}


@pytest.fixture(autouse=True)
def the_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalogue, "default_path", lambda: CATALOGUE)


def lr_params() -> dict[str, Any]:
    return {
        "tables": {
            "alice_data": {"party": "alice", "path": "bc/alice.csv", "ids": {"id": "int"},
                           "features": dict(ALICE_FEATURES), "labels": {"y": "int"}},
            "bob_data": {"party": "bob", "path": "bc/bob.csv", "ids": {"id": "int"},
                         "features": dict(BOB_FEATURES)},
        },
        "steps": [
            {"id": "join", "component": "data_prep/psi:1.0.0",
             "inputs": {"input_ds1": "alice_data", "input_ds2": "bob_data"},
             "attrs": {"input/input_ds1/keys": ["id"], "input/input_ds2/keys": ["id"],
                       "protocol": "PROTOCOL_RR22"}},
            {"id": "split", "component": "data_prep/train_test_split:1.0.0",
             "inputs": {"input_ds": "join.output_ds"}, "attrs": {"train_size": 0.7, "test_size": 0.3}},
            {"id": "train", "component": "ml.train/ss_sgd_train:1.0.0",
             "inputs": {"input_ds": "split.train_ds"},
             "attrs": {"epochs": 5, "input/input_ds/label": ["y"],
                       "input/input_ds/feature_selects": ["a1", "a2", "b1", "b2"]}},
            {"id": "predict", "component": "ml.predict/ss_sgd_predict:1.0.0",
             "inputs": {"input_model": "train.output_model", "input_ds": "split.test_ds"},
             "attrs": {"receiver": "alice", "save_label": True}},
            {"id": "eval", "component": "ml.eval/biclassification_eval:1.0.0",
             "inputs": {"input_ds": "predict.output_ds"},
             "attrs": {"input/input_ds/label": ["y"], "input/input_ds/prediction": ["pred"]}},
        ],
    }


def pipeline_spec(config: NodeConfig, params: dict[str, Any] | None = None) -> dict[str, Any]:
    (config.data_dir / "bc").mkdir(exist_ok=True)
    (config.data_dir / "bc" / "alice.csv").write_text("id,a1,a2,y\n1,0.5,0.2,1\n")
    return full_spec("pipeline", params=params or lr_params())


def only_problem(spec: dict[str, Any], config: NodeConfig, federation: Federation) -> Any:
    problems = problems_of(spec, config, federation)
    assert len(problems) == 1, [p.message for p in problems.values()]
    return next(iter(problems.values()))


def test_a_valid_pipeline_is_normalised(config: NodeConfig, federation: Federation) -> None:
    spec = validate_spec(pipeline_spec(config), config, federation)
    params = spec.params
    assert params["spu"] == {"protocol": "SEMI2K"}
    assert params["heu"] == {"schema": "paillier", "key_size": 2048}
    assert [s["id"] for s in params["steps"]] == ["join", "split", "train", "predict", "eval"]
    # a single party is given as a list, as SecretFlow's party attributes are
    assert params["steps"][3]["attrs"]["receiver"] == ["alice"]
    assert params["steps"][1]["attrs"]["train_size"] == 0.7
    assert get("pipeline").reads(params, "alice") == ("bc/alice.csv",)
    assert get("pipeline").reads(params, "bob") == ("bc/bob.csv",)


@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda p: p["steps"][2].update(component="ml.train/ss_sgd_trian:1.0.0"),
     "params.steps[train].component", "is not a component of this node's SecretFlow"),
    (lambda p: p["steps"][2].update(component="ml.train/ss_sgd_train:2.0.0"),
     "params.steps[train].component", "expected ml.train/ss_sgd_train:1.0.0"),
    (lambda p: p["steps"][2]["attrs"].update(epoch=5),
     "params.steps[train].attrs.epoch", "is not an attribute of ml.train/ss_sgd_train:1.0.0"),
    (lambda p: p["steps"][2]["attrs"].update(epochs="five"),
     "params.steps[train].attrs.epochs", "is not an integer; expected an integer >= 1"),
    (lambda p: p["steps"][2]["attrs"].update(epochs=0),
     "params.steps[train].attrs.epochs", "is out of range; expected an integer >= 1"),
    (lambda p: p["steps"][2]["attrs"].update(sig_type="exact"),
     "params.steps[train].attrs.sig_type", "one of real, t1, t3"),
    (lambda p: p["steps"][1]["attrs"].update(train_size=True),
     "params.steps[split].attrs.train_size", "is not a number"),
    (lambda p: p["steps"][2]["attrs"].update({"input/input_ds/label": ["label"]}),
     "params.steps[train].attrs.input/input_ds/label", "names column 'label', which is not in the schema"),
    (lambda p: p["steps"][0]["attrs"].update({"input/input_ds2/keys": ["uid"]}),
     "params.steps[join].attrs.input/input_ds2/keys", "names column 'uid'"),
    (lambda p: p["steps"][3]["attrs"].pop("receiver"),
     "params.steps[predict].attrs.receiver", "is required by ml.predict/ss_sgd_predict:1.0.0"),
    (lambda p: p["steps"][3]["attrs"].update(receiver=["carol"]),
     "params.steps[predict].attrs.receiver", "of the job's parties (alice, bob)"),
    (lambda p: p["steps"][0]["attrs"].update(protocol="PROTOCOL_XYZ"),
     "params.steps[join].attrs.protocol", "expected one of PROTOCOL_ECDH, PROTOCOL_RR22, PROTOCOL_KKRT"),
    (lambda p: p["steps"][4]["inputs"].update(input_ds="predict.scores"),
     "params.steps[eval].inputs.input_ds", "is neither a table of params.tables nor the output of an earlier step"),
    (lambda p: p["steps"][2]["inputs"].update(input_ds="eval.report"),
     "params.steps[train].inputs.input_ds", "is neither a table"),
    (lambda p: p["steps"][2]["inputs"].update(input_ds="alice_data"),
     "params.steps[train].inputs.input_ds", "is one party's table"),
    (lambda p: p["steps"][3]["inputs"].update(input_model="split.test_ds"),
     "params.steps[predict].inputs.input_model", "is of type sf.table.vertical; expected an input of type sf.model.ss_sgd"),
    (lambda p: p["steps"][3]["inputs"].pop("input_model"),
     "params.steps[predict].inputs.input_model", "is required by ml.predict/ss_sgd_predict"),
    (lambda p: p["steps"][1]["inputs"].update(extra="join.output_ds"),
     "params.steps[split].inputs.extra", "is not an input of data_prep/train_test_split"),
    (lambda p: p["steps"][4].update(id="join"),
     "params.steps[join].id", "is the name of a table or an earlier step"),
    (lambda p: p["tables"]["bob_data"].update(path="../x.csv"),
     "params.tables.bob_data.path", "leaves DATA_DIR"),
    (lambda p: p["tables"]["bob_data"]["features"].update(b3="decimal"),
     "params.tables.bob_data.features", "expected an object of column name to type"),
    (lambda p: p["tables"]["alice_data"]["features"].update(a3="float"),
     "params.tables.alice_data.features", "names column 'a3', which is not in the header"),
    (lambda p: p.update(spu={"protocol": "ABY3"}),
     "params.spu.protocol", "is not an SPU protocol offered here"),
])
def test_a_bad_step_is_refused_naming_the_step_and_field(config: NodeConfig, federation: Federation,
                                                         change: Any, field: str, words: str) -> None:
    params = lr_params()
    change(params)
    problem = only_problem(pipeline_spec(config, params), config, federation)
    assert problem.field == field, problem.message
    assert words in problem.message, problem.message


def test_a_union_member_applies_only_when_chosen(config: NodeConfig, federation: Federation) -> None:
    params = lr_params()
    params["steps"][0]["attrs"]["join_type"] = "left_join"
    problem = only_problem(pipeline_spec(config, params), config, federation)
    assert problem.field == "params.steps[join].attrs.join_type/left_join/left_side"
    assert "is required" in problem.message
    params["steps"][0]["attrs"]["join_type/left_join/left_side"] = ["alice"]
    assert validate_spec(pipeline_spec(config, params), config, federation)


def test_a_group_is_not_an_attribute(config: NodeConfig, federation: Federation) -> None:
    params = lr_params()
    params["steps"][0]["attrs"]["join_type/left_join"] = True
    problem = only_problem(pipeline_spec(config, params), config, federation)
    assert "is a group of data_prep/psi, not an attribute" in problem.message
    assert "join_type/left_join/left_side" in problem.message


def test_every_problem_is_reported_at_once(config: NodeConfig, federation: Federation) -> None:
    params = lr_params()
    params["steps"][2]["attrs"]["epochs"] = -1
    params["steps"][2]["attrs"]["learning_rte"] = 0.1
    params["steps"][4]["component"] = "ml.eval/auc:1.0.0"
    problems = problems_of(pipeline_spec(config, params), config, federation)
    assert set(problems) == {"params.steps[train].attrs.epochs", "params.steps[train].attrs.learning_rte",
                             "params.steps[eval].component"}


def test_a_model_of_an_earlier_job_of_the_same_parties(config: NodeConfig, federation: Federation) -> None:
    params = lr_params()
    params["steps"] = [params["steps"][0], {
        "id": "predict", "component": "ml.predict/ss_sgd_predict:1.0.0",
        "inputs": {"input_model": {"job": "lr-train", "output": "train.output_model"},
                   "input_ds": "join.output_ds"},
        "attrs": {"receiver": ["alice"]}}]
    problem = only_problem(pipeline_spec(config, params), config, federation)
    assert problem.field == "params.steps[predict].inputs.input_model"
    assert "is not an output that party alice keeps" in problem.message

    record = output_record(config.job_dir, "lr-train", "train.output_model")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"type": "sf.model.ss_sgd"}))
    earlier = full_spec("pipeline", parties=("alice", "bob", "carol"))
    (record.parent.parent / "spec.json").write_text(json.dumps(earlier))
    problem = only_problem(pipeline_spec(config, params), config, federation)
    assert problem.field == "params.steps[predict].inputs.input_model.job"
    assert "ran between alice, bob, carol" in problem.message

    (record.parent.parent / "spec.json").write_text(json.dumps(full_spec("pipeline")))
    assert validate_spec(pipeline_spec(config, params), config, federation)

    record.write_text(json.dumps({"type": "sf.model.sgb"}))
    problem = only_problem(pipeline_spec(config, params), config, federation)
    assert "is of type sf.model.sgb; expected sf.model.ss_sgd" in problem.message


def test_a_node_without_catalogue_says_so(config: NodeConfig, federation: Federation,
                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(catalogue, "default_path", lambda: tmp_path / "none.json")
    monkeypatch.setattr(catalogue.subprocess, "run", lambda *a, **k: None)
    problem = only_problem(pipeline_spec(config), config, federation)
    assert problem.field == "params.steps"
    assert "cannot be checked on party alice: no component catalogue" in problem.message


def test_sfnode_components_lists_the_library_and_shows_one(capsys: pytest.CaptureFixture[str]) -> None:
    from sfnode.cli import main

    assert main(["components"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "ml.train/ss_sgd_train:1.0.0  Train both linear and logistic regression  (tested here)" in lines
    assert main(["components", "ml.train/ss_sgd_train:1.0.0"]) == 0
    shown = json.loads(capsys.readouterr().out)
    attrs = {a["path"]: a for a in shown["attrs"]}
    assert attrs["epochs"] == {"path": "epochs", "type": "int", "valid": "an integer >= 1", "required": False,
                               "default": 10}
    assert attrs["sig_type"]["valid"].startswith("a string, one of real, t1, t3")
    assert attrs["input/input_ds/label"]["required"] is True
    assert shown["inputs"] == [{"name": "input_ds", "types": ["sf.table.vertical"], "optional": False}]
    assert [o["name"] for o in shown["outputs"]] == ["output_model", "report"]
    assert main(["components", "data_prep/psi"]) == 0
    psi = {a["path"]: a for a in json.loads(capsys.readouterr().out)["attrs"]}
    assert psi["protocol"]["default"] == "PROTOCOL_RR22"
    assert psi["join_type/left_join/left_side"]["applies"] == "when join_type is left_join"
    assert main(["components", "ml.train/nothing"]) == 2
    assert "is not a component of this node's SecretFlow" in capsys.readouterr().err


def test_columns_are_known_through_standardisation(config: NodeConfig, federation: Federation) -> None:
    params = lr_params()
    feats = [*ALICE_FEATURES, *BOB_FEATURES]
    params["steps"][2:3] = [
        {"id": "scale", "component": "preprocessing/feature_calculate:1.0.0", "inputs": {"input_ds": "split.train_ds"},
         "attrs": {"rules": '{"op": "STANDARDIZE"}', "input/input_ds/features": feats}},
        {"id": "train", "component": "ml.train/ss_sgd_train:1.0.0", "inputs": {"input_ds": "scale.output_ds"},
         "attrs": {"input/input_ds/label": ["label"], "input/input_ds/feature_selects": feats}}]
    problem = only_problem(pipeline_spec(config, params), config, federation)
    assert problem.field == "params.steps[train].attrs.input/input_ds/label"
    assert "names column 'label', which is not in the schema" in problem.message


@pytest.mark.parametrize("name", ["lr", "sgb"])
def test_the_example_pipelines_are_valid(config: NodeConfig, federation: Federation, name: str) -> None:
    """examples/pipelines/ (the demo's, the federation scenario's, the benchmark's) pass
    the checks on alice's node, with its table in place."""
    example = json.loads((EXAMPLES / "pipelines" / f"{name}.json").read_text())
    (config.data_dir / "bc").mkdir(exist_ok=True)
    header = ["id", *example["params"]["tables"]["alice_bc"]["features"], "y"]
    (config.data_dir / "bc" / "alice.csv").write_text(",".join(header) + "\n")
    spec = full_spec("pipeline", params=example["params"])
    steps = validate_spec(spec, config, federation).params["steps"]
    assert [s["id"] for s in steps] == [s["id"] for s in example["params"]["steps"]]
    assert steps[-1]["component"] == "ml.eval/biclassification_eval:1.0.0"
