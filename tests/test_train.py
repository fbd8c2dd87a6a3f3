"""fit(): optimizers, batch modes, task heads and their errors, determinism, divergence, stopping.

Every test is a tiny real run on a real (small) data set; nothing about training is mocked.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from tunectl.config import TrainConfig
from tunectl.sources import Dataset
from tunectl.data import make_splits
from tunectl.models import build_model
from tunectl.train import EVAL_BATCH, batch_size_for, evaluate, fit, make_optimizer, pick_device

CPU = "cpu"


# ----------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.1), ("momentum", 0.1), ("rmsprop", 1e-3), ("adam", 1e-3)])
def test_each_optimizer_learns(digits, optimizer, lr):
    hist = fit(TrainConfig(optimizer=optimizer, lr=lr, epochs=4, width=64), digits, device=CPU)
    losses = [row["train_loss"] for row in hist.curve]
    assert hist.status == "complete" and hist.epochs_run == 4
    assert all(b < a for a, b in zip(losses, losses[1:])), losses  # the loss falls every epoch
    assert losses[-1] < 0.5 * losses[0]
    # a baseline computed here: predicting the training split's most common class
    majority = torch.bincount(digits.y_train).argmax()
    baseline = (digits.y_dev != majority).float().mean().item()
    assert hist.dev_error < 0.25 * baseline, (hist.dev_error, baseline)


def test_optimizer_settings_reach_torch(digits):
    model = build_model(TrainConfig(), digits.input_shape, digits.out_dim)
    g = make_optimizer(TrainConfig(optimizer="momentum", lr=0.05, beta=0.8, weight_decay=1e-4), model).param_groups[0]
    assert (g["momentum"], g["dampening"], g["lr"], g["weight_decay"]) == (0.8, 0.8, 0.05, 1e-4)  # dampening=beta
    g = make_optimizer(TrainConfig(optimizer="rmsprop", beta=0.95, eps=1e-6), model).param_groups[0]
    assert (g["alpha"], g["eps"]) == (0.95, 1e-6)
    opt = make_optimizer(TrainConfig(optimizer="adam", beta1=0.85, beta2=0.99), model)
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["betas"] == (0.85, 0.99)
    opt = make_optimizer(TrainConfig(optimizer="sgd"), model)
    assert type(opt) is torch.optim.SGD and opt.param_groups[0]["momentum"] == 0


def test_momentum_is_an_exponentially_weighted_average():
    """v = beta*v + (1-beta)*dW: with a constant gradient the step is exactly lr*dW, whatever beta is
    (torch's plain momentum would accumulate to lr*dW/(1-beta))."""
    cfg = TrainConfig(optimizer="momentum", lr=0.1, beta=0.9, depth=0)
    model = build_model(cfg, (1,), 1)  # one weight, one bias
    with torch.no_grad():
        model.head.weight.fill_(0.0)
    opt = make_optimizer(cfg, model)
    for _ in range(5):
        opt.zero_grad()
        model(torch.ones(1, 1)).sum().backward()  # d/dw = 1, d/db = 1, every step
        opt.step()
    assert model.head.weight.item() == pytest.approx(-0.5, abs=1e-6)
    assert model.head.bias.item() == pytest.approx(-0.5, abs=1e-6)


# ----------------------------------------------------------------------------- batch modes


@pytest.mark.parametrize("batch_size, per_epoch", [(1, 90), (0, 1), (32, 3), (90, 1)])
def test_batch_modes(iris, batch_size, per_epoch):
    assert len(iris.x_train) == 90
    calls = []
    hist = fit(TrainConfig(batch_size=batch_size, epochs=2, width=8), iris, on_batch=lambda d, t: calls.append((d, t)),
               device=CPU)
    assert hist.epochs_run == 2
    assert calls == [(b, per_epoch) for b in range(1, per_epoch + 1)] * 2


def test_full_batch_gradient_descent_is_monotone(iris):
    """batch_size=0: one step per epoch on the whole training split; small-lr gradient descent on
    a convex problem (logistic regression, depth=0) lowers the loss every epoch."""
    cfg = TrainConfig(batch_size=0, optimizer="sgd", lr=0.1, depth=0, epochs=15)
    losses = [r["train_loss"] for r in fit(cfg, iris, device=CPU).curve]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert batch_size_for(cfg, 90) == 90


def test_batch_larger_than_the_training_split_is_the_full_batch(iris):
    """A mini-batch at least as large as the training split is batch gradient descent, not an error."""
    assert batch_size_for(TrainConfig(batch_size=128), 90) == 90
    assert batch_size_for(TrainConfig(batch_size=90), 90) == 90
    assert batch_size_for(TrainConfig(batch_size=89), 90) == 89
    big = fit(TrainConfig(epochs=2, batch_size=128), iris, device=CPU)
    full = fit(TrainConfig(epochs=2, batch_size=0), iris, device=CPU)
    assert big.batch_size_used == full.batch_size_used == 90 and big.to_dict()["batch_size_used"] == 90
    same = [{k: v for k, v in r.items() if k != "seconds"} for r in big.curve]
    assert same == [{k: v for k, v in r.items() if k != "seconds"} for r in full.curve]  # one step per epoch, both


# ----------------------------------------------------------------------------- task heads and errors


def test_binary_error_is_the_misclassification_rate(breast_cancer):
    hist = fit(TrainConfig(epochs=5, batch_size=16), breast_cancer, device=CPU)
    model = hist.model.eval()
    with torch.no_grad():
        predicted = (model(breast_cancer.x_dev).squeeze(1) > 0).long()
    wrong = (predicted != breast_cancer.y_dev).sum().item()
    assert hist.dev_error == pytest.approx(wrong / len(breast_cancer.y_dev))
    assert hist.dev_error < 0.1 and hist.train_error < 0.1
    assert all(0 <= r["train_error"] <= 1 and r["train_loss"] > 0 for r in hist.curve)


def test_multiclass_error_is_the_misclassification_rate(wine):
    hist = fit(TrainConfig(epochs=8, batch_size=16), wine, device=CPU)
    with torch.no_grad():
        predicted = hist.model.eval()(wine.x_dev).argmax(1)
    assert hist.dev_error == pytest.approx((predicted != wine.y_dev).float().mean().item())
    assert hist.dev_error < 0.15


def test_regression_error_is_rmse_in_target_units(diabetes):
    hist = fit(TrainConfig(epochs=20, lr=1e-2), diabetes, device=CPU)
    y_mean, y_scale = diabetes.manifest["scaling"]["y_mean"], diabetes.y_scale
    with torch.no_grad():
        predicted = hist.model.eval()(diabetes.x_dev).squeeze(1) * y_scale + y_mean
    actual = diabetes.y_dev * y_scale + y_mean  # back in the data set's units (disease progression 25..346)
    assert torch.allclose(actual, actual.round(), atol=1e-3) and 25 <= actual.min() and actual.max() <= 346
    rmse = torch.sqrt(((predicted - actual) ** 2).mean()).item()
    assert hist.dev_error == pytest.approx(rmse, rel=1e-4)
    # better than the mean predictor (the training targets' mean), computed here on the same dev split
    train_mean = (diabetes.y_train * y_scale + y_mean).mean()
    mean_rmse = torch.sqrt(((train_mean - actual) ** 2).mean()).item()
    assert hist.dev_error < 0.85 * mean_rmse, (hist.dev_error, mean_rmse)
    assert hist.dev_error < y_scale
    for row in hist.curve:  # the loss is the MSE on standardized targets = (RMSE / spread)^2
        assert row["dev_loss"] == pytest.approx((row["dev_error"] / y_scale) ** 2, rel=1e-4)


def test_evaluate_in_large_batches_matches_one_pass():
    torch.manual_seed(0)
    n = EVAL_BATCH * 2 + 17
    x, y = torch.randn(n, 5), torch.randint(0, 4, (n,))
    model = build_model(TrainConfig(width=8), (5,), 4)
    got = evaluate(model, x, y, "multiclass")
    with torch.no_grad():
        out = model(x)
    assert got["loss"] == pytest.approx(torch.nn.functional.cross_entropy(out, y).item(), rel=1e-5)
    assert got["error"] == pytest.approx((out.argmax(1) != y).float().mean().item())


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_run(digits, strip_seconds):
    cfg = TrainConfig(epochs=3, width=32, dropout=0.2)
    a, b = fit(cfg, digits, device=CPU), fit(cfg, digits, device=CPU)
    assert strip_seconds(a.curve) == strip_seconds(b.curve)
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    c = fit(cfg.replace(seed=1), digits, device=CPU)
    assert strip_seconds(c.curve) != strip_seconds(a.curve)


# ----------------------------------------------------------------------------- divergence and stopping


def test_divergence_is_a_status_not_an_exception(diabetes):
    seen = []
    hist = fit(TrainConfig(optimizer="sgd", lr=1e6, epochs=5), diabetes, on_epoch=lambda e, m: seen.append(m), device=CPU)
    assert hist.status == "diverged"
    assert hist.epochs_run == 1 and math.isnan(hist.curve[-1]["train_loss"]) and len(seen) == 1
    assert hist.model is None and math.isnan(hist.dev_error)
    d = hist.to_dict()
    json.dumps(d, allow_nan=False)  # NaN becomes null: the JSON stays valid
    assert d["status"] == "diverged" and d["dev_error"] is None and d["history"][0]["train_loss"] is None
    with pytest.raises(ValueError, match="diverged"):
        hist.checkpoint()


def test_divergence_after_a_finite_epoch_keeps_the_best_model(diabetes):
    # plain SGD at lr=0.1 on standardized diabetes: epoch 1 is finite (if poor), epoch 2 overflows
    hist = fit(TrainConfig(optimizer="sgd", lr=0.1, epochs=10), diabetes, device=CPU)
    assert hist.status == "diverged" and 2 <= hist.epochs_run < 10
    assert math.isnan(hist.curve[-1]["dev_error"]) and math.isfinite(hist.curve[0]["dev_error"])
    assert hist.model is not None and hist.best_epoch >= 1
    assert hist.dev_error == hist.curve[hist.best_epoch - 1]["dev_error"] and math.isfinite(hist.train_error)
    assert hist.checkpoint()["best_epoch"] == hist.best_epoch


def test_patience_stops_when_dev_error_stops_improving(iris):
    # lr so small that nothing changes: epoch 1 is the best, and patience=2 stops at epoch 3
    hist = fit(TrainConfig(optimizer="sgd", lr=1e-12, epochs=50, patience=2), iris, device=CPU)
    assert hist.status == "early_stopped" and hist.epochs_run == 3 and hist.best_epoch == 1


def test_patience_on_a_real_run(iris):
    hist = fit(TrainConfig(epochs=300, patience=3, lr=1e-2, batch_size=16), iris, device=CPU)
    assert hist.status == "early_stopped" and hist.epochs_run < 300
    assert hist.epochs_run - hist.best_epoch == 3
    dev = [r["dev_error"] for r in hist.curve]
    assert hist.dev_error == min(dev) == dev[hist.best_epoch - 1]
    assert all(e >= hist.dev_error for e in dev[hist.best_epoch:])


def test_on_epoch_can_stop_the_run(digits):
    seen = []

    def on_epoch(epoch, metrics):
        seen.append((epoch, dict(metrics)))
        return epoch == 2  # e.g. the pruner said so

    hist = fit(TrainConfig(epochs=10, width=16), digits, on_epoch=on_epoch, device=CPU)
    assert hist.status == "stopped" and hist.epochs_run == 2 and [e for e, _ in seen] == [1, 2]
    assert set(seen[0][1]) == {"epoch", "train_loss", "train_error", "running_error", "dev_loss", "dev_error", "seconds"}
    assert seen[1][1] == hist.curve[1]


def test_the_best_epoch_is_kept(digits):
    hist = fit(TrainConfig(epochs=6, width=32, dropout=0.3, lr=3e-3), digits, device=CPU)
    dev = [r["dev_error"] for r in hist.curve]
    assert hist.dev_error == min(dev) and hist.best_epoch == dev.index(min(dev)) + 1
    # the returned model is that epoch's: its dev error, evaluated again (no dropout), is the recorded one
    assert evaluate(hist.model, digits.x_dev, digits.y_dev, "multiclass")["error"] == pytest.approx(hist.dev_error)
    # train error: the kept weights in eval mode on the fixed sample (dev-sized, drawn from the split
    # seed), the very point the curve shows at the best epoch
    rows = sample_by_hand(digits)
    assert hist.train_error == pytest.approx(
        evaluate(hist.model, digits.x_train[rows], digits.y_train[rows], "multiclass")["error"], abs=1e-12)
    assert hist.train_error == hist.curve[hist.best_epoch - 1]["train_error"]
    assert not hist.model.training


def sample_by_hand(splits) -> torch.Tensor:
    """The training examples the train curve is measured on, as the issue defines them: min(dev, train,
    10,000) of them, a permutation seeded by the split seed, in index order."""
    n, k = len(splits.y_train), min(len(splits.y_dev), len(splits.y_train), 10_000)
    seed = splits.manifest["seed"]
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values


def test_history_json_shape(digits):
    hist = fit(TrainConfig(epochs=2, width=16), digits, device=CPU)
    d = json.loads(json.dumps(hist.to_dict(), allow_nan=False))
    assert {"train_error", "dev_error", "epochs", "epoch_seconds", "history", "status", "best_epoch"} <= set(d)
    assert d["epochs"] == 2 and d["epoch_seconds"] > 0
    assert [r["epoch"] for r in d["history"]] == [1, 2]
    assert {"epoch", "train_loss", "train_error", "dev_loss", "dev_error"} <= set(d["history"][0])
    ckpt = hist.checkpoint({"note": 1})
    assert ckpt["best_epoch"] == hist.best_epoch and ckpt["dev_error"] == hist.dev_error and ckpt["note"] == 1


# ----------------------------------------------------------------------------- augmentation


def test_augmentation_changes_training_batches_only(digits_ds, strip_seconds):
    splits = make_splits(digits_ds, train_fraction=0.1)  # ~108 images: augmenting is per image
    x_train = splits.x_train.clone()
    base = TrainConfig(epochs=2, width=16)
    plain = fit(base, splits, device=CPU)
    aug = fit(base.replace(augment="light"), splits, device=CPU)
    assert strip_seconds(aug.curve) != strip_seconds(plain.curve)  # training saw other pixels
    assert strip_seconds(fit(base.replace(augment="light"), splits, device=CPU).curve) == strip_seconds(aug.curve)
    assert torch.equal(splits.x_train, x_train)  # the data themselves are untouched
    # dev error and train error are measured on the real images, not augmented ones
    assert evaluate(aug.model, splits.x_dev, splits.y_dev, "multiclass")["error"] == pytest.approx(aug.dev_error)
    assert evaluate(aug.model, splits.x_train, splits.y_train, "multiclass")["error"] == pytest.approx(aug.train_error)


def test_augmentation_ignored_for_tabular_data(iris, strip_seconds):
    base = TrainConfig(epochs=3, width=8)
    assert strip_seconds(fit(base.replace(augment="strong"), iris, device=CPU).curve) == strip_seconds(
        fit(base, iris, device=CPU).curve)


# ----------------------------------------------------------------------------- CNN and devices


def test_cnn_trains_on_images(digits):
    cfg = TrainConfig(model="cnn", filters=8, conv_layers=2, depth=1, width=32, epochs=4, lr=1e-2)
    hist = fit(cfg, digits, device=CPU)
    assert hist.status == "complete" and hist.dev_error < 0.15


def test_regression_on_image_shaped_npz_data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 1, 4, 4, generator=g)
    y = x.mean(dim=(1, 2, 3)) * 10  # a learnable target in [0, 10]
    splits = make_splits(Dataset(x, y, "regression", "images", [], is_image=True))
    hist = fit(TrainConfig(epochs=30, lr=1e-2, batch_size=16), splits, device=CPU)
    assert hist.dev_error < 0.5 * splits.y_scale


