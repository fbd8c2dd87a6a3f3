"""Pins of the study side of `diagnose`: a trial record or a run folder -> the subject, the verdict
of every trial (`show`'s column, `diagnose --all`) and the diagnosis of one.

Plain data in, as results.trial_record and a `tunectl train` folder write it; expected verdicts
are worked out here from the rule (avoidable bias = train - human, variance = dev - train, each
against its limit: 0.02 for error rates, 0.1 x the training targets' std for an RMSE). No
training: well under a second.
"""

from __future__ import annotations

import json
import math

import pytest

from tunectl import diagnose as D
from tunectl.diagnose import Thresholds
from tunectl.errors import TunectlError

REGRESSION = {"manifest": {"task": "regression", "scaling": {"y_mean": 150.0, "y_scale": 10.0}},
              "data": {"dataset": "diabetes"}, "space": {"params": {"lr": {"type": "float", "low": 1e-4, "high": 1.0}}}}
CLASSIFICATION = {"manifest": {"task": "multiclass", "scaling": {"y_mean": 0.0, "y_scale": 1.0}},
                  "data": {"dataset": "digits"}}


def record(number, train, dev, state="COMPLETE", **extra):
    return {"number": number, "state": state, "value": dev, "train_error": train, "dev_error": dev,
            "reason": state.lower(), "curve": [], "config": {"width": 32}, **extra}


# ----------------------------------------------------------------------------- study_verdicts


def test_regression_verdicts_use_a_tenth_of_the_studys_target_std():
    # y_scale 10: both limits are 1.0 target units
    records = [record(0, 5.0, 5.9), record(1, 5.0, 6.1), record(2, 5.0, 5.0)]
    assert D.study_verdicts(records, REGRESSION, human_error=4.5) == {0: "ok", 1: "high_variance", 2: "ok"}
    assert D.study_verdicts(records, REGRESSION, human_error=3.9) == {
        0: "high_bias", 1: "high_bias_high_variance", 2: "high_bias"}
    # an RMSE of the target's size is a legal human error for regression, not an error rate
    assert D.study_verdicts([record(0, 12.0, 12.5)], REGRESSION, human_error=11.5) == {0: "ok"}
    # explicit thresholds are fractions of the same std
    assert D.study_verdicts(records, REGRESSION, 4.5, Thresholds(variance=0.05)) == {
        0: "high_variance", 1: "high_variance", 2: "ok"}


def test_classification_verdicts_use_two_points_of_error_rate():
    records = [record(0, 0.10, 0.119), record(1, 0.10, 0.121), record(2, 0.05, 0.05)]
    assert D.study_verdicts(records, CLASSIFICATION, human_error=0.09) == {0: "ok", 1: "high_variance", 2: "ok"}
    assert D.study_verdicts(records, CLASSIFICATION, human_error=0.079) == {
        0: "high_bias", 1: "high_bias_high_variance", 2: "ok"}


def test_a_study_without_a_task_is_classification():
    for meta in ({}, {"manifest": {}}, {"manifest": {"scaling": {"y_scale": 100.0}}}):
        assert D.study_verdicts([record(0, 0.10, 0.13)], meta) == {0: "high_bias_high_variance"}
        with pytest.raises(TunectlError, match="an error rate must be below 1"):
            D.study_verdicts([record(0, 0.10, 0.13)], meta, human_error=1.0)
    with pytest.raises(TunectlError, match="an error rate must be below 1"):
        D.study_verdicts([record(0, 0.10, 0.13)], CLASSIFICATION, human_error=1.0)


def test_trials_without_both_errors_get_no_verdict():
    records = [record(0, 0.10, None, "PRUNED"), record(1, None, 0.2, "FAIL"), record(2, math.nan, 0.2),
               record(3, 0.1, math.inf), record(4, 0.0, 0.0)]
    assert D.study_verdicts(records, CLASSIFICATION) == {4: "ok"}


# ----------------------------------------------------------------------------- study_overview


