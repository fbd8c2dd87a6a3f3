"""Warm starts: the textbook defaults as a new study's first trial, `--enqueue FILE` and `--warm-from
STUDY` tried first in order, each recorded on its trial, and their refusals (one line, exit 2, nothing
written)."""

from __future__ import annotations

import functools
import math
import shutil

import pytest
import yaml

import conftest
from conftest import ok_json
from tunectl.config import TrainConfig
from tunectl.results import open_study
from tunectl.space import load_space, parse_space
from tunectl import warmstart

invoke = functools.partial(conftest.invoke, env={"COLUMNS": "200"})

SPACE = """\
dataset: digits
epochs: 1
params:
  lr:         {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  width:      {type: int, low: 8, high: 32, log: true}
  depth:      {type: int, low: 1, high: 3}
  optimizer:  {type: categorical, choices: [momentum, adam]}
  beta:       {type: float, low: 0.8, high: 0.99, when: {optimizer: [momentum]}}
  beta2:      {type: float, low: 0.9, high: 0.9999, one_minus: true, when: {optimizer: [adam]}}
  batch_size: {type: categorical, choices: [32, 64, 128]}
  dropout:    {type: float, low: 0.0, high: 0.5}
"""


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(SPACE)
    return tmp_path


def tune(*args):
    return invoke("tune", "--space", "s.yaml", "--root", "studies", "--pruner", "none", "--device", "cpu", "--json",
                  *args)


