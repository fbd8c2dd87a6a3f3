"""`make tune`'s own command, then `evaluate`, `evaluate --refit` and `report` on what it made, for real.

One module fixture runs the Makefile's `tune` command as written (its space, its data set), with
`--trials 3` instead of 30, in a temporary working folder; then the real `evaluate` (twice: once
as tuned, once with --refit) and the real `report`, which therefore reads what evaluate wrote.
While the report renders, each figure object is captured before it becomes a PNG, so the tests
check what each figure shows (trials plotted, axes' parameters), not just that an image exists.
The numbers are checked against values computed here from the same files (checkpoints, the
study's split), never against numbers read off an earlier run. About 30-40 s on 2 cores.
"""

from __future__ import annotations

import json
import re
import shlex
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from conftest import invoke, ok_json

REPO = Path(__file__).resolve().parents[1]


def make_tune_command() -> list[str]:
    """The arguments of the Makefile's `tune:` recipe after `tunectl`."""
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^tune:.*\n\t(.+)$", text, re.M)
    assert recipe, "the Makefile has no tune: recipe"
    words = shlex.split(recipe.group(1))
    assert words[0].endswith("tunectl"), words
    return words[1:]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    import tunectl.html_report as H
    import tunectl.train as T

    tmp = tmp_path_factory.mktemp("make-tune")
    args = make_tune_command()
    i = args.index("--trials")
    args[i + 1] = "3"
    args = [str(REPO / a) if a.endswith(".yaml") else a for a in args]  # the space, from the repository
    out: dict = {"args": args, "figures": {}, "seen": []}
    real_div, real_build = H._plotly_div, T.build_model

    def capture(fig, sid):
        out["figures"][sid] = fig  # the plotly figure the page draws, before it becomes a div
        return real_div(fig, sid)

    def counting_build(*a, **kw):
        """Count the examples each model is trained on (forward passes in training mode)."""
        model = real_build(*a, **kw)
        seen = [0]
        out["seen"].append(seen)
        model.register_forward_hook(lambda m, inp, o: seen.__setitem__(0, seen[0] + len(inp[0])) if m.training
                                    else None)
        return model

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # the Makefile runs in the repository; here studies/ lands in tmp
        out["tune"] = ok_json(invoke(*args, "--device", "cpu", "--json"))
        out["eval"] = ok_json(invoke("evaluate", out["tune"]["study"], "--device", "cpu", "--json"))
        mp.setattr(T, "build_model", counting_build)
        out["refit"] = ok_json(invoke("evaluate", out["tune"]["study"], "--refit", "--device", "cpu", "--json"))
        mp.setattr(T, "build_model", real_build)
        mp.setattr(H, "_plotly_div", capture)
        result = invoke("report", out["tune"]["study"])
        assert result.exit_code == 0, (result.stderr, result.exception)
    out["cwd"], out["root"] = tmp, tmp / "studies"
    out["folder"] = tmp / "studies" / out["tune"]["study"]
    out["html"] = (out["folder"] / "report.html").read_text()
    return out


def study_splits(made):
    from tunectl.evaluate import study_splits as rebuild
    from tunectl.results import ATTR, open_study

    meta = open_study(made["tune"]["study"], None, made["root"]).user_attrs[ATTR]
    return rebuild(meta, include_test=True)


def sample_by_hand(n_train: int, n_dev: int, seed: int) -> torch.Tensor:
    """The training examples a train error is measured on: min(dev, train, 10,000) of them, a
    permutation seeded by the split seed, in index order (issue 15)."""
    k = min(n_dev, n_train, 10_000)
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:k].sort().values