def test_the_overview_counts_every_verdict_of_the_complete_trials():
    records = [record(0, 0.30, 0.31), record(1, 0.01, 0.20), record(2, 0.30, 0.50), record(3, 0.0, 0.01),
               record(4, 0.30, 0.30), record(5, 0.0, 0.0, "PRUNED"), record(6, 0.5, None, "FAIL")]
    o = D.study_overview(records, CLASSIFICATION, "night")
    assert o["study"] == "night" and o["n_complete"] == 5 and o["human_error"] == 0.0
    assert o["thresholds"] == {"bias": 0.02, "variance": 0.02}
    assert o["counts"] == {"high_bias": 2, "high_variance": 1, "high_bias_high_variance": 1, "ok": 1}
    assert o["bias_limited"] == 3 and o["variance_limited"] == 2
    # the trials, best (lowest dev error) first, with their four numbers
    assert [t["number"] for t in o["trials"]] == [3, 1, 4, 0, 2]
    assert o["trials"][1] == {"number": 1, "train_error": 0.01, "dev_error": 0.20, "avoidable_bias": 0.01,
                              "variance": pytest.approx(0.19), "diagnosis": "high_variance"}


def test_the_overview_of_a_regression_study_in_target_units():
    records = [record(0, 5.0, 6.5), record(1, 5.0, 5.5), record(2, 6.0, None, "COMPLETE")]
    o = D.study_overview(records, REGRESSION, "diabetes-night", human_error=4.5)
    assert o["thresholds"] == {"bias": pytest.approx(1.0), "variance": pytest.approx(1.0)}
    assert o["n_complete"] == 2 and o["counts"]["high_variance"] == 1 and o["counts"]["ok"] == 1
    assert [t["number"] for t in o["trials"]] == [1, 0]  # a complete trial without a dev error is sorted last, left out
    assert o["trials"][0]["avoidable_bias"] == pytest.approx(0.5) and o["human_error"] == 4.5
    with pytest.raises(TunectlError, match="an error rate must be below 1"):
        D.study_overview(records, {}, "no-task", human_error=2.0)


# ----------------------------------------------------------------------------- trial_subject, diagnose_subject


def test_a_trial_record_becomes_the_subject_with_the_studys_task_and_scale():
    r = record(7, 5.0, 6.0, curve=[{"epoch": 1, "train_error": 5.0, "dev_error": 6.0, "train_loss": 1.0}])
    s = D.trial_subject(r, REGRESSION, "diabetes-night")
    assert s == {"source": {"study": "diabetes-night", "trial": 7, "state": "COMPLETE", "reason": "complete"},
                 "task": "regression", "train_error": 5.0, "dev_error": 6.0, "curve": r["curve"],
                 "config": {"width": 32}, "data": {"dataset": "diabetes"}, "y_scale": 10.0,
                 "space": REGRESSION["space"], "status": "complete",
                 # the noise (noise.py): the record's standard errors, the dev size, the split's manifest
                 "dev_error_se": None, "train_error_se": None, "n_dev": None, "manifest": REGRESSION["manifest"]}
    bare = D.trial_subject({"number": 0, "state": "COMPLETE", "train_error": 0.1, "dev_error": 0.2}, {}, "s")
    assert (bare["task"], bare["y_scale"], bare["curve"], bare["config"], bare["data"], bare["space"]) == \
        ("multiclass", None, [], {}, {}, None)
    assert bare["source"]["reason"] is None and bare["status"] is None


@pytest.mark.parametrize("train, dev", [(None, 0.2), (0.1, None)])
def test_a_trial_without_errors_is_refused_with_the_way_out(train, dev):
    r = record(3, train, dev, "PRUNED", reason="pruned at epoch 1")
    with pytest.raises(TunectlError) as e:
        D.trial_subject(r, CLASSIFICATION, "night")
    assert str(e.value) == ("trial 3 of study 'night' has no train/dev error (PRUNED: pruned at epoch 1); "
                            "pick a complete trial (see `tunectl show night`)")


