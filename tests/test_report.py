"""report.py, the terminal: what a user reads of each command's output, drawn into a recording
Console 120 columns wide (a terminal's), from plain dicts as the commands pass them.

The numbers come out as `fmt` writes them, names are never cut, verdicts read as words.
(The HTML report is tests/test_html_report.py.)
"""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from tunectl.diagnose import diagnose
from tunectl.report import (diagnosis_overview, diagnosis_panel, duration, evaluation, export_summary, fmt,
                            leaderboard, studies_table, train_summary, verdict_label)
from tunectl.results import importance_method, open_study, summarize

LONG_NAME = "csv-house-prices-2026-with-every-feature-and-a-name-nobody-would-want-to-type-twice"  # 84 characters


def render(draw, *args, width: int = 120, **kwargs) -> str:
    """What `draw(console, *args)` shows, as plain text (no colour codes)."""
    console = Console(record=True, width=width, file=io.StringIO())  # the file: nothing to the test's stdout
    draw(console, *args, **kwargs)
    return console.export_text()


def words(text: str) -> str:
    """The text with its table borders and line breaks as single spaces: what a reader follows."""
    return " ".join(text.replace("│", " ").replace("┃", " ").split())


# ----------------------------------------------------------------------------- the formatters


@pytest.mark.parametrize("value, shown", [
    (0.123456, "0.1235"), (0.05, "0.0500"), (0.0, "0.0000"), (12.5, "12.5000"), (-0.25, "-0.2500"),
    (0.000123, "1.23e-04"), (None, "-"), (math.nan, "-"), (math.inf, "-"), (-math.inf, "-"),
    (7, "7"), ("adam", "adam"), (True, "True"),
])
def test_fmt(value, shown):
    assert fmt(value) == shown


def test_fmt_digits():
    assert fmt(0.123456, 2) == "0.12" and fmt(1.5, 3) == "1.500" and fmt(0.0004, 2) == "4.00e-04"


@pytest.mark.parametrize("seconds, shown", [
    (None, "-"), (0, "0m00s"), (59.9, "0m59s"), (61, "1m01s"), (3599, "59m59s"), (3600, "1h00m"),
    (3661, "1h01m"), (90061, "25h01m"),
])
def test_duration(seconds, shown):
    assert duration(seconds) == shown


@pytest.mark.parametrize("verdict, label", [
    ("high_bias", "high bias"), ("high_variance", "high variance"),
    ("high_bias_high_variance", "high bias and high variance"), ("ok", "ok"),
    (None, "-"), ("something_new", "something new"),
])
def test_verdict_label(verdict, label):
    assert verdict_label(verdict) == label


# ----------------------------------------------------------------------------- train


def test_train_summary_shows_the_run():
    run = {"status": "complete", "best_epoch": 7, "epochs": 10, "train_error": 0.0123456, "dev_error": 0.0417,
           "epoch_seconds": 0.2346, "out": "studies/runs/digits-mlp-20260101-090000", "batch_size_used": 64}
    text = render(train_summary, run, "multiclass")
    assert "Run summary (error rate)" in text
    assert ("status complete best epoch 7 of 10 train error 0.0123 dev error 0.0417 batch size used 64 "
            "seconds / epoch 0.235 "
            "saved to studies/runs/digits-mlp-20260101-090000") in words(text)
    regression = words(render(train_summary, {**run, "train_error": 31.5, "dev_error": 40.25, "out": None},
                              "regression"))
    assert "Run summary (RMSE)" in regression
    assert "train error 31.5000 dev error 40.2500" in regression and "saved to -" in regression


# ----------------------------------------------------------------------------- show: the leaderboard


def cells(line: str) -> list[str]:
    """A table row's cells, stripped."""
    return [c.strip() for c in line.split("│")[1:-1]]


def rows_of(text: str) -> list[list[str]]:
    return [cells(line) for line in text.splitlines() if line.startswith("│")]


def summary(**changes):
    rows = [
        {"number": 4, "dev_error": 0.0306, "train_error": 0.0102, "epochs": 6,
         "params": {"lr": 0.003162, "width": 64, "optimizer": "adam"}},
        {"number": 1, "dev_error": 0.0417, "train_error": 0.0251, "epochs": 3,
         "params": {"lr": 0.000123, "width": 16, "optimizer": "momentum"}},
    ]
    s = {"study": "digits-night", "dataset": "digits", "n_trials": 5,
         "states": {"COMPLETE": 2, "PRUNED": 2, "FAIL": 1, "RUNNING": 0},
         "max_epochs": 6, "epochs_used": 14, "epochs_saved": 8, "leaderboard": rows,
         "best": {**rows[0], "best_epoch": 5}}
    return {**s, **changes}


