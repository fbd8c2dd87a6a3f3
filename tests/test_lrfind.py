"""`tunectl lr-find`: the learning-rate range test on real data, its suggestion against what a study finds,
the plot and the next space it writes, your own model, and its refusals (one line, exit 2, nothing written)."""

from __future__ import annotations

import functools
import pytest
import yaml

import conftest
from conftest import ok_json
from tunectl.config import TrainConfig
from tunectl.data import DataSettings, load_splits
from tunectl.lrfind import range_test, suggest
from tunectl.space import find_space, load_space

invoke = functools.partial(conftest.invoke, env={"COLUMNS": "200"})


def test_the_lr_grows_exponentially_and_the_range_is_a_decade_below_the_minimum(digits):
    r = range_test(TrainConfig(), load_splits(DataSettings("digits"), include_test=False), 1e-6, 1.0, 60, "cpu")
    lrs = [row["lr"] for row in r["curve"]]
    ratio = (1.0 / 1e-6) ** (1 / 60)
    assert lrs[0] == pytest.approx(1e-6) and all(b / a == pytest.approx(ratio) for a, b in zip(lrs, lrs[1:]))
    skip = max(1, len(r["curve"]) // 10)
    low = min(r["curve"][skip:], key=lambda row: row["smoothed"])
    assert r["lr_at_min"] == low["lr"] and r["range"] == [pytest.approx(low["lr"] / 100), pytest.approx(low["lr"] / 10)]
    # the smoothed loss is the bias-corrected moving average of the mini-batch losses
    avg = 0.0
    for i, row in enumerate(r["curve"]):
        avg = 0.98 * avg + 0.02 * row["loss"]
        assert row["smoothed"] == pytest.approx(avg / (1 - 0.98 ** (i + 1)))


def test_suggest_needs_a_curve():
    assert suggest([{"lr": 1.0, "smoothed": 1.0}] * 3)["range"] is None


def test_lr_find_on_digits_brackets_the_lr_a_20_trial_study_finds_best(tmp_path):
    (tmp_path / "lr.yaml").write_text("dataset: digits\nepochs: 4\nparams:\n  lr: {type: float, low: 1.0e-5, high: 1.0, "
                                      "log: true}\nfixed:\n  optimizer: adam\n  batch_size: 64\n")
    tuned = ok_json(invoke("tune", "--space", tmp_path / "lr.yaml", "--root", tmp_path / "s", "--trials", "20",
                           "--pruner", "none", "--no-defaults-first", "--json"))
    best_lr = tuned["best"]["params"]["lr"]
    found = ok_json(invoke("lr-find", "--dataset", "digits", "--set", "optimizer=adam", "--json"))
    low, high = found["range"]
    assert low <= best_lr <= high, (low, best_lr, high)


def test_the_plot_and_the_next_space(tmp_path):
    r = invoke("lr-find", "--space", "quick", "--plot", tmp_path / "lr.png", "--next-space", tmp_path / "next.yaml")
    assert r.exit_code == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "search lr" in text and "one decade below it" in text
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    nxt, quick = load_space(tmp_path / "next.yaml"), load_space(find_space("quick"))
    spec = nxt.params["lr"]
    assert spec["log"] and f"search lr {spec['low']:.3g}–{spec['high']:.3g}" in text
    assert {k: v for k, v in nxt.params.items() if k != "lr"} == {k: v for k, v in quick.params.items() if k != "lr"}
    assert "tunectl lr-find" in (tmp_path / "next.yaml").read_text().splitlines()[0]


def test_without_a_space_the_next_space_searches_lr_around_the_config(tmp_path):
    ok_json(invoke("lr-find", "--set", "optimizer=momentum", "--set", "width=32", "--next-space", tmp_path / "n.yaml",
                   "--json", "--steps", "30"))
    doc = yaml.safe_load((tmp_path / "n.yaml").read_text())
    assert list(doc["params"]) == ["lr"] and doc["fixed"] == {"width": 32, "optimizer": "momentum"}


def test_your_own_model(tmp_path):
    (tmp_path / "net.py").write_text("import torch.nn as nn\n\ndef build(input_shape, out_dim, hidden=16):\n"
                                     "    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), "
                                     "nn.Linear(hidden, out_dim))\n")
    r = ok_json(invoke("lr-find", "--model", f"{tmp_path / 'net.py'}:build", "--steps", "40", "--json"))
    assert r["model"].endswith("net.py:build") and r["range"][0] < r["range"][1]


EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples"


def test_a_recurrent_net_on_text_and_on_image_rows():
    """`--sequence` (a CSV's text column, read as characters: token ids) and `--as-sequence` reach the data,
    and the recurrent net reads tokens through its embedding (the vocabulary reaches the model)."""
    for args in (["-d", f"csv:{EXAMPLES / 'dna.csv'}", "--target", "label", "--sequence", "seq"],
                 ["-d", "digits", "--as-sequence"]):
        r = ok_json(invoke("lr-find", *args, "-m", "rnn", "--set", "cell=gru", "--set", "hidden=16", "--steps", "30",
                           "--json"))
        assert r["model"] == "rnn" and r["range"][0] < r["range"][1], r


def test_a_table_with_its_options():
    """The table options reach the data: a column dropped, one read as categories, incomplete rows dropped;
    a column that is not there is refused in one line (exit 2)."""
    table = f"csv:{EXAMPLES / 'penguins.csv'}"
    r = ok_json(invoke("lr-find", "-d", table, "--target", "species", "--drop", "island", "--categorical", "year",
                       "--dropna", "--steps", "30", "--json"))
    assert r["range"][0] < r["range"][1]
    bad = invoke("lr-find", "-d", table, "--target", "species", "--drop", "nosuch")
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1 and "nosuch" in bad.stderr, bad.stderr


@pytest.mark.parametrize("args, part", [
    (["--steps", "5"], "--steps 5"),
    (["--start", "0"], "--start 0"),
    (["--start", "1", "--end", "0.1"], "must be below --end"),
    (["--end", "nan"], "--end nan"),
    (["--set", "lr=banana"], "lr"),
    (["--device", "banana"], "--device banana"),
])
def test_bad_input_is_one_line(tmp_path, args, part):
    r = invoke("lr-find", *args, "--plot", tmp_path / "lr.png")
    assert r.exit_code == 2, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and part in err, err
    assert not (tmp_path / "lr.png").exists()


def test_output_paths_and_spaces_are_checked_before_the_run(tmp_path):
    (tmp_path / "f").write_text("")
    for args, part in ((["--plot", tmp_path], "is a folder"), (["--next-space", tmp_path / "f" / "x.yaml"], "is a file"),
                       (["--space", tmp_path / "none.yaml"], "no such search-space file")):
        r = invoke("lr-find", *args)
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and part in r.stderr, r.stderr
    (tmp_path / "fixed.yaml").write_text("params:\n  width: {type: int, low: 8, high: 16}\nfixed:\n  lr: 0.01\n")
    r = invoke("lr-find", "--space", tmp_path / "fixed.yaml", "--next-space", tmp_path / "n.yaml")
    assert r.exit_code == 2 and "fixes lr" in r.stderr and not (tmp_path / "n.yaml").exists()