def test_diagnose_subject_passes_the_subjects_numbers_and_says_so():
    s = D.trial_subject(record(2, 5.0, 6.5), REGRESSION, "diabetes-night")
    d = D.diagnose_subject(s, human_error=4.5)
    assert (d.task, d.train_error, d.dev_error, d.human_error) == ("regression", 5.0, 6.5, 4.5)
    assert d.thresholds["bias"] == pytest.approx(1.0) and d.diagnosis == "high_variance"
    assert d.source == s["source"] and d.source is not s["source"]
    assert not any(e["kind"] == "no_human_error" for e in d.evidence)
    # regression without --human-error: the avoidable bias is all of the train RMSE, and it says so
    d = D.diagnose_subject(s)
    assert d.human_error == 0.0 and d.diagnosis == "high_bias_high_variance"
    assert d.evidence[-1] == {"kind": "no_human_error", "text": "no --human-error: the avoidable bias counts all of "
                              "the train RMSE, noise included; give the error an expert would make, in the target's units"}
    assert not any(e["kind"] == "no_human_error"
                   for e in D.diagnose_subject(D.trial_subject(record(0, 0.3, 0.3), CLASSIFICATION, "c")).evidence)


def test_diagnose_subject_of_a_pruned_trial_says_its_numbers_are_early():
    s = D.trial_subject(record(4, 0.3, 0.31, "PRUNED", reason="pruned at epoch 2"), CLASSIFICATION, "night")
    d = D.diagnose_subject(s)
    assert d.evidence[0] == {"kind": "pruned", "text": "this trial was pruned at epoch 2: its numbers are those of a "
                             "model stopped early, not of one trained to the end"}
    s["source"]["reason"] = None
    assert D.diagnose_subject(s).evidence[0]["text"].startswith("this trial was pruned: ")
    assert not any(e["kind"] == "pruned" for e in D.diagnose_subject(
        D.trial_subject(record(4, 0.3, 0.31), CLASSIFICATION, "night")).evidence)


def test_diagnose_subject_uses_the_space_the_config_the_thresholds_and_the_image_kind():
    s = D.trial_subject(record(0, 0.30, 0.31), CLASSIFICATION, "night")
    plain = D.diagnose_subject(s)
    assert any("width 32" in a["text"] for a in plain.actions)  # the trial's own config
    assert any(a["kind"] == "architecture" for a in plain.actions)  # digits are images
    s_tab = dict(s, data={"dataset": "iris"})
    assert not any(a["kind"] == "architecture" for a in D.diagnose_subject(s_tab).actions)
    assert D.diagnose_subject(s, thresholds=Thresholds(bias=0.5)).diagnosis == "ok"
    spaced = dict(s, space={"params": {"width": {"type": "int", "low": 8, "high": 64}}, "epochs": 10})
    assert any(a["text"].endswith("(searched 8–64)") for a in D.diagnose_subject(spaced).actions)
    points = [{"fraction": 0.5, "n_train": 50, "train_error": 0.0, "dev_error": 0.5},
              {"fraction": 1.0, "n_train": 100, "train_error": 0.0, "dev_error": 0.31}]
    d = D.diagnose_subject(s, data_curve=points)
    assert d.data_verdict == "more_data_helps" and d.data_curve == points


# ----------------------------------------------------------------------------- read_run: a `tunectl train` folder


def write_run(folder, history=None, split=None, **changes):
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"train_error": 4.0, "dev_error": 5.0, "config": {"width": 16, "epochs": 3},
           "history": [{"epoch": 1, "train_error": 4.0, "dev_error": 5.0, "train_loss": 1.5}],
           "data": {"dataset": "diabetes"}, "task": "regression", "status": "done", **changes}
    (folder / "history.json").write_text(json.dumps(doc if history is None else history))
    if split is not None:
        (folder / "split.json").write_text(split if isinstance(split, str) else json.dumps(split))
    return folder


