"""Adversarial examples (issue 16): FGSM raises a trained model's error and PGD at least as much, within
the eps-box and the images' range; `adv_eps` trains on FGSM points, is recorded and searched; `evaluate
--attack` records the robust error with the look, `report` shows it; bad inputs are one line, exit 2."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import invoke, ok_json
from test_hardening import snapshot
from tunectl import attacks
from tunectl.config import TrainConfig
from tunectl.train import evaluate, fit

CFG = TrainConfig(model="mlp", depth=1, width=64, lr=3e-3, epochs=10, seed=0)


@pytest.fixture(scope="module")
def trained(digits):
    return fit(CFG, digits).model


def attacked_error(model, splits, attack: str, eps: float, steps: int | None = None) -> float:
    bounds = attacks.image_bounds(splits.x_train, splits.is_image)
    x_adv = attacks.perturb(model, splits.x_dev, splits.y_dev, splits.task, attack, eps, steps, bounds)
    return evaluate(model, x_adv, splits.y_dev, splits.task)["error"]


def test_fgsm_raises_the_error_and_pgd_at_least_as_much(trained, digits):
    clean = evaluate(trained, digits.x_dev, digits.y_dev, digits.task)["error"]
    fgsm = attacked_error(trained, digits, "fgsm", 0.1)
    pgd = attacked_error(trained, digits, "pgd", 0.1, 10)
    assert fgsm > clean + 0.02  # a tenth of a standard deviation per pixel is enough to fool it more often
    assert pgd >= fgsm
    assert attacked_error(trained, digits, "fgsm", 0.3) > fgsm  # a larger budget, a larger error


def test_the_attacks_stay_in_the_eps_box_and_the_image_range(trained, digits):
    x, y = digits.x_dev[:200], digits.y_dev[:200]
    lo, hi = attacks.image_bounds(digits.x_train, True)
    assert lo == float(digits.x_train.min()) and hi == float(digits.x_train.max())
    for attack in ("fgsm", "pgd"):
        x_adv = attacks.perturb(trained, x, y, "multiclass", attack, 0.25, 5, (lo, hi))
        assert (x_adv - x).abs().max() <= 0.25 + 1e-6
        assert x_adv.min() >= lo and x_adv.max() <= hi
    # FGSM's point is exactly the sign step, where the bounds allow it
    x_adv = attacks.perturb(trained, x, y, "multiclass", "fgsm", 0.25)
    moved = (x_adv - x).abs()
    assert torch.allclose(moved[moved > 0], torch.full_like(moved[moved > 0], 0.25))


def test_regression_and_binary_tasks_are_attacked_too(diabetes, breast_cancer):
    for splits in (diabetes, breast_cancer):
        model = fit(TrainConfig(model="mlp", depth=1, width=32, lr=3e-3, epochs=15), splits).model
        clean = evaluate(model, splits.x_dev, splits.y_dev, splits.task, splits.y_scale)["error"]
        x_adv = attacks.perturb(model, splits.x_dev, splits.y_dev, splits.task, "pgd", 0.3, 5)
        assert evaluate(model, x_adv, splits.y_dev, splits.task, splits.y_scale)["error"] > clean


def test_adv_eps_training_lowers_the_fgsm_error(digits, trained):
    """The paper's regularizer: half the loss on FGSM points. Its model is harder to fool at that eps."""
    robust = fit(CFG.replace(adv_eps=0.1), digits).model
    assert attacked_error(robust, digits, "fgsm", 0.1) < attacked_error(trained, digits, "fgsm", 0.1)


def test_eps_in_the_inputs_own_units(digits, iris):
    std = digits.x_scale.flatten()
    assert attacks.in_input_units(0.1, digits.x_scale) == pytest.approx(0.1 * float(std[0]))
    units = attacks.in_input_units(0.1, iris.x_scale)
    assert units["min"] == pytest.approx(0.1 * float(iris.x_scale.min()))
    assert units["max"] == pytest.approx(0.1 * float(iris.x_scale.max()))