def test_leaderboard_shows_counts_rows_best_and_importances():
    text = render(leaderboard, summary(importance_method=importance_method()),
                  {"lr": 0.7123, "width": 0.2, "optimizer": 0.0877}, {4: "high variance", 1: "high bias"})
    flat = words(text)
    assert "digits-night data digits trials 5: complete 2, pruned 2, failed 1, running 0" in flat
    assert "epochs trained 14; pruning saved 8 (a trial may run 6)" in flat
    assert "Leaderboard (dev error ± its standard error, lower is better)" in text
    rows = rows_of(text)
    assert rows[:2] == [  # best first; the verdicts as passed; small numbers in e-notation; no SE known: none shown
        ["1", "4", "0.0306", "0.0102", "6", "high variance", "lr=0.0032, width=64, optimizer=adam"],
        ["2", "1", "0.0417", "0.0251", "3", "high bias", "lr=1.23e-04, width=16, optimizer=momentum"]]
    assert ("Best trial 4: dev error 0.0306, train error 0.0102, best epoch 5; lr=0.0032, width=64, optimizer=adam"
            in flat)
    assert "Parameter importances (PED-ANOVA)" in text and "fANOVA" not in text  # the evaluator results uses
    assert "best 10% of complete trials" in flat  # and what its numbers mean
    importances = {r[0]: r[1:] for r in rows[2:]}
    assert {k: v[0] for k, v in importances.items()} == {"lr": "0.712", "width": "0.200", "optimizer": "0.088"}
    assert {k: len(v[1]) for k, v in importances.items()} == {"lr": 21, "width": 6, "optimizer": 3}  # importance x 30


def test_leaderboard_shows_standard_errors_the_near_best_mark_and_enqueued_trials():
    rows = summary()["leaderboard"]
    rows = [{**rows[0], "dev_error_se": 0.0081, "enqueued": "defaults"},
            {**rows[1], "dev_error_se": 0.0093, "within_noise": True}]
    text = render(leaderboard, summary(leaderboard=rows, best={**rows[0], "best_epoch": 5}))
    got = rows_of(text)
    assert got[0][:5] == ["1", "4*", "0.0306 ± 0.0081", "", "0.0102"]
    assert got[1][:5] == ["2", "1", "0.0417 ± 0.0093", "≈ best", "0.0251"]
    flat = words(text)
    assert "≈ best: 1 trial less than two standard errors" in flat and "tunectl recheck digits-night" in flat
    assert "* enqueued: tried first" in flat and "Best trial 4: dev error 0.0306 ± 0.0081" in flat


def test_leaderboard_without_verdicts_or_importances_and_without_a_complete_trial():
    text = render(leaderboard, summary())
    assert "diagnosis" not in text and "importances" not in text and "Best trial 4" in text
    # no trial within noise of the best: no "noise" column
    assert rows_of(text)[0] == ["1", "4", "0.0306", "0.0102", "6", "lr=0.0032, width=64, optimizer=adam"]
    assert "noise" not in text
    empty = render(leaderboard, summary(leaderboard=[], best=None,
                                        states={"COMPLETE": 0, "PRUNED": 2, "FAIL": 0, "RUNNING": 1}))
    assert "complete 0, pruned 2, failed 0, running 1" in words(empty)
    assert "No complete trial yet." in empty and "Leaderboard" not in empty and "Best trial" not in empty


def test_leaderboard_of_the_shared_study_shows_its_numbers(tiny_study):
    s = summarize(open_study(tiny_study.name, None, tiny_study.root))
    text = render(leaderboard, s)
    assert f"{tiny_study.name} data digits trials 3: complete 3, pruned 0, failed 0, running 0" in words(text)
    assert "epochs trained 6; pruning saved 0 (a trial may run 2)" in words(text)
    rows = rows_of(text)
    # an enqueued trial (the first: the textbook defaults) is starred
    assert [r[1] for r in rows] == [f"{r['number']}{'*' * bool(r['enqueued'])}" for r in s["leaderboard"]] \
        and len(rows) == 3
    near = any(row["within_noise"] for row in s["leaderboard"])  # the "noise" column only then
    for shown, row in zip(rows, s["leaderboard"]):
        assert shown[2] == f"{fmt(row['dev_error'])} ± {fmt(row['dev_error_se'])}"
        if near:
            assert shown.pop(3) == ("≈ best" if row["within_noise"] else "")
        assert shown[3:5] == [fmt(row["train_error"]), str(row["epochs"])]
        assert f"width={row['params']['width']}" in shown[5]
    assert f"Best trial {s['best']['number']}: dev error {fmt(s['best']['dev_error'])}" in text


# ----------------------------------------------------------------------------- studies