def test_a_run_folder_becomes_the_subject(tmp_path):
    folder = write_run(tmp_path / "run", split={"task": "regression", "scaling": {"y_scale": 20.0}})
    s = D.read_run(folder)
    assert s == {"source": {"run": str(folder)}, "task": "regression", "train_error": 4.0, "dev_error": 5.0,
                 "curve": [{"epoch": 1, "train_error": 4.0, "dev_error": 5.0, "train_loss": 1.5}],
                 "config": {"width": 16, "epochs": 3}, "data": {"dataset": "diabetes"}, "y_scale": 20.0,
                 "space": None, "status": "done", "dev_error_se": None, "train_error_se": None, "n_dev": None,
                 "manifest": {"task": "regression", "scaling": {"y_scale": 20.0}}}
    assert D.diagnose_subject(s, human_error=3.5).thresholds["bias"] == pytest.approx(2.0)


def test_a_run_folder_task_and_scale_come_from_history_then_split(tmp_path):
    s = D.read_run(write_run(tmp_path / "a", split={"task": "binary", "scaling": {"y_scale": 1.0}}, task=None))
    assert s["task"] == "binary"  # no task in history.json: the split's
    s = D.read_run(write_run(tmp_path / "b", split={"task": "binary"}))
    assert s["task"] == "regression" and s["y_scale"] is None  # history.json's task wins; no scaling
    s = D.read_run(write_run(tmp_path / "c", task=None))
    assert s["task"] == "multiclass" and s["y_scale"] is None  # neither says: classification
    # a damaged or odd split.json only loses the scale (and the task): the run is still diagnosed
    for i, bad in enumerate(("not json", json.dumps([1]), json.dumps({"scaling": [1]}),
                             json.dumps({"scaling": {"y_scale": "x"}}), '{"scaling": {"y_scale": Infinity}}')):
        s = D.read_run(write_run(tmp_path / f"d{i}", split=bad, task=None))
        assert s["task"] == "multiclass" and s["y_scale"] is None, bad
    s = D.read_run(write_run(tmp_path / "e", split={"task": "nonsense"}, task=None))
    assert s["task"] == "multiclass"
    bare = D.read_run(write_run(tmp_path / "f", history={"train_error": 0.1, "dev_error": 0.2, "config": {}}))
    assert (bare["curve"], bare["config"], bare["data"], bare["status"], bare["task"]) == ([], {}, {}, None, "multiclass")


@pytest.mark.parametrize("doc, message", [
    ([1, 2], "history.json: expected a JSON object (a `tunectl train` history), got a list; "
             "rerun `tunectl train` into a new --out folder"),
    ({"dev_error": 0.2, "config": {}}, "history.json: no 'train_error'; not a `tunectl train` history, "
                                        "rerun `tunectl train` into a new --out folder"),
    ({"train_error": 0.2, "config": {}}, "history.json: no 'dev_error'; not a `tunectl train` history"),
    ({"train_error": 0.2, "dev_error": 0.2}, "history.json: no 'config'; not a `tunectl train` history"),
    ({"train_error": "0.2", "dev_error": 0.2, "config": {}}, "history.json: 'train_error' should be a number, got '0.2'; "
                                                             "rerun `tunectl train` into a new --out folder"),
    ({"train_error": 0.2, "dev_error": True, "config": {}}, "history.json: 'dev_error' should be a number, got True"),
    ({"train_error": 0.2, "dev_error": 0.2, "config": [], "history": []}, "history.json: 'config' should be a mapping, got []"),
    ({"train_error": 0.2, "dev_error": 0.2, "config": {}, "history": {}}, "'history' should be a list of epochs, got {}"),
    ({"train_error": 0.2, "dev_error": 0.2, "config": {}, "history": [1]}, "'history' should be a list of epochs, got [1]"),
    ({"train_error": 0.2, "dev_error": 0.2, "config": {}, "data": "digits"}, "'data' should be a mapping, got 'digits'"),
    ({"train_error": 0.2, "dev_error": 0.2, "config": {}, "task": "ranking"}, "'task' should be a task name, got 'ranking'"),
    ({"train_error": 0.2, "dev_error": 0.2, "config": {}, "history": [{"epoch": "one"}]},
     "history.json: history: 'epoch' should be a number, got 'one'; rerun `tunectl train` into a new --out folder"),
    ({"train_error": 0.2, "dev_error": 0.2, "config": {}, "history": [{"train_loss": [1]}]},
     "history: 'train_loss' should be a number, got [1]"),
    ({"train_error": 0.2, "dev_error": 0.2, "config": {}, "history": [{"train_error": "x"}]},
     "history: 'train_error' should be a number, got 'x'"),
    ({"train_error": 0.2, "dev_error": 0.2, "config": {}, "history": [{"dev_error": False}]},
     "history: 'dev_error' should be a number, got False"),
    ({"train_error": 0.2, "dev_error": 0.2, "config": {"widht": 3}},
     "history.json: config: unknown hyperparameter 'widht' (did you mean 'width'?)"),
])
def test_a_damaged_history_is_refused_by_what_is_wrong(tmp_path, doc, message):
    folder = write_run(tmp_path / "run", history=doc)
    with pytest.raises(TunectlError) as e:
        D.read_run(folder)
    assert str(e.value).startswith(f"{folder / 'history.json'}") and message in str(e.value)
    assert str(e.value).endswith("rerun `tunectl train` into a new --out folder")


