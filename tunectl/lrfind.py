"""The learning-rate range test: one short run with the learning rate growing exponentially each mini-batch.

Leslie Smith's test, as fastai's lr_find runs it: start far too low (1e-7), multiply the learning
rate by a constant after every mini-batch up to far too high (10), and watch the training loss,
smoothed with an exponential moving average (bias-corrected, as Adam's). The loss falls once the
learning rate is large enough to learn, bottoms out, then blows up; the test stops once the
smoothed loss is four times its minimum. The suggested range lies one decade below the minimum:
from a hundredth to a tenth of the learning rate at the lowest smoothed loss, where training is
fast but not yet unstable. It costs one run of `steps` mini-batches, whatever model it is given
(tunectl's, or your own builder's: `TrainConfig.model` decides, through models.build_model).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from tunectl import files
from tunectl.config import TrainConfig
from tunectl.data import Splits
from tunectl.errors import ConfigError, RunError
from tunectl.models import build_model
from tunectl.train import batch_size_for, loss_of, make_optimizer, pick_device

SMOOTHING = 0.98  # the moving average's weight: about the last 50 mini-batches
BLOW_UP = 4.0  # stop once the smoothed loss is this many times its minimum
DECADE = 10.0


def check_range(start: float, end: float, steps: int) -> None:
    for flag, v in (("--start", start), ("--end", end)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ConfigError(f"{flag} {v}: give a learning rate > 0, e.g. --start 1e-7 --end 10")
    if start >= end:
        raise ConfigError(f"--start {start:g} must be below --end {end:g}; the test raises the learning rate")
    if not 10 <= steps <= 100_000:
        raise ConfigError(f"--steps {steps}: give between 10 and 100000 mini-batches (100 is usual)")


def range_test(cfg: TrainConfig, splits: Splits, start: float = 1e-7, end: float = 10.0, steps: int = 100,
               device: str | None = None, on_step: Callable[[int, int], Any] | None = None) -> dict[str, Any]:
    """Train `cfg` for `steps` mini-batches with lr = start * (end/start)^(i/steps); the curve and the
    suggestion. The curve's rows: step, lr, loss (that mini-batch's), smoothed."""
    check_range(start, end, steps)
    dev = pick_device(device)
    torch.manual_seed(cfg.seed)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg, splits.input_shape, splits.out_dim, splits.vocab).to(dev)
    opt = make_optimizer(cfg.replace(lr=start), model)
    gamma = (end / start) ** (1 / steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: gamma ** i)  # torch's own per-step schedule
    x, y = splits.x_train.to(dev), splits.y_train.to(dev)
    n = len(x)
    bs = batch_size_for(cfg, n)
    rows: list[dict[str, float]] = []
    avg, best, stopped = 0.0, math.inf, "end"
    model.train()
    perm, b = torch.randperm(n, generator=shuffle).to(dev), 0
    for i in range(steps + 1):
        if b * bs >= n:  # a new epoch: reshuffle
            perm, b = torch.randperm(n, generator=shuffle).to(dev), 0
        idx = perm[b * bs:(b + 1) * bs]
        b += 1
        lr = start * gamma ** i  # what LambdaLR set for this mini-batch (a transfer body keeps its own ratio)
        loss = loss_of(splits.task, model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        value = loss.item()
        if not math.isfinite(value):
            stopped = "diverged"
            break
        avg = SMOOTHING * avg + (1 - SMOOTHING) * value
        smooth = avg / (1 - SMOOTHING ** (i + 1))
        rows.append({"step": i, "lr": lr, "loss": value, "smoothed": smooth})
        best = min(best, smooth)
        if on_step is not None:
            on_step(i, steps)
        if i > 10 and smooth > BLOW_UP * best:
            stopped = "blew_up"
            break
    return {**suggest(rows), "curve": rows, "stopped": stopped, "steps": len(rows), "start": start, "end": end,
            "batch_size": bs, "optimizer": cfg.optimizer, "model": cfg.model}


def suggest(rows: list[dict[str, float]]) -> dict[str, Any]:
    """The lr at the lowest smoothed loss, and the range one decade below it: [min/100, min/10]."""
    if len(rows) < 10:
        return {"lr_at_min": None, "suggested": None, "range": None}
    # the first mini-batches' average is still warming up: ignore the first tenth for the minimum
    skip = max(1, len(rows) // 10)
    low = min(rows[skip:], key=lambda r: r["smoothed"])
    at = low["lr"]
    return {"lr_at_min": at, "min_loss": low["smoothed"], "suggested": at / DECADE,
            "range": [at / DECADE ** 2, at / DECADE]}


def plot(result: dict[str, Any], path) -> None:
    """The curve as a PNG: smoothed loss against lr (log scale), the minimum and the range marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    rows = result["curve"]
    ax.plot([r["lr"] for r in rows], [r["smoothed"] for r in rows], label="smoothed training loss")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    if result.get("range"):
        lo, hi = result["range"]
        ax.axvspan(lo, hi, alpha=0.2, color="green", label=f"suggested {lo:.2g}–{hi:.2g}")
        ax.axvline(result["lr_at_min"], color="grey", ls="--", label=f"minimum at {result['lr_at_min']:.2g}")
    ax.legend(fontsize=8)
    ax.set_title(f"learning-rate range test: {result['model']}, {result['optimizer']}", fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    files.write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- `tunectl lr-find`


def next_space_text(result: dict[str, Any], cfg: TrainConfig, dataset: str | None, space_path=None) -> str:
    """A search space with lr over the suggested range: the given space's (its lr replaced), or one around
    `cfg` (lr searched, the rest of its non-default values fixed)."""
    from tunectl.space import dump_space, load_space, parse_space

    lo, hi = (float(f"{v:.3g}") for v in result["range"])
    spec = {"type": "float", "low": lo, "high": hi, "log": True}
    comments = [f"next search space from `tunectl lr-find` ({cfg.model}, {cfg.optimizer}, batch "
                f"{result['batch_size']}): the smoothed loss was lowest at lr {result['lr_at_min']:.3g}",
                f"lr: {lo:g}–{hi:g} (log), one decade below that minimum"]
    if space_path is not None:
        sp = load_space(space_path)
        doc = sp.to_dict()
        old = doc["params"].get("lr")
        doc["params"] = {**doc["params"], "lr": {**spec, **({"when": old["when"]} if old and "when" in old else {})}}
        doc.pop("model_sha256", None) if not sp.model_sha256 else None
        comments.append(f"the rest as in {space_path}")
        return dump_space(parse_space(doc, str(space_path)), comments)
    defaults = TrainConfig().to_dict()
    skip = {"model", "lr", "epochs", "seed", "model_params", "model_sha256"}
    fixed = {k: v for k, v in cfg.to_dict().items() if k not in skip and v != defaults[k]}
    fixed.update(cfg.model_params)
    doc = {"model": cfg.model, **({"dataset": dataset} if dataset else {}), "epochs": cfg.epochs,
           "params": {"lr": spec}, "fixed": fixed}
    comments.append("the rest of the configuration fixed: add parameters to search them too")
    return dump_space(parse_space(doc, "<lr-find space>"), comments)


def lr_find(values: dict[str, Any], data, steps: int = 100, start: float = 1e-7, end: float = 10.0,
            device: str | None = None, plot_path=None, next_space=None, space=None, allow_changed: bool = False,
            data_from_space: bool = False, on_step: Callable[[int, int], Any] | None = None) -> dict[str, Any]:
    """`tunectl lr-find`: every check first (range, output files, config, data, device), then the test,
    then the plot and the next space, each written whole. `data_from_space`: no --dataset was given, so
    the space's data set (if it names one) is used."""
    from pathlib import Path

    from tunectl import runs
    from tunectl.diagnose import check_out_file

    check_range(start, end, steps)
    if plot_path is not None:
        check_out_file(plot_path, "--plot", "lr.png")
    if next_space is not None:
        check_out_file(next_space, "--next-space", "next.yaml")
    if space is not None:
        from tunectl.space import find_space, load_space

        space = find_space(space)
        sp = load_space(space)  # a bad space is refused before the test runs
        if "lr" not in sp.params and "lr" in sp.fixed:
            raise ConfigError(f"--space {space}: fixes lr ({sp.fixed['lr']}); search it (params) to use lr-find's range")
        if sp.model and "model" not in values:  # the space's model, unless --model or --params names one
            values = {**values, "model": sp.model}
        if sp.dataset and data_from_space:
            import dataclasses

            data = dataclasses.replace(data, dataset=sp.dataset)
    plan = runs.plan(values, data, None, False, device, allow_changed)
    result = range_test(plan.cfg, plan.splits, start, end, steps, device, on_step)
    result["dataset"] = data.dataset
    result["min_at_end"] = bool(result["lr_at_min"]) and result["stopped"] == "end" and \
        result["lr_at_min"] >= result["curve"][int(len(result["curve"]) * 0.9)]["lr"]
    if result["range"] is None:
        raise RunError(f"the range test stopped after {result['steps']} mini-batches (the loss {result['stopped']}); "
                          f"lower --start, or check the inputs' scale")
    if plot_path is not None:
        Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
        plot(result, plot_path)
        result["plot"] = str(plot_path)
    if next_space is not None:
        Path(next_space).parent.mkdir(parents=True, exist_ok=True)
        files.write_text(Path(next_space), next_space_text(result, plan.cfg, data.dataset, space))
        result["next_space"] = str(next_space)
    return result