def study_row(name: str, complete=12, pruned=30, failed=1, running=2, best=0.0789, when="2026-01-01 09:00:00.123456"):
    return {"study": name, "dataset": "digits", "best_dev_error": best, "last_activity": when,
            "states": {"COMPLETE": complete, "PRUNED": pruned, "FAIL": failed, "RUNNING": running}}


def test_studies_table_shows_each_study_and_its_numbers():
    text = render(studies_table, [study_row("digits-night"), study_row("x", 0, 0, 0, 0, None, None)])
    rows = {r[0]: r for r in rows_of(text)}
    assert rows["digits-night"] == ["digits-night", "digits", "12", "30", "1", "2", "0.0789", "2026-01-01 09:00:00"]
    assert rows["x"] == ["x", "digits", "0", "0", "0", "0", "-", "-"]


def test_studies_table_never_cuts_a_name():
    """The study name is what the user types next: whole, on one line; the other columns give way."""
    text = render(studies_table, [study_row(LONG_NAME), study_row("x")])
    names = [r[0] for r in rows_of(text) if r[0]]
    assert names == [LONG_NAME, "x"]


def test_studies_table_marks_an_unreadable_study_and_says_why():
    text = render(studies_table, [study_row("good"), {"study": "bad", "unreadable": "not a readable SQLite file"}])
    rows = {r[0]: r for r in rows_of(text)}
    assert rows["bad"] == ["bad", "unreadable", "-", "-", "-", "-", "-", "-"]
    assert rows["good"][2] == "12"
    assert text.splitlines()[-1] == "bad: unreadable: not a readable SQLite file"


def test_studies_table_with_none_says_how_to_start():
    assert render(studies_table, []).strip() == "No studies yet: start one with `tunectl tune`."


# ----------------------------------------------------------------------------- diagnose


def test_diagnosis_panel_names_the_study_and_the_verdict():
    d = diagnose(0.01, 0.11, config={"width": 256, "depth": 3}, task="multiclass").to_dict()
    d["source"] = {"study": LONG_NAME[:40], "trial": 7}
    text = render(diagnosis_panel, d)
    assert f"diagnosis: study {LONG_NAME[:40]}, trial 7" in text
    flat = words(text)
    assert "train error 0.0100" in flat and "dev error 0.1100" in flat and "human-level error 0.0000" in flat
    assert "avoidable bias (train − human) 0.0100" in flat and "variance (dev − train) 0.1000" in flat
    assert "verdict: high variance" in flat and "actions" in flat and "1." in flat


def test_diagnosis_panel_shows_the_data_curve():
    d = diagnose(0.05, 0.2).to_dict()
    d["source"] = {"run": "runs/r1"}
    d["data_curve"] = [{"fraction": 0.25, "n_train": 270, "train_error": 0.01, "dev_error": 0.31},
                       {"fraction": 1.0, "n_train": 1079, "train_error": 0.05, "dev_error": 0.2}]
    text = render(diagnosis_panel, d)
    assert "diagnosis: run runs/r1" in text and "data curve" in text
    flat = words(text)
    assert "25% 270 0.0100 0.3100" in flat and "100% 1079 0.0500 0.2000" in flat


def test_diagnosis_overview_counts_and_labels_every_trial():
    d = {"study": "digits-night", "n_complete": 3, "bias_limited": 2, "variance_limited": 1, "human_error": 0.0,
         "thresholds": {"bias": 0.02, "variance": 0.02},
         "trials": [{"number": n, "dev_error": dv, "train_error": tr, "avoidable_bias": tr, "variance": dv - tr,
                     "diagnosis": v} for n, dv, tr, v in ((2, 0.05, 0.01, "high_variance"), (0, 0.3, 0.28, "high_bias"),
                                                         (1, 0.5, 0.4, "high_bias_high_variance"))],
         "counts": {"high_bias": 1, "high_variance": 1, "high_bias_high_variance": 1}}
    text = render(diagnosis_overview, d)
    flat = words(text)
    assert ("digits-night: 3 complete trials; bias-limited 2, variance-limited 1 (thresholds: bias 0.0200, "
            "variance 0.0200; human error 0.0000)") in flat
    assert "2 0.0500 0.0100 0.0100 0.0400 high variance" in flat
    assert "1 0.5000 0.4000 0.4000 0.1000 high bias and high variance" in flat
    assert "counts: high bias 1, high variance 1, high bias and high variance 1" in flat


# ----------------------------------------------------------------------------- evaluate and export


def look(**changes):
    r = {"study": "digits-night", "trial": 4, "task": "multiclass", "refit": False, "test_error": 0.0417,
         "dev_error": 0.0306, "train_error": 0.0102, "sizes": {"train": 1079, "dev": 359, "test": 359},
         "evaluations": 1, "record": "studies/digits-night/evaluations.json", "evaluated_before": False}
    return {**r, **changes}