SPACE = """\
model: mlp
dataset: digits
epochs: 6
params:
  adv_eps: {type: categorical, choices: [0.0, 0.1]}
fixed:
  depth: 1
  width: 32
  lr: 0.003
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("adv")
    (root / "space.yaml").write_text(SPACE)
    out = ok_json(invoke("tune", "--space", root / "space.yaml", "--sampler", "grid", "--trials", "2", "--pruner",
                         "none", "--root", root / "studies", "--study", "adv", "--json", cwd=root))
    return root, out


def test_adv_eps_is_searched_and_recorded(study):
    root, out = study
    trials = out.get("trials") or out.get("leaderboard")
    assert sorted(t["params"]["adv_eps"] for t in trials) == [0.0, 0.1]
    shown = ok_json(invoke("show", "adv", "--root", root / "studies", "--json"))
    assert "adv_eps" in json.dumps(shown)


def test_evaluate_attack_is_recorded_with_the_look_and_reported(study, tmp_path):
    root, _ = study
    studies = tmp_path / "studies"
    shutil.copytree(root / "studies", studies)
    fg = ok_json(invoke("evaluate", "adv", "--root", studies, "--attack", "fgsm", "--eps", "0.1", "--json"))
    pg = ok_json(invoke("evaluate", "adv", "--root", studies, "--attack", "pgd", "--eps", "0.1", "--steps", "5",
                        "--json"))
    assert fg["attack"]["name"] == "fgsm" and fg["attack"]["steps"] is None and pg["attack"]["steps"] == 5
    assert fg["attack"]["clean_test_error"] == fg["test_error"] == pg["test_error"]
    assert pg["attack"]["test_error"] >= fg["attack"]["test_error"] > fg["test_error"]
    looks = json.loads((studies / "adv" / "evaluations.json").read_text())
    assert [lk["attack"] for lk in looks] == [fg["attack"], pg["attack"]]  # one record per look, full precision
    assert fg["attack"]["eps_input"] > 0
    text = invoke("evaluate", "adv", "--root", studies, "--attack", "fgsm", "--eps", "0.1", env={"COLUMNS": "200"})
    assert text.exit_code == 0 and "under FGSM" in text.stdout and "eps 0.1 (standard deviations;" in text.stdout
    assert invoke("report", "adv", "--root", studies).exit_code == 0
    html = (studies / "adv" / "report.html").read_text()
    assert "test error under attack" in html and f"{pg['attack']['test_error']:.4f}" in html


@pytest.mark.parametrize("args,message", [
    (["--attack", "fgsm"], "--attack fgsm needs --eps"),
    (["--attack", "fgsm", "--eps", "-1"], "--eps -1.0: must be a number in (0, 10]"),
    (["--attack", "fgsm", "--eps", "nan"], "--eps nan: must be a number"),
    (["--attack", "pgd", "--eps", "100"], "--eps 100.0: must be a number"),
    (["--eps", "0.1"], "--eps is for an adversarial evaluation"),
    (["--steps", "3"], "--steps is for an adversarial evaluation"),
    (["--attack", "fgsm", "--eps", "0.1", "--steps", "3"], "--steps is for --attack pgd"),
    (["--attack", "pgd", "--eps", "0.1", "--steps", "0"], "--steps 0: must be a whole number"),
    (["--attack", "cw", "--eps", "0.1"], "--attack 'cw' is not one of"),
])
def test_bad_attack_inputs_are_one_line_exit_2_nothing_written(study, tmp_path, args, message):
    root, _ = study
    shutil.copytree(root / "studies", tmp_path / "studies")
    before = snapshot(tmp_path)
    result = invoke("evaluate", "adv", "--root", tmp_path / "studies", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert snapshot(tmp_path) == before


def test_adv_eps_bad_values(tmp_path):
    for value, message in (("-0.1", "adv_eps=-0.1: must be in [0, 10]"), ("11", "adv_eps=11.0: must be in [0, 10]"),
                           ("nan", "adv_eps: must be a finite number"), ("x", "adv_eps: expected float")):
        result = invoke("train", "-d", "iris", "--set", f"adv_eps={value}", "--out", tmp_path / "r", cwd=tmp_path)
        assert result.exit_code == 2 and message in result.stderr and not (tmp_path / "r").exists(), result.stderr


def test_an_attack_on_token_inputs_is_refused_before_any_look(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, size=(120, 6))
    np.savez(tmp_path / "tok.npz", x=x, y=(x == 3).any(1).astype(np.int64))
    (tmp_path / "space.yaml").write_text("model: rnn\nepochs: 1\nparams:\n  lr: {type: float, low: 0.001, high: 0.01}\n"
                                         "fixed:\n  hidden: 4\n  depth: 1\n")
    ok_json(invoke("tune", "--space", tmp_path / "space.yaml", "-d", f"npz:{tmp_path / 'tok.npz'}", "--as-sequence",
                   "--trials", "1", "--root", tmp_path / "studies", "--study", "t", "--json"))
    before = snapshot(tmp_path)
    result = invoke("evaluate", "t", "--root", tmp_path / "studies", "--attack", "fgsm", "--eps", "0.1")
    assert result.exit_code == 2 and "reads token ids" in result.stderr and len(result.stderr.splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_adv_eps_on_images_held_as_bytes_trains_as_on_floats(tmp_path, write_mnist):
    """adv_eps on MNIST read as bytes (pixels.Rows, scaled per mini-batch): the image bounds and the
    FGSM points are the float path's, so the curve is the same to the bit."""
    from tunectl.data import DataSettings, load_splits

    write_mnist(tmp_path / "MNIST", n_train=60, n_test=20)
    settings = DataSettings.from_dict({"dataset": "mnist", "data_dir": str(tmp_path)})
    raw, floats = load_splits(settings, raw=True), load_splits(settings)
    assert type(raw.x_train).__name__ == "Rows" and isinstance(floats.x_train, torch.Tensor)
    assert attacks.image_bounds(raw.x_train, True) == attacks.image_bounds(floats.x_train, True)
    cfg = TrainConfig(model="mlp", width=16, depth=1, epochs=2, batch_size=16, adv_eps=0.1)
    a, b = fit(cfg, raw, device="cpu"), fit(cfg, floats, device="cpu")
    assert [r["train_loss"] for r in a.curve] == [r["train_loss"] for r in b.curve]
    assert a.dev_error == b.dev_error