def test_pick_device(monkeypatch):
    monkeypatch.setenv("TUNECTL_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")
    monkeypatch.delenv("TUNECTL_DEVICE")
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type in ("cpu", "cuda", "mps")


# ----------------------------------------------------------------------------- the epoch-cost benchmark


def test_epoch_cost_bench_runs(tmp_path, write_mnist, capsys, monkeypatch):
    """bench/epoch_cost.py stays runnable: one round on 300 tiny gzipped idx images."""
    import importlib.util
    from pathlib import Path

    write_mnist(tmp_path, n_train=0, n_test=300, layout="flat", gz=True)
    path = Path(__file__).resolve().parents[1] / "bench" / "epoch_cost.py"
    spec = importlib.util.spec_from_file_location("epoch_cost", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        assert bench.main([str(tmp_path), "--rounds", "1", "--epochs", "1", "--threads", "1", "--device", "cpu",
                           "--json"]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads(capsys.readouterr().out)
    assert result["sizes"] == {"train": 180, "dev": 60, "test": 60}
    assert set(result["median_seconds_per_epoch"]) == {"fit", "fit-fast", "minimal", "dataloader"}
    assert set(result["ratios"]) == {"fit/fit-fast", "fit/minimal", "fit-fast/minimal", "fit/dataloader",
                                     "fit-fast/dataloader"}
    med = result["median_seconds_per_epoch"]
    assert result["ratios"]["fit/fit-fast"] == med["fit"] / med["fit-fast"] and result["train_sample"] == 60
    assert set(result["cpu_ratios"]) == set(result["ratios"]) and all(v > 0 for v in result["cpu_ratios"].values())
    assert bench.main([str(tmp_path / "absent")]) == 2
    monkeypatch.delenv("TUNECTL_BENCH_DATA", raising=False)
    capsys.readouterr()
    assert bench.main([]) == 2  # no default path outside the repository: the data folder is an argument
    assert "give DATA_DIR" in capsys.readouterr().err
