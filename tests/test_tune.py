"""`tunectl tune` with tiny real studies: samplers, pruners, resume, crashes, signals, workers,
divergence, failures, and proof that tuning never touches the test split.

Most tests run the real CLI in-process (CliRunner) in tmp_path; the crash and signal tests run
it in a subprocess and watch the study's SQLite file for a RUNNING trial before they strike.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import conftest
from conftest import ok_json
from tunectl import data as data_module
from tunectl.errors import SpaceError, TunectlError
from tunectl.space import load_space
from tunectl.tune import TuneSettings, grid, prepare, study_data
from tunectl.workers import parse_timeout
from tunectl.results import checkpoint_path, open_study, trial_records

DESIGN_KEYS = {"study", "storage", "n_trials", "states", "best", "epochs_used"}
STATES = {"COMPLETE", "PRUNED", "FAIL", "RUNNING"}
BEST_KEYS = {"number", "value", "params", "train_error", "dev_error"}
# only what Optuna does not hold (the standard errors: a regression's bootstrap cannot be rebuilt)
TRIAL_ATTRS = {"train_error", "train_errors", "best_epoch", "reason", "worker", "dev_error_se", "train_error_se"}
ENQUEUED = {"enqueued", "enqueued_why"}  # the first trial of a new study: the textbook defaults, and why
RECORD_KEYS = {"params", "config", "curve", "train_error", "dev_error", "best_epoch", "epochs", "seconds", "reason",
               "worker", "checkpoint"}
CURVE_KEYS = {"epoch", "train_loss", "train_error", "running_error", "dev_loss", "dev_error", "seconds"}

TINY = """\
dataset: digits
epochs: 2
params:
  lr:        {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
  width:     {type: int, low: 8, high: 32}
  optimizer: {type: categorical, choices: [adam, momentum]}
  beta:      {type: float, low: 0.8, high: 0.99, when: {optimizer: [momentum]}}
fixed:
  depth: 1
  batch_size: 64
"""
# lr from hopeless to good, six epochs: something for the pruner to prune
PRUNABLE = """\
dataset: digits
epochs: 6
params:
  lr:    {type: float, low: 1.0e-4, high: 3.0e-1, log: true}
  width: {type: int, low: 8, high: 32}
fixed:
  depth: 1
  batch_size: 64
"""
GRID = """\
dataset: digits
epochs: 1
params:
  width: {type: categorical, choices: [8, 16]}
  lr:    {type: float, low: 0.01, high: 0.03, step: 0.01}
fixed:
  depth: 1
"""
SLOW = conftest.SLOW_SPACE

# the CLI, wide enough that rich tables print names whole
invoke = functools.partial(conftest.invoke, env={"COLUMNS": "200"})


def refused(result, *parts: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for part in parts:
        assert part in err, err
    return err


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace: space files in tmp_path, studies under tmp_path/studies, cwd there."""
    monkeypatch.chdir(tmp_path)
    for name, text in {"tiny": TINY, "prunable": PRUNABLE, "grid": GRID, "slow": SLOW}.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    return tmp_path


def tune(*args):
    return invoke("tune", "--root", "studies", "--json", *args)


def trials_of(study: str, root="studies"):
    return open_study(study, root=root).get_trials(deepcopy=False)


def records_of(study: str, root="studies") -> dict[int, dict]:
    """results.trial_records by trial number: what every reader (show, report, evaluate, ...) sees."""
    return {r["number"]: r for r in trial_records(open_study(study, root=root), Path(root) / study)}


# ----------------------------------------------------------------------------- one study, what it records


def test_tune_records_what_later_commands_need(tiny_study):
    """The shared study (conftest.py): `tune --space tiny.yaml --trials 3 --pruner none`, 2 epochs."""
    doc = tiny_study.tuned
    assert DESIGN_KEYS <= set(doc) and STATES <= set(doc["states"]) and BEST_KEYS <= set(doc["best"])
    assert doc["study"] == "digits-tiny"  # derived from the data set and the space
    assert doc["n_trials"] == 3 == doc["states"]["COMPLETE"] and doc["epochs_used"] == 6
    folder = tiny_study.folder
    assert {"study.db", "space.yaml", "split.json", "trials"} <= {p.name for p in folder.iterdir()}
    assert load_space(folder / "space.yaml").fingerprint() == load_space(tiny_study.space).fingerprint()
    records = records_of("digits-tiny", tiny_study.root)
    for t in trials_of("digits-tiny", tiny_study.root):
        assert TRIAL_ATTRS | (ENQUEUED if t.number == 0 else set()) == set(t.user_attrs), set(t.user_attrs)
        r = records[t.number]
        assert RECORD_KEYS <= set(r)
        assert r["reason"] == "complete" and r["epochs"] == 2 and len(r["curve"]) == 2
        assert all(CURVE_KEYS <= set(row) for row in r["curve"])
        assert r["dev_error"] == t.value == min(row["dev_error"] for row in r["curve"])
        assert [row["dev_error"] for row in r["curve"]] == [t.intermediate_values[e] for e in (1, 2)]
        assert 0 <= r["train_error"] <= 1 and r["best_epoch"] in (1, 2) and r["seconds"] > 0
        # the config is rebuilt from the trial's params and the study's record
        assert r["config"]["epochs"] == 2 and r["config"]["depth"] == 1 and r["params"] == {
            k: v for k, v in r["config"].items() if k in r["params"]}
        assert set(r["params"]) == set(t.params) and all(r["params"][k] == v for k, v in t.params.items())
        assert json.loads((folder / "trials" / str(t.number) / "curve.json").read_text()) == r["curve"]
        # each epoch's train error, exactly: misclassified examples of the fixed training sample, as large
        # as the dev split (train.train_sample: min(dev, train, 10,000))
        sizes = open_study("digits-tiny", root=tiny_study.root).user_attrs["tunectl"]["manifest"]["sizes"]
        n = min(sizes["dev"], sizes["train"], 10_000)
        assert t.user_attrs["train_errors"]["of"] == n
        assert [w / n for w in t.user_attrs["train_errors"]["wrong"]] == [row["train_error"] for row in r["curve"]]
        assert checkpoint_path(folder, r) is not None  # three trials, three kept
    best = min(trials_of("digits-tiny", tiny_study.root), key=lambda t: t.value)
    assert doc["best"]["number"] == best.number and doc["best"]["params"] == records[best.number]["params"]


def test_a_bad_space_is_one_line_and_makes_nothing(ws):
    (ws / "bad.yaml").write_text(TINY.replace("  width:", "  widht:"))
    refused(tune("--space", "bad.yaml", "--trials", "1"), "bad.yaml", "params.widht", "did you mean 'width'?")
    (ws / "bad.yaml").write_text(TINY.replace("log: true}", "log: true"))
    refused(tune("--space", "bad.yaml", "--trials", "1"), "bad.yaml", "line ", "YAML")
    refused(tune("--space", "tiny.yaml", "--timeout", "soon"), "--timeout 'soon'")
    assert not (ws / "studies").exists()


def test_parse_timeout():
    assert [parse_timeout(t) for t in ("90s", "30m", "8h", "1h30m", "45")] == [90, 1800, 28800, 5400, 45]
    assert parse_timeout(None) is None
    for bad in ("soon", "0s", "-5m", "h", ""):
        with pytest.raises(TunectlError, match="90s, 30m, 8h"):
            parse_timeout(bad)


def test_timeout_alone_stops_the_study(ws):
    start = time.time()
    doc = ok_json(tune("--space", "tiny.yaml", "--timeout", "2s", "--pruner", "none"))
    assert doc["states"]["COMPLETE"] >= 1 and doc["states"]["RUNNING"] == 0
    assert time.time() - start < 60  # the running trial finishes, then no new one starts


# ----------------------------------------------------------------------------- samplers and pruners


@pytest.mark.parametrize("sampler, pruner", [("tpe", "hyperband"), ("random", "halving"), ("cmaes", "median"),
                                             ("qmc", "none")])
def test_each_sampler_and_pruner_runs(ws, sampler, pruner):
    doc = ok_json(tune("--space", "tiny.yaml", "--trials", "3", "--sampler", sampler, "--pruner", pruner,
                       "--study", f"{sampler}-{pruner}"))
    st = doc["states"]
    assert st["FAIL"] == 0 and st["RUNNING"] == 0 and st["COMPLETE"] + st["PRUNED"] == 3 and st["COMPLETE"] >= 1
    meta = open_study(f"{sampler}-{pruner}", root="studies").user_attrs["tunectl"]
    assert (meta["sampler"], meta["pruner"]) == (sampler, pruner)


def test_grid_sampler_visits_every_point_once(ws):
    doc = ok_json(tune("--space", "grid.yaml", "--trials", "10", "--sampler", "grid", "--pruner", "none"))
    assert doc["n_trials"] == 6 == doc["states"]["COMPLETE"]  # 2 widths x 3 lrs: the grid ends the study
    points = {(t.params["width"], round(t.params["lr"], 6)) for t in trials_of("digits-grid")}
    assert points == {(w, lr) for w in (8, 16) for lr in (0.01, 0.02, 0.03)}


def test_grid_needs_a_grid_able_space(ws):
    assert set(grid(load_space("grid.yaml"))) == {"width", "lr"}
    with pytest.raises(SpaceError, match="grid needs choices or a step"):
        grid(load_space("tiny.yaml"))
    refused(tune("--space", "tiny.yaml", "--trials", "1", "--sampler", "grid"), "params.lr", "choices or a step")
    refused(tune("--space", "tiny.yaml", "--trials", "1", "--sampler", "bayes"), "--sampler 'bayes'", "tpe")
    refused(tune("--space", "tiny.yaml", "--trials", "1", "--pruner", "asha"), "--pruner 'asha'", "hyperband")
    assert not (ws / "studies").exists() or not any((ws / "studies").iterdir())  # nothing made


@pytest.mark.slow
def test_hyperband_prunes_hopeless_trials(ws):
    doc = ok_json(tune("--space", "prunable.yaml", "--trials", "8", "--sampler", "random"))
    assert doc["states"]["PRUNED"] >= 2, doc["states"]
    records = records_of("digits-prunable")
    pruned = [r for r in records.values() if r["state"] == "PRUNED"]
    for r in pruned:
        k = r["epochs"]
        assert r["reason"] == f"pruned at epoch {k}" and 1 <= k < 6 and len(r["curve"]) == k
        assert checkpoint_path(ws / "studies" / "digits-prunable", r) is None  # no weights kept
    assert doc["epochs_saved"] == sum(6 - r["epochs"] for r in pruned) > 0
    assert doc["epochs_used"] < 8 * 6
    folder = ws / "studies" / "digits-prunable"
    kept = [n for n, r in records.items() if checkpoint_path(folder, r)]
    assert len(kept) == min(3, doc["states"]["COMPLETE"])  # the best three only
    # the dropped ones are gone whole: no file, and no longer listed for optuna-dashboard
    assert len(list((folder / "artifacts").iterdir())) == len(kept)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # as `tunectl tune` (quiet_optuna)
@pytest.mark.parametrize("epochs, state, reason", [(1, "COMPLETE", "complete"), (2, "PRUNED", "pruned at epoch 1")])
def test_a_trial_is_never_pruned_at_its_last_epoch(tmp_path, epochs, state, reason):
    """A pruner that prunes everything (Optuna's ThresholdPruner above 0) stops a 2-epoch trial after its first
    epoch, but a trial at its last epoch has cost all it will: it is recorded complete, with its checkpoint,
    never pruned (a Hyperband rung can fall on the last epoch: 3 epochs x 3 in a space of 9)."""
    import optuna

    from tunectl import tune
    from tunectl.data import DataSettings, load_splits
    from tunectl.objective import Objective
    from tunectl.space import parse_space

    space = parse_space({"model": "mlp", "dataset": "digits", "epochs": epochs,
                         "params": {"lr": {"type": "float", "low": 0.01, "high": 0.02}}, "fixed": {"width": 8}}, "pins")
    settings = tune.TuneSettings(space, {"dataset": "digits"}, "pins-last", root=str(tmp_path), keep=0, device="cpu")
    splits = load_splits(DataSettings("digits"), include_test=False)
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    study.optimize(Objective(settings, splits, tune.base_config(settings), "cpu"), n_trials=1)
    t = study.trials[0]
    assert (t.state.name, t.user_attrs["reason"]) == (state, reason)


# ----------------------------------------------------------------------------- resume, and refusing to


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A study run to 3 trials, resumed to 6, then the same command again; what each step said."""
    root = tmp_path_factory.mktemp("resume")
    (root / "tiny.yaml").write_text(TINY)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        steps = {
            "first": ok_json(tune("--space", "tiny.yaml", "--trials", "3", "--pruner", "none")),
            "show3": ok_json(invoke("show", "digits-tiny", "--root", "studies", "--json")),
            "second": ok_json(tune("--space", "tiny.yaml", "--trials", "6", "--pruner", "none")),
            "again": ok_json(tune("--space", "tiny.yaml", "--trials", "6", "--pruner", "none")),
        }
    return root, steps


def test_resume_adds_trials_to_the_same_study(resumed):
    root, steps = resumed
    assert steps["first"]["n_trials"] == 3 and steps["second"]["n_trials"] == 6
    assert steps["again"]["n_trials"] == 6  # the target was reached: the same command adds none
    trials = trials_of("digits-tiny", root / "studies")
    assert [t.number for t in trials] == list(range(6))
    # the resumed sampler does not replay the first run's configurations
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 6
    assert steps["second"]["best"]["value"] <= steps["first"]["best"]["value"]


@pytest.mark.parametrize("change, message", [
    (("--space", "wider.yaml", "--study", "digits-tiny"), "different search space"),
    (("--space", "tiny.yaml", "--dataset", "iris", "--study", "digits-tiny"), "started on data set 'digits'"),
    (("--space", "tiny.yaml", "--split-seed", "1"), "split"),
])
def test_resume_with_other_space_or_data_is_refused(resumed, monkeypatch, change, message):
    root, _ = resumed
    monkeypatch.chdir(root)
    (root / "wider.yaml").write_text(TINY.replace("high: 1.0e-1", "high: 3.0e-1"))
    err = refused(tune("--trials", "8", "--pruner", "none", *change), "digits-tiny", message)
    assert "--study" in err  # says how to start a new one instead
    assert len(trials_of("digits-tiny", root / "studies")) == 6  # the study is unchanged


# ----------------------------------------------------------------------------- studies and show


def test_studies_and_show_print_and_their_json(resumed, monkeypatch):
    root, steps = resumed
    monkeypatch.chdir(root)
    rows = ok_json(invoke("studies", "--root", "studies", "--json"))
    row = next(r for r in rows if r["study"] == "digits-tiny")
    assert row["dataset"] == "digits" and row["n_trials"] == 6 and row["states"]["COMPLETE"] == 6
    assert row["best_dev_error"] == pytest.approx(steps["second"]["best"]["value"]) and row["last_activity"]
    text = invoke("studies", "--root", "studies")
    assert text.exit_code == 0 and "digits-tiny" in text.stdout and "digits" in text.stdout

    doc = ok_json(invoke("show", "digits-tiny", "--root", "studies", "--json", "--top", "2"))
    assert DESIGN_KEYS <= set(doc) and STATES <= set(doc["states"]) and BEST_KEYS <= set(doc["best"])
    assert doc["n_trials"] == 6 and len(doc["leaderboard"]) == 2 and doc["epochs_used"] == 12
    assert [r["number"] for r in doc["leaderboard"]][:1] == [doc["best"]["number"]]
    # importances once five trials are complete; not before
    assert steps["show3"]["importances"] is None
    assert set(doc["importances"]) >= {"lr", "width"} and sum(doc["importances"].values()) == pytest.approx(1, abs=0.01)
    text = invoke("show", "digits-tiny", "--root", "studies")
    assert text.exit_code == 0
    for part in ("digits-tiny", "Leaderboard", f"Best trial {doc['best']['number']}", "importances"):
        assert part in text.stdout, text.stdout
    refused(invoke("show", "nope", "--root", "studies"), "nope")


# ----------------------------------------------------------------------------- divergence and failures


def test_a_diverging_trial_is_pruned_as_diverged(ws):
    (ws / "div.yaml").write_text(TINY.replace("  depth: 1\n", "  depth: 1\n  optimizer: sgd\n").replace(
        "  optimizer: {type: categorical, choices: [adam, momentum]}\n", "").replace(
        "  beta:      {type: float, low: 0.8, high: 0.99, when: {optimizer: [momentum]}}\n", "").replace(
        "low: 1.0e-3, high: 1.0e-1", "low: 1.0e+6, high: 1.0e+7"))
    doc = ok_json(tune("--space", "div.yaml", "--trials", "2", "--epochs", "5"))
    assert doc["states"]["PRUNED"] == 2 and doc["states"]["FAIL"] == 0 and doc["best"] is None
    for r in records_of("digits-div").values():
        curve = r["curve"]
        assert r["reason"] == "diverged" and r["epochs"] == len(curve)
        assert curve[-1]["dev_error"] is None and curve[-1]["train_loss"] is None  # NaN is stored as null
        assert len(curve) < 5  # stopped at the NaN, not run to the end


def test_a_trial_that_raises_is_failed_and_the_study_goes_on(ws):
    # cnn on iris (4 numbers a row) raises in fit; mlp trials are fine
    (ws / "mixed.yaml").write_text("dataset: iris\nepochs: 2\nparams:\n"
                                   "  model: {type: categorical, choices: [mlp, cnn]}\n"
                                   "  width: {type: int, low: 4, high: 16}\nfixed:\n  batch_size: 16\n")
    doc = ok_json(tune("--space", "mixed.yaml", "--trials", "4", "--sampler", "random", "--pruner", "none"))
    assert doc["states"]["COMPLETE"] == 4 and doc["states"]["FAIL"] >= 1
    records = records_of("iris-mixed")
    for t in trials_of("iris-mixed"):
        record = records[t.number]
        if t.state.name == "FAIL":
            assert t.params["model"] == "cnn"
            assert record["reason"].startswith("failed: ConfigError: model=cnn needs image data"), record["reason"]
        else:
            assert t.params["model"] == "mlp" and record["reason"] == "complete"


def test_ten_failures_in_a_row_stop_the_study(ws):
    (ws / "broken.yaml").write_text("dataset: iris\nepochs: 2\nparams:\n"
                                    "  model: {type: categorical, choices: [cnn]}\n"
                                    "  width: {type: int, low: 4, high: 16}\nfixed:\n  batch_size: 16\n")
    result = tune("--space", "broken.yaml", "--trials", "50")
    # not bad input that was refused, but a run that failed: exit 1, one line
    assert result.exit_code == 1, (result.exit_code, result.stderr, result.exception)
    err = result.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "10 trials failed in a row" in err and "the last: failed: ConfigError: model=cnn needs image data" in err
    assert "resume" in err
    trials = trials_of("iris-broken")
    assert len(trials) == 10 and all(t.state.name == "FAIL" for t in trials)


# ----------------------------------------------------------------------------- the test split is sealed


def test_tuning_never_touches_the_test_split(ws, monkeypatch):
    touched = []
    real_make_splits = data_module.make_splits

    def make_splits(*args, **kwargs):
        include_test = kwargs.get("include_test", args[4] if len(args) > 4 else False)
        if include_test:
            touched.append("make_splits(include_test=True)")
        return real_make_splits(*args, **kwargs)

    def test_split(self):
        touched.append("Splits.test")
        raise AssertionError("the test split was read while tuning")

    sealed_test = data_module.Splits.test  # the real property: raises while the test split is sealed
    monkeypatch.setattr(data_module, "make_splits", make_splits)
    monkeypatch.setattr(data_module.Splits, "test", property(test_split))
    doc = ok_json(tune("--space", "prunable.yaml", "--trials", "5", "--epochs", "3"))
    assert doc["states"]["FAIL"] == 0 and doc["states"]["COMPLETE"] >= 1
    ok_json(invoke("show", "digits-prunable", "--root", "studies", "--json"))
    space = dataclasses.replace(load_space("prunable.yaml"), epochs=3)
    settings = TuneSettings(space, {"dataset": "digits", "data_dir": "data", "split_seed": 0}, "digits-prunable",
                            root="studies")
    worker_splits = study_data(settings)  # what each worker process loads
    _, splits = prepare(settings)
    assert touched == []
    monkeypatch.setattr(data_module.Splits, "test", sealed_test)
    for loaded in (worker_splits, splits):  # neither holds the test split: asking for it is refused
        with pytest.raises(RuntimeError, match="sealed"):
            loaded.test
    # the manifest still records the test split's size and hash, so evaluate can check it is the same
    manifest = json.loads((ws / "studies" / "digits-prunable" / "split.json").read_text())
    assert manifest["sizes"]["test"] > 0


# ----------------------------------------------------------------------------- workers, crashes and signals


@pytest.mark.slow
def test_four_workers_share_one_study_without_lock_errors(ws, capfd):
    result = tune("--space", "tiny.yaml", "--trials", "8", "--jobs", "4", "--pruner", "none", "--study", "four")
    doc = ok_json(result)
    stderr = capfd.readouterr().err + result.stderr  # the workers' stderr, and the command's
    assert "database is locked" not in stderr and "Traceback" not in stderr, stderr[-2000:]
    st = doc["states"]
    assert doc["n_trials"] == sum(st.values()) and st["RUNNING"] == 0 and st["FAIL"] == 0
    assert 8 <= st["COMPLETE"] + st["PRUNED"] <= 8 + 3  # the others' last trials may finish after the 8th
    trials = trials_of("four")
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # no number twice, none missing
    assert not any("locked" in str(t.user_attrs.get("reason", "")) for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) >= 2  # really several processes


@pytest.fixture
def procs():
    """Subprocesses a test started; any still running at its end (a failed test) are killed."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_tune(procs: list, ws: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tunectl.cli", "tune", "--root", "studies", "--space", "slow.yaml",
           "--heartbeat", "1", "--pruner", "none", *args]
    # a shell may start background jobs with SIGINT ignored; the child must see it as a user would
    proc = subprocess.Popen(cmd, cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    procs.append(proc)
    return proc


def query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute(sql).fetchall()
    except sqlite3.Error:  # tables not made yet
        return []


def states_in(db: Path) -> dict[int, str]:
    return dict(query(db, "SELECT number, state FROM trials"))


def wait_running(proc: subprocess.Popen, db: Path, beating: bool = False, timeout: float = 180) -> int:
    """The number of the first trial seen RUNNING (with a heartbeat recorded, if `beating`)."""
    sql = "SELECT number FROM trials WHERE state = 'RUNNING'"
    if beating:
        sql = ("SELECT t.number FROM trials t JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
               "WHERE t.state = 'RUNNING'")
    deadline = time.time() + timeout
    while time.time() < deadline:
        running = [row[0] for row in query(db, sql)]
        if running:
            return running[0]
        if proc.poll() is not None:
            raise AssertionError(f"tune exited ({proc.returncode}) before a trial ran: {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no trial RUNNING within {timeout} s")


@pytest.mark.slow
def test_kill_9_mid_trial_then_resume_retries_the_killed_trial(ws, procs):
    db = ws / "studies" / "crash" / "study.db"
    proc = start_tune(procs, ws, "--study", "crash", "--trials", "3")
    killed = wait_running(proc, db, beating=True)
    time.sleep(0.3)  # in the middle of training
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert states_in(db)[killed] == "RUNNING"  # nobody could record it: the heartbeat must tell
    time.sleep(4.5)  # past the grace period, 3 x --heartbeat 1
    doc = ok_json(tune("--space", "slow.yaml", "--heartbeat", "1", "--pruner", "none", "--study", "crash",
                       "--trials", str(killed + 1)))
    assert doc["states"]["RUNNING"] == 0
    trials = {t.number: t for t in trials_of("crash")}
    assert trials[killed].state.name == "FAIL" and records_of("crash")[killed]["reason"] == "worker died"
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == killed]
    assert len(retries) == 1, {n: t.user_attrs.get("retry_of") for n, t in trials.items()}
    retry = retries[0]
    assert retry.state.name == "COMPLETE" and retry.params == trials[killed].params
    assert retry.user_attrs["worker"] != trials[killed].user_attrs["worker"]  # another process ran it
    assert all(t.state.name != "RUNNING" for t in trials.values())


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_stops_cleanly_and_resumes(ws, procs, sig):
    db = ws / "studies" / "stop" / "study.db"
    proc = start_tune(procs, ws, "--study", "stop", "--trials", "3")
    interrupted = wait_running(proc, db)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    # exit 130 after the clean stop and its summary: `tunectl tune ... && tunectl evaluate ...` stops here
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    assert "Stopped. Resume with the same command" in out and "stop" in out and "trials " in out  # the summary
    assert "RUNNING" not in states_in(db).values()
    stopped = {t.number: t for t in trials_of("stop")}[interrupted]
    assert stopped.state.name == "FAIL" and stopped.user_attrs["reason"] == "interrupted"
    # the same study resumes: one more finished trial, and nothing left RUNNING
    finished = sum(s in ("COMPLETE", "PRUNED") for s in states_in(db).values())
    doc = ok_json(tune("--space", "slow.yaml", "--heartbeat", "1", "--pruner", "none", "--study", "stop",
                       "--trials", str(finished + 1)))
    assert doc["states"]["COMPLETE"] + doc["states"]["PRUNED"] == finished + 1 and doc["states"]["RUNNING"] == 0


@pytest.mark.slow
def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed(ws):
    # Optuna times trials out by their last heartbeat: one killed before the first had none
    settings = TuneSettings(load_space("tiny.yaml"), {"dataset": "digits", "data_dir": "data", "split_seed": 0},
                            "orphan", root="studies")
    study, _ = prepare(settings)  # the study, as `tunectl tune` makes it
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna's note that ask() records no heartbeat
        orphan = study.ask()  # RUNNING, never signed by a worker, no heartbeat
    time.sleep(3.5)  # past the grace period, 3 x --heartbeat 1
    doc = ok_json(tune("--space", "tiny.yaml", "--trials", "1", "--heartbeat", "1", "--study", "orphan"))
    assert doc["states"]["RUNNING"] == 0 and doc["states"]["FAIL"] == 1 and doc["states"]["COMPLETE"] >= 1
    record = records_of("orphan")[orphan.number]
    assert record["state"] == "FAIL" and record["reason"] == "worker died before the trial started"