def test_null_numbers_and_extra_columns_in_a_history_are_accepted(tmp_path):
    doc = {"train_error": None, "dev_error": 0.2, "config": {}, "data": None, "task": None,
           "history": [{"epoch": 1, "train_error": None, "dev_error": 0.2, "train_loss": None, "seconds": "n/a"}]}
    s = D.read_run(write_run(tmp_path / "run", history=doc))
    assert s["train_error"] is None and s["data"] == {} and s["curve"] == doc["history"]


def test_a_folder_without_a_readable_history(tmp_path):
    with pytest.raises(TunectlError) as e:
        D.read_run(tmp_path)
    assert str(e.value) == (f"{tmp_path}: no history.json, so not a `tunectl train` run folder; give a run folder "
                            f"or a study name")
    (tmp_path / "history.json").write_text("{not json")
    with pytest.raises(TunectlError) as e:
        D.read_run(tmp_path)
    assert str(e.value) == f"{tmp_path / 'history.json'} is not valid JSON; rerun `tunectl train` into a new --out folder"
    (tmp_path / "history.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(TunectlError, match="is not valid JSON"):
        D.read_run(tmp_path)
    (tmp_path / "history.json").unlink()
    (tmp_path / "history.json").mkdir()
    with pytest.raises(TunectlError) as e:
        D.read_run(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'history.json'}: cannot read it (") and \
        str(e.value).endswith("); check the run folder")


# ----------------------------------------------------------------------------- diagnose_target on a run folder, and what it refuses first


def test_diagnose_target_of_a_run_folder(tmp_path):
    folder = write_run(tmp_path / "run", split={"task": "regression", "scaling": {"y_scale": 20.0}})
    out = D.diagnose_target(str(folder), human_error=3.5, root=tmp_path / "studies")
    expected = D.diagnose_subject(D.read_run(folder), 3.5).to_dict()
    assert out == expected and out["source"] == {"run": str(folder)}
    assert out["thresholds"] == {"bias": pytest.approx(2.0), "variance": pytest.approx(2.0), "unit": "target units"}
    assert (out["avoidable_bias"], out["variance"], out["diagnosis"]) == (pytest.approx(0.5), 1.0, "ok")
    assert "next_space" not in out and "data_curve" not in out
    # no --human-error for regression: the evidence says so (human_error None reaches the subject)
    assert D.diagnose_target(str(folder), root=tmp_path)["evidence"][-1]["kind"] == "no_human_error"
    assert D.diagnose_target(str(folder), thresholds=Thresholds(variance=0.01), human_error=3.5,
                             root=tmp_path)["diagnosis"] == "high_variance"


def test_diagnose_target_writes_the_next_space(tmp_path):
    from tunectl.space import load_space

    folder = write_run(tmp_path / "run", history={"train_error": 0.30, "dev_error": 0.31, "config": {"width": 16},
                                                  "data": {"dataset": "iris"}, "task": "multiclass"})
    out_file = tmp_path / "deep" / "er" / "next.yaml"
    out = D.diagnose_target(str(folder), next_space=out_file, root=tmp_path)
    assert out["next_space"] == str(out_file) and out["diagnosis"] == "high_bias"
    space = load_space(out_file)
    assert space.dataset == "iris" and "width" in space.params


@pytest.mark.parametrize("kwargs, message", [
    ({"all_trials": True}, "RUN: --all needs a study, and this is a run folder"),
    ({"all_trials": True, "data_curve_": True}, "--all summarises every complete trial; --trial, --data-curve and "
                                                "--next-space take one trial"),
    ({"all_trials": True, "trial": 0}, "--all summarises every complete trial"),
    ({"human_error": 1.0}, "--human-error 1: an error rate must be below 1"),
    ({"human_error": -1.0}, "--human-error -1: must be a finite number >= 0"),
])
def test_diagnose_target_refuses_before_any_work(tmp_path, kwargs, message):
    folder = write_run(tmp_path / "run", history={"train_error": 0.3, "dev_error": 0.31, "config": {},
                                                  "task": "multiclass"})
    with pytest.raises(TunectlError) as e:
        D.diagnose_target(str(folder), root=tmp_path, **kwargs)
    assert str(e.value).startswith(message.replace("RUN", str(folder)))


def test_diagnose_target_checks_the_next_space_first(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TunectlError) as e:
        D.diagnose_target(str(tmp_path / "not-there"), next_space=tmp_path / "file" / "next.yaml", root=tmp_path)
    assert str(e.value) == (f"--next-space {tmp_path / 'file' / 'next.yaml'}: {tmp_path / 'file'} is a file, "
                            f"not a folder; choose another path")
    with pytest.raises(TunectlError) as e:
        D.check_next_space(tmp_path)
    assert str(e.value) == f"--next-space {tmp_path}: is a folder; give a file name, e.g. --next-space {tmp_path / 'next.yaml'}"
    D.check_next_space(tmp_path / "new" / "next.yaml")  # a folder still to make is fine


def test_diagnose_target_names_what_it_looked_for(tmp_path):
    with pytest.raises(TunectlError) as e:
        D.diagnose_target("nope", root=tmp_path / "studies")
    assert str(e.value) == (f"'nope' is neither a run folder (with history.json) nor a study under "
                            f"{tmp_path / 'studies'}/; list the studies with `tunectl studies --root "
                            f"{tmp_path / 'studies'}`")


# ----------------------------------------------------------------------------- a study written as tunectl writes one


@pytest.fixture
def regression_study(tmp_path):
    """An Optuna study in studies/NAME/study.db with tunectl's attribute and 6 finished trials (no training)."""
    import optuna

    from tunectl import results, studies

    root = tmp_path / "studies"
    name = "diabetes-night"
    studies.study_dir(name, root).mkdir(parents=True)
    results.quiet_optuna()
    st = optuna.create_study(study_name=name, storage=studies.default_storage_url(name, root))
    st.set_user_attr(results.ATTR, REGRESSION)
    dist = {"lr": optuna.distributions.FloatDistribution(1e-6, 1.0, log=True)}
    rows = [(5.0, 6.5), (5.0, 5.5), (4.0, 4.5), (6.0, 6.2), (5.5, 7.0)]  # (train, dev) RMSE, y_scale 10
    for i, (train, dev) in enumerate(rows):
        st.add_trial(optuna.trial.create_trial(
            params={"lr": 10 ** -(i + 1)}, distributions=dist, value=dev,
            user_attrs={"train_error": train, "dev_error": dev, "config": {"width": 32, "lr": 10 ** -(i + 1)},
                        "params": {"lr": 10 ** -(i + 1)}, "curve": []}))
    st.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params={"lr": 0.5},
                                           distributions=dist, user_attrs={"reason": "pruned at epoch 1"}))
    return name, root, rows


