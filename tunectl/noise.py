"""Noise: the standard error of a dev or test error, and whether two errors differ by more than it.

A dev error measured on n examples is itself an estimate. For classification it is a binomial
proportion, so its standard error is about sqrt(e (1 - e) / n): 0.10 on 200 examples is 0.10 ± 0.021,
and two trials one or two examples apart are not told apart by it. The formula is taken with the
"plus four" adjustment (Agresti and Coull: two more errors and two more right answers), which barely
moves it in the middle and keeps 0 errors out of 90 from reading as 0 ± 0. A regression error is an RMSE,
whose standard error has no simple formula: it is bootstrapped over the examples (resample the
per-example squared errors with replacement, take the spread of the RMSEs). Plain numbers in and
out; NumPy only for the bootstrap.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

Z = 2.0  # "within noise": less than two standard errors apart (about 95 % for a normal estimate)
RESAMPLES = 1000  # bootstrap resamples, fewer (never under MIN_RESAMPLES) for a very large split
MIN_RESAMPLES = 100
DRAWS = 20_000_000  # resamples x examples drawn at most: a 1,000,000-example split stays seconds


def binomial_se(error: float | None, n: int | None) -> float | None:
    """The standard error of an error rate `error` measured on `n` examples: sqrt(p (1 - p) / (n + 4)) with
    p = (errors + 2) / (n + 4), the plus-four estimate (it is never 0, even with no error at all)."""
    if error is None or not n or n < 1 or not math.isfinite(error) or not 0 <= error <= 1:
        return None
    p = (error * n + 2) / (n + 4)
    return math.sqrt(p * (1 - p) / (n + 4))


def bootstrap_rmse_se(squared_errors: Sequence[float] | Any, scale: float = 1.0, seed: int = 0,
                      resamples: int | None = None) -> float | None:
    """The standard error of an RMSE, bootstrapped over its examples: `squared_errors` are the
    per-example squared errors (in the model's units; `scale` turns RMSE into the target's)."""
    import numpy as np

    sq = np.asarray(squared_errors, dtype=np.float64).ravel()
    n = len(sq)
    if n < 2 or not np.all(np.isfinite(sq)):
        return None
    b = resamples or max(MIN_RESAMPLES, min(RESAMPLES, DRAWS // n))
    rng = np.random.default_rng(seed)
    chunk = max(1, DRAWS // (10 * n))  # memory: a few million indices at a time
    out = []
    for start in range(0, b, chunk):
        idx = rng.integers(0, n, size=(min(chunk, b - start), n))
        out.append(np.sqrt(sq[idx].mean(axis=1)))
    return float(np.concatenate(out).std(ddof=1) * scale)


def standard_error(task: str | None, error: float | None, n: int | None,
                   squared_errors: Sequence[float] | Any = None, scale: float = 1.0) -> float | None:
    """Binomial for classification, bootstrap for regression (None without the per-example errors)."""
    if task == "regression":
        return None if squared_errors is None else bootstrap_rmse_se(squared_errors, scale)
    return binomial_se(error, n)


def diff_se(*ses: float | None) -> float | None:
    """The standard error of a difference of independent estimates: their SEs added in quadrature."""
    if any(s is None for s in ses):
        return None
    return math.sqrt(sum(s * s for s in ses))


def within_noise(value: float | None, best: float | None, se_value: float | None, se_best: float | None) -> bool:
    """True when `value` is less than Z standard errors of the difference above `best`."""
    se = diff_se(se_value, se_best)
    if value is None or best is None or se is None or se == 0:
        return False
    return value - best < Z * se


def dev_size_needed(gap: float, se_dev: float, n_dev: int, se_train: float = 0.0) -> int | None:
    """The dev-set size at which a gap this large would be Z standard errors from zero.

    The dev error's SE falls as 1/sqrt(n): the gap is told apart once Z^2 (se_dev^2 n_dev / n + se_train^2)
    <= gap^2. None when the training error's own noise is already too large (more dev data cannot help)."""
    room = gap * gap / (Z * Z) - se_train * se_train
    if gap <= 0 or room <= 0 or se_dev <= 0:
        return None
    return math.ceil(se_dev * se_dev * n_dev / room)


def with_se(value: float | None, se: float | None, digits: int = 4) -> str:
    """0.1234 ± 0.0210: an error with its standard error, for a table or a sentence."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None and math.isfinite(se) else "")
