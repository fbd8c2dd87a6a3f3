"""fit(): train one model and report each epoch through a callback.

This module knows nothing of Optuna, Typer or rich: `tune.py` passes an `on_epoch`
that reports to Optuna and decides about pruning; `tunectl train` passes one that
draws a progress display. The loop keeps all data as tensors on the device, slices
shuffled index batches, and accumulates losses on the device, so there is one
host sync per epoch rather than one per batch.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from tunectl import attacks
from tunectl.builders import check_outputs, is_reference
from tunectl.config import TrainConfig
from tunectl.data import Splits
from tunectl.errors import ConfigError
from tunectl.models import Net, build_model, checkpoint, param_groups

# on_epoch(epoch, metrics) -> True to stop now (e.g. the pruner said so)
OnEpoch = Callable[[int, dict[str, float]], Any]
OnBatch = Callable[[int, int], Any]  # (batches done this epoch, batches per epoch)
EVAL_BATCH = 4096  # evaluation needs no gradients, so large batches are cheap and fast
EVAL_BYTES = 16 << 20  # ... up to 16 MiB of float inputs a batch: 4096 photos at 224 px would be 2.4 GB


def _present_devices() -> list[str]:
    """What this machine can train on, for the message that refuses a device it cannot."""
    have = ["cpu"]
    if torch.cuda.is_available():
        have += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        have.append("mps")
    return have


def check_device(name: str | torch.device | None = None) -> torch.device:
    """The device `name` (or TUNECTL_DEVICE, or the best present) names, refused with one line when it is
    not a device tunectl trains on or not on this machine. Cheap: no CUDA context is made, nothing written;
    the CLI calls it before a study or a run folder exists."""
    if isinstance(name, torch.device):
        name = str(name)
    source = "--device"
    if not name:
        name, source = os.environ.get("TUNECTL_DEVICE") or None, "TUNECTL_DEVICE"
    if not name:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    text = str(name).strip().lower()
    raw = str(name) if len(str(name)) <= 60 else str(name)[:57] + "..."
    shown = f"--device {raw}" if source == "--device" else f"TUNECTL_DEVICE={raw}"
    have = ", ".join(_present_devices())
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not (index.isdigit() and index.isascii())) \
            or (index and kind != "cuda" and index != "0"):
        raise ConfigError(f"{shown}: unknown device; use cpu, cuda, cuda:N or mps (this machine has: {have})")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{shown}: this machine has no usable CUDA GPU (this machine has: {have}); "
                              f"use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"{shown}: no such GPU (this machine has: {have}); use one of those")
        return torch.device(text)
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"{shown}: Apple's MPS is not available here (this machine has: {have}); use --device cpu")
    return torch.device(kind)


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """CUDA, then Apple's MPS, then the CPU; `name` (e.g. --device) or TUNECTL_DEVICE overrides.

    A device that is unknown or absent is a ConfigError (one line, exit 2), never torch's traceback."""
    return check_device(name)