def error_by_hand(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The test error computed here: argmax of the logits against the labels, no tunectl helper."""
    model.eval()
    with torch.no_grad():
        wrong = int((model(x).argmax(1) != y).sum())
    return wrong / len(y)


# ----------------------------------------------------------------------------- make tune


@pytest.mark.slow
def test_make_tune_runs_its_own_space_on_digits(made):
    from tunectl.space import load_space
    from tunectl.results import ATTR, open_study

    assert made["args"][:4] == ["tune", "--space", str(REPO / "searchspaces/quick.yaml"), "--dataset"]
    doc = made["tune"]
    assert doc["study"] == "digits-quick" and doc["dataset"] == "digits"
    assert doc["n_trials"] == 3 and doc["states"]["COMPLETE"] + doc["states"]["PRUNED"] == 3
    assert doc["states"]["FAIL"] == 0
    st = open_study("digits-quick", None, made["root"])
    meta = st.user_attrs[ATTR]
    assert (meta["sampler"], meta["pruner"]) == ("tpe", "hyperband")  # the README's defaults
    space = load_space(REPO / "searchspaces/quick.yaml")
    assert meta["space"]["params"] == space.params and meta["space"]["epochs"] == space.epochs == 12
    assert meta["manifest"]["sizes"] == {"train": 1079, "dev": 359, "test": 359}  # the README's split of digits
    for t in st.trials:  # each trial's configuration is inside the space, and ran at most its epochs
        assert set(t.params) <= set(space.params)
        assert 1 <= len(t.intermediate_values) <= 12


# ----------------------------------------------------------------------------- evaluate


@pytest.mark.slow
def test_test_error_equals_the_error_of_the_trials_weights_on_the_test_split(made):
    from tunectl.models import load_checkpoint, model_from_checkpoint

    doc = made["eval"]
    assert doc["trial"] == made["tune"]["best"]["number"] and doc["trained_on"] == "train"
    model, _ = model_from_checkpoint(load_checkpoint(made["cwd"] / doc["model"]))
    splits = study_splits(made)
    assert doc["test_error"] == pytest.approx(error_by_hand(model, *splits.test), abs=1e-12)
    assert doc["dev_error"] == pytest.approx(error_by_hand(model, splits.x_dev, splits.y_dev), abs=1e-12)
    # ... and the dev error of those weights is the one the trial recorded while tuning
    assert doc["dev_error"] == pytest.approx(made["tune"]["best"]["dev_error"], abs=1e-6)
    rows = sample_by_hand(len(splits.y_train), len(splits.y_dev), splits.manifest["seed"])
    assert doc["train_error"] == pytest.approx(error_by_hand(model, splits.x_train[rows], splits.y_train[rows]), abs=1e-12)
    assert doc["train_error"] == made["tune"]["best"]["train_error"]  # the trial's own, measured alike


@pytest.mark.slow
def test_refit_trains_on_train_plus_dev(made):
    from tunectl.models import load_checkpoint, model_from_checkpoint

    doc = made["refit"]
    sizes = made["tune"]["best"]  # the trial's config: its best epoch is the refit's epoch count
    epochs = sizes["best_epoch"]
    assert doc["refit"] and doc["trained_on"] == "train+dev" and doc["epochs"] == epochs
    n = doc["sizes"]["train"] + doc["sizes"]["dev"]
    assert made["seen"] == [[epochs * n]]  # one model, every train and dev example once per epoch
    assert doc["dev_error"] is None  # dev was trained on: no held-out number
    model, _ = model_from_checkpoint(load_checkpoint(made["cwd"] / doc["model"]))
    splits = study_splits(made)
    assert doc["test_error"] == pytest.approx(error_by_hand(model, *splits.test), abs=1e-12)
    both_x, both_y = torch.cat([splits.x_train, splits.x_dev]), torch.cat([splits.y_train, splits.y_dev])
    rows = sample_by_hand(len(both_y), len(splits.y_dev), splits.manifest["seed"])  # the sample of train+dev
    assert doc["train_error"] == pytest.approx(error_by_hand(model, both_x[rows], both_y[rows]), abs=1e-12)
    assert doc["evaluated_before"] and doc["evaluations"] == 2


# ----------------------------------------------------------------------------- the report


class Sections(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.text: dict[str, str] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self.current = None
        self.row: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.current = dict(attrs)["id"]
            self.text[self.current], self.rows[self.current] = "", []
        elif tag == "tr" and self.current:
            self.row = []
            self.rows[self.current].append(self.row)
        elif tag in ("td", "th") and self.row is not None:
            self.row.append("")

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None
        elif tag == "tr":
            self.row = None

    def handle_data(self, data):
        if self.current:
            self.text[self.current] += data + " "
            if self.row:
                self.row[-1] += data


@pytest.mark.slow
def test_report_reads_what_evaluate_wrote(made):
    from tunectl.report import fmt

    looks = json.loads((made["folder"] / "evaluations.json").read_text())
    assert [v["refit"] for v in looks] == [False, True]
    assert [v["test_error"] for v in looks] == [made["eval"]["test_error"], made["refit"]["test_error"]]
    rows = Sections(made["html"]).rows["evaluations"]
    assert rows[0] == ["time", "trial", "test error", "dev error", "train error", "refit on train+dev"]
    assert rows[1:] == [[v["time"], str(v["trial"]), fmt(v["test_error"]), fmt(v["dev_error"]), fmt(v["train_error"]),
                         "yes" if v["refit"] else "no"] for v in looks]
    assert "evaluated 2 times" in Sections(made["html"]).text["evaluations"]


@pytest.mark.slow
def test_glance_shows_every_row_the_readme_lists(made):
    """README: data set, split sizes, search space, sampler, pruner, trials by state, why trials
    stopped, wall time, epochs saved by pruning."""
    rows = {r[0]: r[1] for r in Sections(made["html"]).rows["glance"] if len(r) == 2}
    doc = made["tune"]
    assert rows["data set"] == "digits" and rows["split sizes"] == "train 1079, dev 359, test 359"
    assert rows["sampler"] == "tpe" and rows["pruner"] == "hyperband"
    s = doc["states"]
    assert rows["trials"] == (f"3: complete {s['COMPLETE']}, pruned {s['PRUNED']}, failed 0, running 0")
    from collections import Counter

    from tunectl.results import open_study

    reasons = Counter(t.user_attrs["reason"] for t in open_study("digits-quick", None, made["root"]).trials
                      if t.state.name == "PRUNED")
    assert rows["why trials stopped"] == ("; ".join(f"{k} ×{n}" for k, n in sorted(reasons.items())) or "-")
    assert rows["wall time"] not in ("", "-")
    saved, used = doc["epochs_saved"], doc["epochs_used"]
    assert rows["epochs saved by pruning"].split()[0] == str(saved)
    assert rows["epochs trained"].startswith(f"{used} (a trial may run 12)")
    # the search space table: one row per searched parameter of quick.yaml
    text = Sections(made["html"]).text["glance"]
    for param in ("lr", "width", "depth", "dropout", "batch_size", "optimizer", "beta"):
        assert re.search(rf"\b{param}\b", text), param


@pytest.mark.slow
def test_each_figure_plots_every_trial_on_the_right_axes(made):
    """The report's plotly figures, read from the figure objects: every trial where it belongs."""
    from tunectl.results import open_study, trial_records

    st = open_study("digits-quick", None, made["root"])
    complete = [t for t in st.trials if t.state.name == "COMPLETE"]
    stepped = [t for t in st.trials if t.intermediate_values]
    figs = made["figures"]
    # the defaults first can leave one complete trial (Hyperband prunes the rest): then no slice or parallel view
    drawn = {"history", "intermediate", "timeline", "curves", "diagnosis"} | (
        {"slice", "parallel"} if len(complete) >= 2 else set())
    assert set(figs) == drawn | ({"importances", "contour"} if len(complete) >= 5 else set())
    for sid in figs:  # each is drawn in the page, in its own div
        assert f'id="fig-{sid}"' in made["html"]

    history = figs["history"]
    assert history.layout.xaxis.title.text == "Trial" and history.layout.yaxis.title.text == "dev error rate"
    dots = history.data[0]
    assert sorted(zip(dots.x, dots.y)) == sorted((t.number, t.value) for t in complete)

    inter = figs["intermediate"]
    assert (inter.layout.xaxis.title.text, inter.layout.yaxis.title.text) == ("epoch", "dev error rate")
    assert {d.name: (list(d.x), list(d.y)) for d in inter.data} == {
        f"trial {t.number}": (sorted(t.intermediate_values), [t.intermediate_values[k] for k in sorted(t.intermediate_values)])
        for t in stepped}
    assert inter.layout.showlegend and all(d.showlegend for d in inter.data)  # the legend names each trial

    if len(complete) >= 2:
        sl = figs["slice"]
        params = sorted({p for t in complete for p in t.params})
        titles = [sl.layout[k].title.text for k in sl.layout if k.startswith("xaxis")]
        assert sorted(titles) == params  # one panel per parameter
        for trace, name in zip(sl.data, titles):
            assert len(trace.x) == sum(name in t.params for t in complete)

        par = figs["parallel"]
        assert par.layout.xaxis.ticktext[0] == "dev error rate" and set(par.layout.xaxis.ticktext[1:]) == set(params)
        assert len([d for d in par.data if d.mode == "lines"]) == len(complete)  # one line a complete trial
    else:
        assert 'id="fig-slice"' not in made["html"] and "at least 2 complete trials" in made["html"]

    records = trial_records(st, made["folder"])
    tl = figs["timeline"]
    assert sorted(n for d in tl.data for n, _ in d.customdata) == [r["number"] for r in records]
    assert {d.name for d in tl.data} == {r["state"].lower() for r in records}
    assert set(y for d in tl.data for y in d.y) == {r["worker"] for r in records}  # workers as lanes

    curves = figs["curves"]
    board = sorted(complete, key=lambda t: (t.value, t.number))[:4]
    by_number = {r["number"]: r for r in records}
    assert [d.name for d in curves.data] == [f"trial {t.number} {k}" for t in board for k in ("train", "dev")]
    for t in board:
        curve = by_number[t.number]["curve"]
        for k in ("train", "dev"):
            (d,) = [d for d in curves.data if d.name == f"trial {t.number} {k}"]
            assert (list(d.x), list(d.y)) == ([r["epoch"] for r in curve], [r[f"{k}_error"] for r in curve])
    assert [s["x0"] for s in curves.layout.shapes] == [by_number[t.number]["best_epoch"] for t in board]

    best = made["tune"]["best"]
    widths = [d.x[0] for d in figs["diagnosis"].data]
    assert widths == pytest.approx([0.0, best["train_error"], best["dev_error"] - best["train_error"]], abs=1e-12)
    assert figs["diagnosis"].layout.xaxis.title.text == "error rate"
