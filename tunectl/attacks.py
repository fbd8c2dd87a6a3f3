"""Adversarial examples: FGSM and PGD perturbations of a model's inputs within an L-infinity budget eps.

Goodfellow et al., "Explaining and harnessing adversarial examples" (ICLR 2015): moving every
input value by eps in the direction of the sign of the loss's gradient (the fast gradient sign
method, FGSM) fools a network that is right on the clean input surprisingly often. PGD (Madry
et al., 2018) takes `steps` smaller steps of 2.5 * eps / steps from the clean input, each
projected back into the eps-box around it; every example keeps the worst point found (FGSM's
point included), so PGD's error is never below FGSM's on the same model.

eps is in the units the model sees: tunectl standardizes inputs with the training split's
mean and std, so eps = 0.1 moves each value by a tenth of its std (`in_input_units` converts).
Images stay within the range the training split's pixels span. The attacker's objective is
the task's training loss (cross-entropy, BCE, MSE). Counting the error under attack is
`train.evaluate`'s, on the inputs `perturb` returns; training on FGSM's points is `train.fit`'s
(`adv_eps`), with `fgsm_point` the one place the step is written.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tunectl.errors import ConfigError

ATTACKS = ("fgsm", "pgd")
MAX_EPS = 10.0  # standard deviations: past that the input is another input, not a perturbed one
MAX_STEPS = 1000
BATCH = 1024  # examples attacked at once: gradients for the inputs need the forward pass's memory


def check(attack: str | None, eps: float | None, steps: int | None) -> None:
    """`evaluate --attack A --eps E [--steps N]`, refused in one line before any work."""
    if attack is None:
        given = "--eps" if eps is not None else "--steps" if steps is not None else None
        if given:
            raise ConfigError(f"{given} is for an adversarial evaluation: add --attack fgsm or --attack pgd")
        return
    if attack not in ATTACKS:
        raise ConfigError(f"--attack {attack!r}: use one of {', '.join(ATTACKS)}")
    if eps is None:
        raise ConfigError(f"--attack {attack} needs --eps: the largest change of each input value, in standard "
                          f"deviations of the inputs, e.g. --eps 0.1")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not 0 < eps <= MAX_EPS:
        raise ConfigError(f"--eps {eps}: must be a number in (0, {MAX_EPS:g}] (standard deviations of the "
                          f"inputs), e.g. --eps 0.1")
    if attack == "fgsm" and steps is not None:
        raise ConfigError("--steps is for --attack pgd (FGSM is one step); drop --steps or use --attack pgd")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS):
        raise ConfigError(f"--steps {steps}: must be a whole number of PGD steps in 1..{MAX_STEPS}, e.g. --steps 10")


def objective(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The attacker's objective, per example: the task's training loss, which the attack increases."""
    if task == "multiclass":
        return F.cross_entropy(out, y, reduction="none")
    if task == "binary":
        return F.binary_cross_entropy_with_logits(out.squeeze(1), y.to(out.dtype), reduction="none")
    return F.mse_loss(out.squeeze(1), y, reduction="none")


def _fooled(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task == "multiclass":
        return out.argmax(1) != y
    if task == "binary":
        return (out.squeeze(1) > 0).to(y.dtype) != y
    return torch.zeros(len(y), dtype=torch.bool, device=y.device)  # regression: the loss alone ranks points


def fgsm_point(x: torch.Tensor, grad: torch.Tensor, eps: float, bounds: Any = None) -> torch.Tensor:
    """FGSM's adversarial input: x moved by eps in the sign of the loss's gradient (clamped to `bounds`)."""
    x_adv = x.detach() + eps * grad.sign()
    return x_adv.clamp(*bounds) if bounds is not None else x_adv


def _gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the gradient of the summed objective with respect to x, the outputs at x)."""
    x = x.detach().requires_grad_(True)
    out = model(x)
    (grad,) = torch.autograd.grad(objective(task, out, y).sum(), x)
    return grad, out.detach()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, eps: float, bounds: Any = None) -> torch.Tensor:
    grad, _ = _gradient(model, x, y, task)
    return fgsm_point(x, grad, eps, bounds)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, eps: float, steps: int = 10,
        bounds: Any = None) -> torch.Tensor:
    """`steps` projected steps of 2.5 * eps / steps from x; each example keeps its worst point (FGSM's counted)."""
    alpha = 2.5 * eps / steps

    def worse(out: torch.Tensor, fooled: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        f, l = _fooled(task, out, y), objective(task, out, y)
        return (f & ~fooled) | ((f == fooled) & (l > loss))

    best = fgsm(model, x, y, task, eps, bounds)
    with torch.no_grad():
        out = model(best)
        best_fooled, best_loss = _fooled(task, out, y), objective(task, out, y)
    point = x.detach()
    for step in range(steps + 1):
        grad, out = _gradient(model, point, y, task)
        if step:  # the outputs at the point the previous step reached
            better = worse(out, best_fooled, best_loss)
            best = torch.where(better.view(-1, *[1] * (x.ndim - 1)), point, best)
            best_fooled = best_fooled | better & _fooled(task, out, y)
            best_loss = torch.where(better, objective(task, out, y), best_loss)
        if step == steps:
            break
        point = x + (point + alpha * grad.sign() - x).clamp(-eps, eps)  # back into the eps-box around x
        if bounds is not None:
            point = point.clamp(*bounds)
    return best.detach()


def _rnn_gradients(model: nn.Module, device: torch.device):
    """cuDNN computes an RNN's backward pass in training mode only: off for an attack on an evaluated RNN."""
    if device.type == "cuda" and any(isinstance(m, nn.RNNBase) for m in model.modules()):
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str, attack: str, eps: float,
            steps: int | None = None, bounds: Any = None, device: torch.device | None = None) -> torch.Tensor:
    """The adversarial inputs for (x, y) against `model` in eval mode (dropout off), in batches, on `device`."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    with torch.enable_grad(), _rnn_gradients(model, device):
        for i in range(0, len(x), BATCH):
            xb, yb = x[i:i + BATCH].to(device), y[i:i + BATCH].to(device)
            out.append(fgsm(model, xb, yb, task, eps, bounds) if attack == "fgsm"
                       else pgd(model, xb, yb, task, eps, steps or 10, bounds))
    return torch.cat(out) if out else x.to(device)


def image_bounds(x_train: torch.Tensor, is_image: bool) -> tuple[float, float] | None:
    """Images stay within the (standardized) range the training pixels span; other inputs are unbounded.
    Read in chunks: images held as bytes (pixels.Rows) are scaled a slice at a time."""
    if not is_image or not len(x_train):
        return None
    lo, hi = math.inf, -math.inf
    for i in range(0, len(x_train), 4096):  # one chunk at a time: a list of them would be the whole split as floats
        c_lo, c_hi = torch.aminmax(x_train[i:i + 4096])  # the chunk is freed here, before the next is made
        lo, hi = min(lo, float(c_lo)), max(hi, float(c_hi))
    return lo, hi


def in_input_units(eps: float, x_scale: torch.Tensor | None) -> float | dict[str, float] | None:
    """eps in the input's own units (eps x the training split's std): one number, or the range over features."""
    if x_scale is None:
        return None
    values = (eps * x_scale.flatten().double()).unique()
    if len(values) == 1:
        return float(values[0])
    return {"min": float(values.min()), "median": float(values.median()), "max": float(values.max())}