@dataclass
class History:
    config: TrainConfig
    curve: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    status: str = "complete"  # complete | early_stopped | stopped | diverged
    best_epoch: int = 0
    train_error: float = math.nan  # at the best epoch, eval mode, on the fixed sample (train_sample)
    dev_error: float = math.nan  # the best dev error
    seconds: float = 0.0
    model: Net | None = None  # with the best epoch's weights
    task: str = ""
    input_shape: tuple[int, ...] = ()
    out_dim: int = 1
    batch_size_used: int = 0  # the mini-batch actually used: the training split's size when the batch covers it
    dev_error_se: float | None = None  # the standard error of dev_error (noise.py: binomial, or bootstrapped RMSE)
    train_error_se: float | None = None
    train_sample: int = 0  # the training examples train_error (and, unless fast_curves, each epoch's) is measured on

    @property
    def epochs_run(self) -> int:
        return len(self.curve)

    def to_dict(self) -> dict[str, Any]:
        from tunectl.numbers import clean  # JSON has no NaN

        return {
            "status": self.status,
            "train_error": clean(self.train_error),
            "dev_error": clean(self.dev_error),
            "dev_error_se": clean(self.dev_error_se),
            "train_error_se": clean(self.train_error_se),
            "best_epoch": self.best_epoch,
            "epochs": self.epochs_run,
            "batch_size_used": self.batch_size_used,
            "train_sample": self.train_sample,
            "train_curve": "running" if self.config.fast_curves else "eval",  # what each row's train_error is
            "seconds": self.seconds,
            "epoch_seconds": self.seconds / max(1, self.epochs_run),
            "history": clean(self.curve),
        }

    def checkpoint(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        if self.model is None:
            raise ValueError("this run kept no model (it diverged in its first epoch)")
        return checkpoint(self.model, self.config, self.input_shape, self.out_dim, self.task,
                          {"best_epoch": self.best_epoch, "dev_error": self.dev_error, **(extra or {})})


def make_optimizer(cfg: TrainConfig, model: Net) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    wd = cfg.weight_decay
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, weight_decay=wd)
    if cfg.optimizer == "momentum":
        # The textbook's exponentially weighted average v = beta*v + (1-beta)*dW: torch's
        # SGD computes v = momentum*v + (1-dampening)*dW, so dampening=beta gives exactly
        # that, and lr keeps its meaning when beta changes. (torch seeds v with dW itself
        # on the first step, which is the bias-corrected start.)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.beta, dampening=cfg.beta, weight_decay=wd)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=cfg.beta, eps=cfg.eps, weight_decay=wd)
    return torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=wd)