def test_board_gives_each_leaderboard_trial_its_verdict(regression_study, monkeypatch):
    from tunectl import results

    name, root, rows = regression_study
    monkeypatch.chdir(root.parent)  # the default root is ./studies
    b = D.board(name, top=3)
    assert [r["number"] for r in b["leaderboard"]] == [2, 1, 3]  # lowest dev RMSE first, top 3
    # limits 1.0 (0.1 x 10), no human error: all of the train RMSE is avoidable bias
    assert b["verdicts"] == {2: "high_bias", 1: "high_bias", 3: "high_bias"}
    assert b["importance_method"] == results.importance_method()
    assert set(b["importances"]) == {"lr"}
    assert b["task"] == "regression" and b["n_trials"] == 6


def test_diagnose_target_of_a_study_picks_the_best_or_the_asked_trial(regression_study):
    name, root, rows = regression_study
    best = D.diagnose_target(name, human_error=3.5, root=root)
    assert best["source"] == {"study": name, "trial": 2, "state": "COMPLETE", "reason": "complete"}
    assert (best["train_error"], best["dev_error"], best["task"]) == (4.0, 4.5, "regression")
    assert best["thresholds"]["bias"] == pytest.approx(1.0) and best["diagnosis"] == "ok"
    four = D.diagnose_target(name, trial=4, human_error=3.5, root=root)
    assert four["source"]["trial"] == 4 and four["diagnosis"] == "high_bias_high_variance"
    # `diagnose studies/NAME` is the same study
    assert D.diagnose_target(str(root / name), human_error=3.5, root="elsewhere")["source"] == best["source"]
    with pytest.raises(TunectlError, match="trial 5 of study 'diabetes-night' has no train/dev error"):
        D.diagnose_target(name, trial=5, root=root)


