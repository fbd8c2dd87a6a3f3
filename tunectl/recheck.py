"""Rechecks: re-train a study's top trials with new seeds on the same split, and rank them by the mean.

Every trial of a study trains with the study's seed, so the leaderboard compares configurations
each measured once: the winner of a close race is often the configuration whose seed was lucky.
`tunectl recheck STUDY --top 3 --seeds 3` re-trains the best few with new seeds (the trial's seed
+ 1, + 2, ...), on the study's own training and dev splits, and ranks them by the mean dev error
over those new seeds, with its spread. The trial's original run is not in the mean: it was chosen
because it was low, so it is biased low.

Each seed's result is written to the study as soon as it exists, under the study user attr
`recheck:<trial>:<seed>` (a finished Optuna trial cannot be changed; its study can). A recheck that
is stopped or killed keeps what it finished, and the same command resumes it; two rechecks of one
study at once take turns under a lock and never train a seed twice. `results.rechecks` reads them
back, and `results.pick_trial` then picks the rechecked winner for show, export and evaluate.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable

from tunectl import files, noise, results, studies
from tunectl.config import MAX_SEED, from_dict
from tunectl.errors import StudyError, TunectlError

MAX_TOP = 100
MAX_SEEDS = 100


def check_counts(top: int, seeds: int) -> None:
    if not 1 <= top <= MAX_TOP:
        raise TunectlError(f"--top {top}: give between 1 and {MAX_TOP} trials to recheck")
    if not 1 <= seeds <= MAX_SEEDS:
        raise TunectlError(f"--seeds {seeds}: give between 1 and {MAX_SEEDS} new seeds per trial")


def new_seeds(seed: int, count: int) -> list[int]:
    """The trial's seed + 1, + 2, ...: new, and the same ones for every trial and every rerun."""
    return [(seed + i) % (MAX_SEED + 1) for i in range(1, count + 1)]


def _splits(meta: dict[str, Any], study: str):
    """The study's training and dev splits (never the test split), proven to be the study's own."""
    from tunectl.data import DataSettings, load_splits, same_split

    splits = load_splits(DataSettings.from_dict(meta["data"]), include_test=False)
    if not same_split(meta["manifest"], splits.manifest):
        raise StudyError(f"study '{study}': the data no longer produce the study's split (the data changed since "
                         f"tuning); restore them to recheck on the same split")
    return splits


def recheck_study(study: str, top: int = 3, seeds: int = 3, storage: str | None = None,
                  root: Path | str = studies.ROOT, device: str | None = None,
                  on_result: Callable[[dict[str, Any]], Any] = lambda r: None,
                  on_note: Callable[[str], Any] = lambda text: None) -> dict[str, Any]:
    """Re-train the `top` best complete trials with `seeds` new seeds each; the ranking by mean.

    Checked before any work: the counts, the device, the study, its trials and its data."""
    from tunectl.train import check_device, fit

    check_counts(top, seeds)
    check_device(device)
    st = results.open_study(study, storage, root)
    meta = st.user_attrs.get(results.ATTR)
    if not meta:
        raise StudyError(f"study '{study}' was not made by tunectl; recheck a study from `tunectl studies`")
    records = results.trial_records(st)
    done = sorted((r for r in records if r["state"] == "COMPLETE" and r["value"] is not None and r.get("config")),
                  key=lambda r: (r["value"], r["number"]))
    if not done:
        raise StudyError(f"study '{study}' has no complete trial yet; let it run (`tunectl tune --study {study}`)")
    chosen = done[:top]
    if len(chosen) < top:
        on_note(f"study '{study}' has {len(chosen)} complete trial{'s' * (len(chosen) != 1)}: rechecking "
                f"{'them' if len(chosen) > 1 else 'it'}")
    if len(done) < 2:
        on_note("one trial alone has no race to decide; its mean over new seeds says how lucky its seed was")
    splits = _splits(meta, study)
    folder = studies.study_dir(study, Path(root))
    lock = folder / ".recheck.lock"
    for r in chosen:
        cfg = from_dict(r["config"])
        for seed in new_seeds(cfg.seed, seeds):
            key = f"{results.RECHECK}:{r['number']}:{seed}"
            # one seed at a time under the study's lock: a second recheck waits for it, then finds it done
            with files.locked(lock) if folder.is_dir() else contextlib.nullcontext():
                if key in st.user_attrs:  # read from the storage each time: another recheck's results too
                    continue
                hist = fit(cfg.replace(seed=seed), splits, device=device)
                result = {"trial": r["number"], "seed": seed, "dev_error": hist.dev_error,
                          "dev_error_se": hist.dev_error_se, "train_error": hist.train_error,
                          "best_epoch": hist.best_epoch, "epochs": hist.epochs_run, "seconds": hist.seconds,
                          "status": hist.status, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
                st.set_user_attr(key, result)
            on_result(result)
    return ranking(st, [r["number"] for r in chosen], seeds)


def ranking(st, numbers: list[int], seeds: int) -> dict[str, Any]:
    """The rechecked trials by mean dev error over their new seeds (spread: the sample standard deviation)."""
    found = results.rechecks(st.user_attrs)
    records = {r["number"]: r for r in results.trial_records(st)}
    rows = []
    for n in numbers:
        rc = found.get(n)
        if rc is None:
            continue
        rows.append({"number": n, "original_dev_error": records[n]["dev_error"],
                     "original_dev_error_se": records[n].get("dev_error_se"), **rc,
                     "params": records[n]["params"]})
    rows.sort(key=lambda r: (r["mean"], r["number"]))
    original = min(numbers, key=lambda n: (records[n]["value"], n))
    winner = results.rechecked_winner(found)
    return {"study": st.study_name, "seeds_per_trial": seeds, "trials": rows, "winner": winner,
            "original_best": original, "changed": winner is not None and winner != original,
            "z": noise.Z}
