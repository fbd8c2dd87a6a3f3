"""`tunectl recheck`: the top trials re-trained with new seeds on the study's split, each seed recorded,
ranked by the mean; a lucky winner loses its place, and show/export/evaluate then use the rechecked
winner and say so. Bad input is one line and writes nothing; two rechecks at once and a kill -9 lose
nothing and train no seed twice."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

import optuna
import pytest

import conftest
from conftest import ok_json
from tunectl.config import from_dict
from tunectl.data import DataSettings, load_splits
from tunectl.results import ATTR, open_study, trial_records
from tunectl.space import parse_space
from tunectl.train import fit

invoke = functools.partial(conftest.invoke, env={"COLUMNS": "200"})


@pytest.fixture
def root(tiny_study, tmp_path):
    return shutil.copytree(tiny_study.root, tmp_path / "studies")


def attrs(name, root):
    return open_study(name, root=root).user_attrs


def rechecked(name, root):
    return {k: v for k, v in attrs(name, root).items() if k.startswith("recheck:")}


def test_recheck_records_each_new_seed_and_ranks_by_the_mean(tiny_study, root):
    out = ok_json(invoke("recheck", tiny_study.name, "--root", root, "--top", "2", "--seeds", "2", "--json"))
    st = open_study(tiny_study.name, root=root)
    records = sorted((r for r in trial_records(st) if r["state"] == "COMPLETE"), key=lambda r: (r["value"], r["number"]))
    splits = load_splits(DataSettings.from_dict(st.user_attrs[ATTR]["data"]), include_test=False)
    found = rechecked(tiny_study.name, root)
    assert len(found) == 4
    means = {}
    for r in records[:2]:
        cfg = from_dict(r["config"])
        errors = []
        for seed in (cfg.seed + 1, cfg.seed + 2):
            # the recorded result is a real re-training with that seed (deterministic on the CPU)
            expected = fit(cfg.replace(seed=seed), splits, device="cpu").dev_error
            got = found[f"recheck:{r['number']}:{seed}"]
            assert got["dev_error"] == pytest.approx(expected, abs=1e-12) and got["seed"] == seed
            errors.append(expected)
        means[r["number"]] = statistics.fmean(errors)
    ranked = sorted(means, key=lambda n: (means[n], n))
    assert [t["number"] for t in out["trials"]] == ranked and out["winner"] == ranked[0]
    for t in out["trials"]:
        assert t["mean"] == pytest.approx(means[t["number"]]) and t["n"] == 2 and t["std"] is not None
    assert records[2]["number"] not in {t["number"] for t in out["trials"]}  # --top 2


def lucky(name, root):
    """A trial whose one run was lucky: the configuration of the study's worst trial, recorded with a
    dev error of 0 (as a seed that happened to fit the dev set would), so it leads the leaderboard."""
    st = open_study(name, root=root)
    meta = st.user_attrs[ATTR]
    worst = max((r for r in trial_records(st) if r["state"] == "COMPLETE"), key=lambda r: r["value"])
    space = parse_space(meta["space"])
    st.add_trial(optuna.trial.create_trial(
        params=worst["params"], distributions={k: v for k, v in space.distributions().items() if k in worst["params"]},
        value=0.0, user_attrs={**{k: worst[k] for k in ("params", "config", "train_error", "best_epoch")},
                               "dev_error": 0.0, "epochs_run": worst["epochs"], "reason": "complete"}))
    return st.get_trials()[-1].number


def test_a_lucky_seed_loses_its_place_and_show_export_evaluate_use_the_rechecked_winner(tiny_study, root, tmp_path):
    n = lucky(tiny_study.name, root)
    before = ok_json(invoke("show", tiny_study.name, "--root", root, "--json"))
    assert before["best"]["number"] == n and before["best"]["picked_by"] == "dev error"
    out = ok_json(invoke("recheck", tiny_study.name, "--root", root, "--top", "2", "--seeds", "2", "--json"))
    assert out["original_best"] == n and out["changed"] and out["winner"] != n
    winner = out["winner"]
    assert out["trials"][-1]["number"] == n  # its mean over new seeds is that of the worst configuration
    shown = ok_json(invoke("show", tiny_study.name, "--root", root, "--json"))
    assert shown["best"]["number"] == winner and shown["best"]["picked_by"] == "recheck"
    assert shown["best"]["rechecked"]["mean"] == pytest.approx(out["trials"][0]["mean"])
    text = invoke("show", tiny_study.name, "--root", root).stdout
    assert f"Rechecked winner: trial {winner}" in " ".join(text.split())
    exported = ok_json(invoke("export", tiny_study.name, "--root", root, "--out", tmp_path / "bundle", "--json"))
    assert exported["trial"] == winner
    plain = invoke("export", tiny_study.name, "--root", root, "--out", tmp_path / "bundle2")
    assert f"Trial {winner} is the rechecked winner" in " ".join(plain.stdout.split())
    ev = ok_json(invoke("evaluate", tiny_study.name, "--root", root, "--json"))
    assert ev["trial"] == winner and ev["picked_by"] == "recheck"
    # --trial still names any trial
    assert ok_json(invoke("evaluate", tiny_study.name, "--root", root, "--trial", n, "--refit", "--json"))["trial"] == n


@pytest.mark.parametrize("args, part", [
    (["--top", "0"], "--top 0"),
    (["--seeds", "0"], "--seeds 0"),
    (["--seeds", "101"], "--seeds 101"),
    (["--device", "banana"], "--device banana"),
    (["--top", "x"], "'x'"),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny_study, root, args, part):
    before = attrs(tiny_study.name, root)
    r = invoke("recheck", tiny_study.name, "--root", root, *args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and part in err, err
    assert attrs(tiny_study.name, root) == before


def test_a_missing_study_is_one_line(root):
    r = invoke("recheck", "nope", "--root", root)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and "nope" in r.stderr


def test_a_recheck_resumes_and_never_trains_a_seed_twice(tiny_study, root):
    ok_json(invoke("recheck", tiny_study.name, "--root", root, "--top", "1", "--seeds", "1", "--json"))
    first = rechecked(tiny_study.name, root)
    r = invoke("recheck", tiny_study.name, "--root", root, "--top", "1", "--seeds", "2")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.count(", seed ") == 1  # only the new seed was trained
    now = rechecked(tiny_study.name, root)
    assert len(now) == 2 and all(now[k] == v for k, v in first.items())


def _recheck_process(name, root, *args):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "tunectl.cli", "recheck", name, "--root", str(root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_two_rechecks_at_once_share_the_work_and_agree(tiny_study, root):
    procs = [_recheck_process(tiny_study.name, root, "--top", "2", "--seeds", "2") for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = sum(err.count(", seed ") for _, err in outs)
    assert trained == 4  # each of the 2 x 2 seeds trained by one process only
    assert len(rechecked(tiny_study.name, root)) == 4
    winners = [line for out, _ in outs for line in out.splitlines() if "holds" in line or "changed" in line]
    assert len(winners) == 2 and winners[0] == winners[1]


def test_kill_9_keeps_the_finished_seeds_and_a_rerun_completes(tiny_study, root):
    # 2 x 4 seeds of 2-epoch trainings: killed after the first is recorded, long before the eighth
    p = _recheck_process(tiny_study.name, root, "--top", "2", "--seeds", "4")
    deadline = time.time() + 120
    while time.time() < deadline and not rechecked(tiny_study.name, root):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    kept = rechecked(tiny_study.name, root)
    assert 1 <= len(kept) < 8
    ok_json(invoke("recheck", tiny_study.name, "--root", root, "--top", "2", "--seeds", "4", "--json"))
    now = rechecked(tiny_study.name, root)
    assert len(now) == 8 and all(now[k] == v for k, v in kept.items())