def test_diagnose_all_is_the_studys_overview(regression_study):
    name, root, rows = regression_study
    out = D.diagnose_target(name, all_trials=True, human_error=4.5, root=root)
    assert out["overview"] is True and out["study"] == name and out["n_complete"] == 5
    expected = {"ok": 0, "high_bias": 0, "high_variance": 0, "high_bias_high_variance": 0}
    for train, dev in rows:
        expected[D.verdict(train - 4.5, dev - train, 1.0, 1.0)] += 1
    assert out["counts"] == expected
    assert out["thresholds"] == {"bias": pytest.approx(1.0), "variance": pytest.approx(1.0)}


def test_diagnose_target_data_curve_retrains_on_the_runs_own_data(tmp_path):
    """--data-curve reads the data the run trained on (its `data` section), announces the curve
    (on_curve(None)), then reports each point; a bad --human-error is refused before any of that."""
    data = {"dataset": "iris", "split": "0.5,0.25,0.25", "split_seed": 2}
    folder = write_run(tmp_path / "run", history={"train_error": 0.3, "dev_error": 0.35, "task": "multiclass",
                                                  "config": {"epochs": 1, "width": 4, "depth": 1}, "data": data})
    calls = []
    with pytest.raises(TunectlError, match="an error rate must be below 1"):
        D.diagnose_target(str(folder), human_error=1.0, data_curve_=True, on_curve=calls.append, root=tmp_path)
    assert calls == []
    out = D.diagnose_target(str(folder), data_curve_=True, on_curve=calls.append, root=tmp_path, device="cpu")
    assert calls[0] is None and calls[1:] == out["data_curve"]
    # about 50 % of iris's 150 examples train (the run's split, not the default 60 %); the curve's shares of them
    from tunectl.data import split_sizes

    n = split_sizes(150, (0.5, 0.25, 0.25))[0]
    assert [p["n_train"] for p in out["data_curve"]] == [max(1, round(f * n)) for f in D.CURVE_FRACTIONS]
    assert out["data_verdict"] in ("more_data_helps", "flat") and out["evidence"][-1]["kind"] == out["data_verdict"]