def test_evaluation_shows_the_three_errors_and_where_the_look_is_recorded():
    text = render(evaluation, look())
    flat = words(text)
    assert "study digits-night, trial 4" in text and "refit" not in text
    assert "test error rate dev error rate train error rate" in flat
    assert "0.0417 0.0306 0.0102" in flat and "359 examples 359 examples 1079 examples" in flat
    assert "Look 1 at the test set, recorded in the study and in studies/digits-night/evaluations.json." in flat
    assert "Warning" not in text


def test_evaluation_of_a_refit_and_a_second_look():
    warning = "the test set was looked at 1 time before: it is no longer an unbiased estimate"
    text = render(evaluation, look(refit=True, dev_error=None, epochs=5, model="studies/digits-night/refit/model.pt",
                                   evaluations=2, evaluated_before=True, warning=warning, task="regression",
                                   test_error=31.5))
    flat = words(text)
    assert "study digits-night, trial 4 (refit on train+dev)" in flat
    assert "test RMSE dev RMSE train RMSE" in flat and "31.5000 trained on 0.0102" in flat
    assert "359 examples 359 examples 1438 examples" in flat  # train+dev: 1079 + 359
    assert "Refit on train+dev for 5 epochs" in flat and "Model: studies/digits-night/refit/model.pt" in flat
    assert f"Warning: {warning}." in flat


def test_export_summary_names_the_files_and_the_command():
    r = {"trial": 4, "study": "digits-night", "dev_error": 0.0306, "out": "export",
         "files": ["params.yaml", "model.pt", "split.json", "README.md"],
         "command": "tunectl train --params export/params.yaml"}
    flat = words(render(export_summary, r))
    assert ("Exported trial 4 of digits-night (dev error 0.0306) to export/: params.yaml, model.pt, split.json, "
            "README.md") in flat
    assert "Reproduce it with: tunectl train --params export/params.yaml" in flat


@pytest.mark.parametrize("width", [80, 100])
def test_leaderboard_wraps_between_parameters_never_inside_one(width):
    params = {"lr": 0.1549, "width": 223, "depth": 2, "dropout": 0.2358, "batch_size": 32, "optimizer": "momentum",
              "beta": 0.9325}
    rows = [{"number": 20, "dev_error": 0.0111, "train_error": 0.0046, "epochs": 12, "params": params}]
    text = render(leaderboard, summary(leaderboard=rows, best={**rows[0], "best_epoch": 7}),
                  None, {20: "high variance"}, width=width)
    cells = [line.split("│")[-2].strip() for line in text.splitlines() if line.startswith("│")]
    items = [item for cell in cells for item in cell.split()]
    expected = [f"{k}={v}" for k, v in params.items()]
    assert items == [e + "," for e in expected[:-1]] + expected[-1:], text  # each whole, in order
    assert len(cells) > 1 and max(len(line) for line in text.splitlines()) <= width  # wrapped, not cropped


@pytest.mark.parametrize("width", [80, 100])
def test_a_rechecked_leaderboard_with_near_best_trials_and_verdicts_fits_the_terminal(width):
    """Every optional column at once (≈ best, the new seeds' mean, the diagnosis): at 100 columns the table
    was cut at the terminal's edge, each error ± its standard error keeping a one-line-wide column. Each
    row's right border is there, and no value is cut."""
    params = {"lr": 0.1177, "width": 14, "depth": 2, "dropout": 0.0091, "batch_size": 32, "optimizer": "momentum",
              "beta": 0.8139}
    rows = [{"number": n, "dev_error": e, "dev_error_se": 0.0231, "within_noise": n != 8, "train_error": 0.0333,
             "epochs": 6, "params": params, "recheck": {"mean": 0.0444, "std": 0.0111}} for n, e in ((8, 0.0), (5, 0.0333))]
    text = render(leaderboard, summary(leaderboard=rows, best={**rows[0], "best_epoch": 5}), None,
                  {8: "ok", 5: "bias"}, width=width)
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= width and line.rstrip()[-1] in "┓┃┩│┘" for line in table), text
    body = [cells(line) for line in table if line.startswith("│")]
    whole = ",".join(f"{k}={v}" for k, v in params.items())
    assert "".join(row[-1] for row in body).replace(" ", "") == whole * 2  # every value there, in order
    if width == 100:  # room enough: each value whole, the errors on two lines
        items = " ".join(row[-1] for row in body).split()
        assert "optimizer=momentum," in items and "beta=0.8139" in items, text
        assert [row[2] for row in body[:2]] == ["0.0000 ±", "0.0231"], text