def _loss(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task == "multiclass":
        return F.cross_entropy(out, y)  # softmax + cross-entropy, fused and stable
    if task == "binary":
        return F.binary_cross_entropy_with_logits(out.squeeze(1), y.to(out.dtype))  # sigmoid + BCE
    return F.mse_loss(out.squeeze(1), y)  # linear output + MSE


loss_of = _loss  # the training loss of a task's outputs: public for the learning-rate range test (lrfind.py)


def _wrong(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per batch: the number misclassified, or the sum of squared errors for regression."""
    if task == "multiclass":
        return (out.argmax(1) != y).sum()
    if task == "binary":
        return ((out.squeeze(1) > 0).to(y.dtype) != y).sum()
    return ((out.squeeze(1) - y) ** 2).sum()


def _error(task: str, wrong: float, n: int, y_scale: float) -> float:
    """Misclassification rate, or RMSE in the target's own units."""
    return math.sqrt(wrong / n) * y_scale if task == "regression" else wrong / n


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, y_scale: float = 1.0,
             device: torch.device | None = None, rows: torch.Tensor | None = None) -> dict[str, float]:
    """Loss and error of `model` on (x, y), in large batches, no gradients, one host sync.

    `rows` (an index tensor) evaluates only those rows of x, gathered a batch at a time: a subsample of
    bytes (pixels.Rows) is never made float32 whole."""
    device = device or next(model.parameters()).device
    model.eval()
    loss_sum = torch.zeros((), device=device)
    wrong = torch.zeros((), device=device)
    step = max(1, min(EVAL_BATCH, EVAL_BYTES // max(1, 4 * math.prod(x.shape[1:]))))  # x: a tensor or pixels.Rows
    count = len(x) if rows is None else len(rows)
    for i in range(0, count, step):
        part = slice(i, i + step) if rows is None else rows[i:i + step]
        xb, yb = x[part].to(device), y[part].to(device)
        out = model(xb)
        loss_sum += _loss(task, out, yb) * len(xb)
        wrong += _wrong(task, out, yb)
    loss, w = torch.stack([loss_sum, wrong.to(loss_sum.dtype)]).tolist()
    n = max(1, count)
    return {"loss": loss / n, "error": _error(task, w, n, y_scale)}


TRAIN_SAMPLE_CAP = 10_000  # the eval-mode train curve's examples at most: a dev-sized pass, bounded on huge splits


def train_sample(splits: Splits) -> torch.Tensor:
    """The training examples each epoch's train error is measured on (and the run's final train error):
    min(dev, train, 10,000) of them, drawn once from the split seed, so every trial of a study, every
    worker and every run on the split measures the same examples, as many as dev error is measured on
    (the two errors then carry the same noise). Sorted, so that reading them walks memory in order."""
    seed = int(splits.manifest.get("seed") or 0)
    perm = torch.randperm(len(splits.x_train), generator=torch.Generator().manual_seed(seed))
    return perm[:_sample_size(splits)].sort().values


def _sample_size(splits: Splits) -> int:
    n, n_dev = len(splits.x_train), len(splits.x_dev)
    return min(n_dev or n, n, TRAIN_SAMPLE_CAP)  # without a dev split: the cap


def train_sample_size(splits: Splits, cfg: TrainConfig) -> int:
    """How many examples a run's per-epoch train error is a rate over: the sample's, or (fast_curves) the
    whole training split's, whose running average it then is."""
    return len(splits.x_train) if cfg.fast_curves else _sample_size(splits)


@torch.inference_mode()
def error_se(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, y_scale: float = 1.0,
             error: float | None = None, device: torch.device | None = None,
             rows: torch.Tensor | None = None) -> float | None:
    """The standard error of `model`'s error on (x, y) (or on its `rows`, as in evaluate): binomial for
    classification (from `error`, or measured), the RMSE's bootstrapped over the examples for regression (noise.py)."""
    from tunectl import noise

    count = len(x) if rows is None else len(rows)
    if task != "regression":
        if error is None:
            error = evaluate(model, x, y, task, y_scale, device, rows)["error"]
        return noise.binomial_se(error, count)
    device = device or next(model.parameters()).device
    model.eval()
    part = (lambda i: slice(i, i + EVAL_BATCH)) if rows is None else (lambda i: rows[i:i + EVAL_BATCH])
    sq = [((model(x[part(i)].to(device)).squeeze(1) - y[part(i)].to(device)) ** 2).cpu()
          for i in range(0, count, EVAL_BATCH)]
    return noise.bootstrap_rmse_se(torch.cat(sq).double().numpy(), y_scale) if sq else None


def batch_size_for(cfg: TrainConfig, n_train: int) -> int:
    """The mini-batch size a run of `cfg` uses on `n_train` examples. A batch at least as large as the
    training split (or batch_size=0) is the full batch: batch gradient descent, not an error."""
    return n_train if cfg.batch_size == 0 or cfg.batch_size >= n_train else cfg.batch_size


def check(cfg: TrainConfig, splits: Splits) -> None:
    """Everything a run of `cfg` on `splits` needs, checked before it starts: the model builds on
    these inputs (cnn on tabular data, transfer without a source). A batch larger than the training
    split is the full batch, not a failure. Used by `train`, `tune` and every worker, so each
    refuses the same way."""
    model = build_model(cfg, splits.input_shape, splits.out_dim, splits.vocab)
    if cfg.adv_eps and splits.vocab:
        raise ConfigError(f"adv_eps={cfg.adv_eps:g}: adversarial training moves numeric inputs, but this data set's "
                          f"are token ids; use adv_eps=0")
    if is_reference(cfg.model):  # your own model: one mini-batch through it, before anything runs
        check_outputs(cfg.model, model, splits.x_train, splits.out_dim)


def fit(cfg: TrainConfig, splits: Splits, on_epoch: OnEpoch | None = None, on_batch: OnBatch | None = None,
        device: torch.device | str | None = None, keep_last: bool = False) -> History:
    """Train one model on splits' train part; measure dev error each epoch; keep the best weights.

    keep_last keeps the final epoch's weights instead: a refit on train+dev has no held-out
    data to choose an epoch by (its epoch count was chosen on dev before).
    """
    device = pick_device(device)  # validated on every path, not only behind the CLI's early check
    torch.manual_seed(cfg.seed)  # weights and dropout
    shuffle = torch.Generator().manual_seed(cfg.seed)  # batch order, on the CPU on every device
    task, y_scale = splits.task, splits.y_scale
    model = build_model(cfg, splits.input_shape, splits.out_dim, splits.vocab).to(device)
    opt = make_optimizer(cfg, model)
    x, y = splits.x_train.to(device), splits.y_train.to(device)
    x_dev, y_dev = splits.x_dev.to(device), splits.y_dev.to(device)
    n = len(x)
    bs = batch_size_for(cfg, n)
    n_batches = math.ceil(n / bs)
    augment = None
    if cfg.augment != "none" and splits.is_image:
        from tunectl.data import augmenter

        augment = augmenter(cfg.augment, splits.input_shape, splits.flips_ok)
    bounds = attacks.image_bounds(x, splits.is_image) if cfg.adv_eps else None
    params = [p for group in opt.param_groups for p in group["params"]]

    # the run's train error, per epoch and at the end: eval mode on the fixed sample (train_sample), the
    # one measure of it; fast_curves measures only the end's, the per-epoch curve being the running average
    rows = train_sample(splits).to(device)
    train_measure = lambda m: evaluate(m, x, y, task, y_scale, device, rows)  # noqa: E731
    eval_curve = not cfg.fast_curves
    hist = History(cfg, task=task, input_shape=splits.input_shape, out_dim=splits.out_dim, batch_size_used=bs,
                   train_sample=len(rows))
    best_state: dict[str, torch.Tensor] | None = None
    best_dev, since_best = math.inf, 0
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=shuffle).to(device)
        loss_sum = torch.zeros((), device=device)
        wrong = torch.zeros((), device=device)
        for b in range(n_batches):
            idx = perm[b * bs:(b + 1) * bs]
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = augment(xb)
            if cfg.adv_eps:  # FGSM adversarial training: half the loss on the batch, half on its FGSM points
                xb = xb.detach().requires_grad_(True)
            out = model(xb)
            loss = _loss(task, out, yb)
            if cfg.adv_eps:
                (grad,) = torch.autograd.grad(loss, xb, retain_graph=True)
                x_adv = attacks.fgsm_point(xb, grad, cfg.adv_eps, bounds)
                loss = 0.5 * loss + 0.5 * _loss(task, model(x_adv), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_norm:  # the gradient's norm over all parameters, cut to clip_norm (exploding gradients)
                torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
            opt.step()
            # running sums stay on the device: no .item() per batch
            loss_sum.add_(loss.detach(), alpha=len(idx))
            wrong.add_(_wrong(task, out.detach(), yb))
            if on_batch is not None:
                on_batch(b + 1, n_batches)
        train_loss, train_wrong = torch.stack([loss_sum, wrong.to(loss_sum.dtype)]).tolist()
        if not (math.isfinite(train_loss) and math.isfinite(train_wrong)):
            hist.status = "diverged"  # NaN/inf: nothing after this epoch can recover
            hist.curve.append({"epoch": epoch, "train_loss": math.nan, "train_error": math.nan,
                               "running_error": math.nan, "dev_loss": math.nan, "dev_error": math.nan,
                               "seconds": time.perf_counter() - t0})
            if on_epoch is not None:
                on_epoch(epoch, hist.curve[-1])
            break
        running = _error(task, train_wrong, n, y_scale)
        dev = evaluate(model, x_dev, y_dev, task, y_scale, device)
        row = {
            "epoch": epoch,
            "train_loss": train_loss / n,  # the training loss: its running average over the epoch (dropout on)
            # train error measured as dev error is (eval mode, the epoch's final weights) on the fixed sample;
            # with fast_curves, the running average over the epoch instead (no extra pass)
            "train_error": train_measure(model)["error"] if eval_curve else running,
            "running_error": running,  # the running average, while the weights moved, dropout on
            "dev_loss": dev["loss"],
            "dev_error": dev["error"],
            "seconds": time.perf_counter() - t0,
        }
        hist.curve.append(row)
        if keep_last or dev["error"] < best_dev:
            best_dev, since_best, hist.best_epoch = dev["error"], 0, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
        if on_epoch is not None and on_epoch(epoch, row):
            hist.status = "stopped"
            break
        if cfg.patience and since_best >= cfg.patience:
            hist.status = "early_stopped"
            break
    hist.seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
        hist.model = model
        hist.dev_error = best_dev
        # train error of the kept weights, eval mode, on the fixed sample: the number bias/variance analysis
        # compares with dev error, and the curve's own point at the best epoch (measured then; fast_curves: now)
        best_row = hist.curve[hist.best_epoch - 1]
        hist.train_error = best_row["train_error"] if eval_curve else train_measure(model)["error"]
        hist.dev_error_se = error_se(model, x_dev, y_dev, task, y_scale, best_dev, device)
        hist.train_error_se = error_se(model, x, y, task, y_scale, hist.train_error, device, rows)
    return hist