def refused(result, *parts: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for p in parts:
        assert p in err, (p, err)
    return err


def trials(name: str):
    return open_study(name, root="studies").get_trials(deepcopy=False)


# ----------------------------------------------------------------------------- the textbook defaults


def test_the_defaults_are_trainconfig_s_with_the_space_s_middle_clipped_in():
    base = TrainConfig()
    start = warmstart.defaults(parse_space(yaml.safe_load(SPACE)))
    assert start.params == {"lr": base.lr, "width": round(math.sqrt(8 * 32)), "depth": 2, "optimizer": "adam",
                            "one_minus_beta2": pytest.approx(1 - base.beta2), "batch_size": base.batch_size,
                            "dropout": 0.0}
    assert "beta" not in start.params  # momentum's beta is inactive under adam
    assert start.source == "defaults" and "textbook defaults" in start.why and "clipped" not in start.why


def test_defaults_outside_the_space_are_clipped_and_the_reason_says_so():
    doc = {"params": {"lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
                      "batch_size": {"type": "categorical", "choices": [16, 32]},
                      "optimizer": {"type": "categorical", "choices": ["sgd", "momentum"]},
                      "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}}}
    start = warmstart.defaults(parse_space(doc))
    assert start.params == {"lr": 0.01, "batch_size": 32, "weight_decay": 1e-5}  # no adam offered: sampled
    assert "lr 0.001 → 0.01" in start.why and "batch_size 64 → 32" in start.why and "weight_decay 0 → 1e-05" in start.why


def test_a_new_study_s_first_trial_is_the_defaults_and_says_why(ws):
    ok_json(tune("--study", "a", "--trials", "2"))
    first = trials("a")[0]
    expected = warmstart.defaults(load_space("s.yaml"))
    assert first.params == expected.params
    assert first.user_attrs["enqueued"] == "defaults" and first.user_attrs["enqueued_why"] == expected.why
    from tunectl.results import trial_records

    record = trial_records(open_study("a", root="studies"))[0]  # params rebuilt from the trial (results.py)
    assert record["params"]["beta2"] == pytest.approx(TrainConfig().beta2)  # back on its own scale
    assert "enqueued" not in trials("a")[1].user_attrs  # the sampler's own choice next
    # resuming does not enqueue the defaults again
    ok_json(tune("--study", "a", "--trials", "3"))
    assert [t.user_attrs.get("enqueued") for t in trials("a")] == ["defaults", None, None]


def test_no_defaults_first_leaves_the_first_trial_to_the_sampler(ws):
    ok_json(tune("--study", "b", "--trials", "1", "--no-defaults-first"))
    first = trials("b")[0]
    assert "enqueued" not in first.user_attrs
    assert first.params != warmstart.defaults(load_space("s.yaml")).params


# ----------------------------------------------------------------------------- --enqueue FILE


def test_enqueued_files_run_first_in_order_after_the_defaults(ws, tiny_study):
    from tunectl import runs
    from tunectl.data import DataSettings

    # export's params.yaml (every TrainConfig field, a data: section) and a plain YAML of values
    (ws / "export.yaml").write_text(runs.params_text(TrainConfig(lr=0.02, width=16, depth=3, optimizer="momentum",
                                                                 beta=0.85, batch_size=128), DataSettings("digits")))
    (ws / "plain.yaml").write_text("lr: 0.0005\ndepth: 1\n")
    ok_json(tune("--study", "c", "--trials", "3", "--enqueue", "export.yaml", "--enqueue", "plain.yaml"))
    t = trials("c")
    assert [x.user_attrs.get("enqueued") for x in t] == ["defaults", "file:export.yaml", "file:plain.yaml"]
    assert t[1].params == {"lr": 0.02, "width": 16, "depth": 3, "optimizer": "momentum", "beta": 0.85,
                           "batch_size": 128, "dropout": 0.0}
    assert t[2].params["lr"] == 0.0005 and t[2].params["depth"] == 1
    assert "the sampler chooses" in t[2].user_attrs["enqueued_why"]  # width, optimizer, ... were not in the file


@pytest.mark.parametrize("text, parts", [
    ("lr: 0.5\n", ["--enqueue bad.yaml", "lr = 0.5 is outside the space", "0.0001 to 0.1 (log)"]),
    ("batch_size: 48\n", ["batch_size = 48", "one of 32, 64, 128"]),
    ("depth: 2.5\n", ["depth = 2.5", "1 to 3"]),
    ("momentum: 0.9\n", ["names none of the space's parameters"]),
    ("- lr: 0.01\n", ["expected a mapping"]),
    ("lr: [0.01\n", ["YAML"]),
])
def test_an_enqueued_value_outside_the_space_is_refused_naming_it_and_writes_nothing(ws, text, parts):
    (ws / "bad.yaml").write_text(text)
    refused(tune("--study", "d", "--trials", "1", "--enqueue", "bad.yaml"), *parts)
    assert not (ws / "studies").exists()


def test_enqueue_refuses_a_missing_file_a_folder_and_a_grid(ws):
    refused(tune("--study", "d", "--enqueue", "nope.yaml"), "no such file")
    refused(tune("--study", "d", "--enqueue", "."), "is a folder")
    (ws / "ok.yaml").write_text("lr: 0.01\n")
    refused(tune("--study", "d", "--enqueue", "ok.yaml", "--sampler", "grid"), "grid")
    assert not (ws / "studies").exists()


def test_enqueue_on_a_resumed_study_runs_next_and_says_so(ws):
    ok_json(tune("--study", "e", "--trials", "1"))
    (ws / "next.yaml").write_text("lr: 0.03\n")
    r = tune("--study", "e", "--trials", "2", "--enqueue", "next.yaml")
    assert r.exit_code == 0, r.stderr
    assert "1 enqueued trial run next" in r.stderr
    assert trials("e")[1].params["lr"] == 0.03


# ----------------------------------------------------------------------------- --warm-from STUDY


def test_warm_from_enqueues_the_other_study_s_best_trials_in_order(ws, tiny_study):
    shutil.copytree(tiny_study.root, ws / "studies")
    old = sorted((t for t in trials(tiny_study.name) if t.value is not None), key=lambda t: (t.value, t.number))
    ok_json(tune("--study", "w", "--trials", "3", "--warm-from", tiny_study.name, "--warm-top", "2"))
    t = trials("w")
    assert [x.user_attrs.get("enqueued") for x in t] == ["defaults", *(f"study:{tiny_study.name}#{o.number}"
                                                                       for o in old[:2])]
    for new, o in zip(t[1:], old[:2]):
        # the spaces overlap in lr (both) and width (2-4 there, 8-32 here: clipped up to 8); the rest is sampled
        assert new.params["lr"] == pytest.approx(o.params["lr"])
        assert new.params["width"] == 8 and f"width {o.params['width']} → 8" in new.user_attrs["enqueued_why"]


def test_warm_from_refusals_write_nothing(ws, tiny_study):
    shutil.copytree(tiny_study.root, ws / "studies")
    before = sorted(p.name for p in (ws / "studies").iterdir())
    refused(tune("--study", "x", "--warm-from", "no-such"), "--warm-from no-such: no study storage")
    refused(tune("--study", "x", "--warm-from", "x"), "is this study itself")
    refused(tune("--study", "x", "--warm-from", tiny_study.name, "--warm-top", "0"), "--warm-top 0")
    (ws / "other.yaml").write_text("dataset: digits\nepochs: 1\nparams:\n  dropout: {type: float, low: 0.0, high: 0.5}\n")
    r = invoke("tune", "--space", "other.yaml", "--root", "studies", "--study", "x", "--warm-from", tiny_study.name)
    refused(r, "share no parameter")
    assert sorted(p.name for p in (ws / "studies").iterdir()) == before


def test_next_space_says_it_can_warm_start_from_its_study(ws, tiny_study):
    shutil.copytree(tiny_study.root, ws / "studies")
    r = invoke("diagnose", tiny_study.name, "--root", "studies", "--next-space", "next.yaml", "--json")
    assert r.exit_code == 0, r.stderr
    text = (ws / "next.yaml").read_text()
    header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
    assert f"--warm-from {tiny_study.name}" in header and "next.yaml" in header
    assert text.startswith(header)  # the comments are the file's header


# ----------------------------------------------------------------------------- the search-efficiency benchmark


def _search_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "search_efficiency.py"
    spec = importlib.util.spec_from_file_location("search_efficiency", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_search_bench_counts_epochs_and_repeats(tmp_path, monkeypatch):
    """bench/search_efficiency.py spends its budget in epochs the trials really trained (a budget that never
    runs out once broke it), starts the default with the textbook defaults, repeats itself exactly (a fixed
    study name seeds Hyperband's brackets), and --stop-at-match ends a search once it matched and ran EARLY."""
    bench = _search_bench()
    space = tmp_path / "s.yaml"
    space.write_text("model: mlp\ndataset: digits\nepochs: 2\nparams:\n"
                     "  lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"
                     "  width: {type: int, low: 8, high: 32, log: true}\n")
    task = {"name": "digits", "seed": 0, "budget": 7, "space": str(space), "data": {"dataset": "digits"},
            "train_fraction": 1.0}
    import torch

    threads = torch.get_num_threads()  # search() sets one thread for itself: give the suite its own back
    try:
        rand = bench.search({**task, "method": "random"})
        assert [r["used"] for r in rand["log"]] == [2, 4, 6, 8]  # 2 epochs a trial, none pruned, stops at >= 7
        assert all(r["state"] == "COMPLETE" and 0 < r["se"] < 0.05 for r in rand["log"])
        first = bench.search({**task, "method": "default"})
        assert first["log"][0]["params"] == warmstart.defaults(load_space(str(space))).params
        again = bench.search({**task, "method": "default"})
        assert [(r["state"], r["value"], r["used"]) for r in again["log"]] == \
               [(r["state"], r["value"], r["used"]) for r in first["log"]]
        monkeypatch.setattr(bench, "EARLY", 3)
        stopped = bench.search({**task, "method": "default", "stop_below": 1.0})  # any complete trial matches
        assert [r["used"] for r in stopped["log"]] == [2, 4] and stopped["stopped_at"] == 4
    finally:
        torch.set_num_threads(threads)
    assert bench.epochs_to_reach(rand["log"], min(r["value"] for r in rand["log"])) in (2, 4, 6, 8)
    # the best beyond a search's early end is unknown, not the best before it
    log = [*stopped["log"], {"used": 5, "state": "UNKNOWN", "value": None}]
    assert bench.best_within(log, 4) == min(r["value"] for r in stopped["log"]) and bench.best_within(log, 8) is None
