"""One study, many workers, on a real PostgreSQL server (Optuna's distributed mode).

The server comes from $TUNECTL_PG_URL (.ci/run starts one), else a throwaway one started
here from Debian's binaries (tests/pg.py); when neither is possible (or psycopg2 is missing)
the tests are skipped with the reason (shown by pytest -ra), except under CI=true, where that
fails them (pg.require_or_skip): CI never skips the server. Workers are real `tunectl tune` processes, each in
its own folder (no shared folder, as on separate machines) but for the --artifacts path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

import pg
from conftest import invoke

TUNECTL = [sys.executable, "-m", "tunectl.cli"]
SPACE = """\
model: mlp
dataset: digits
epochs: 2
params:
  lr:    {type: float, low: 3.0e-3, high: 1.0e-1, log: true}
  width: {type: int, low: 8, high: 32, log: true}
fixed:
  batch_size: 64
"""


@pytest.fixture(scope="session")
def pg_url():
    pg.require_module("psycopg2", "psycopg2 is not installed: pip install 'tunectl[postgres]'")
    url = os.environ.get("TUNECTL_PG_URL")
    if url:  # CI started it: a server that does not answer is a failure, not a skip
        yield url
        return
    try:
        server = pg.start()
    except pg.Unavailable as e:
        pg.require_or_skip(f"no PostgreSQL server could be started: {e}")
    try:
        yield server.url
    finally:
        server.stop()


def password(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).password


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_study(url: str, name: str, folder: Path, **kw):
    """The first worker's part: the study on the server, holding everything others need."""
    from tunectl.space import parse_space
    from tunectl.tune import TuneSettings, prepare

    space = parse_space(yaml.safe_load(SPACE), "space.yaml")
    settings = TuneSettings(space, {"dataset": "digits", "data_dir": "data", "split_seed": 0}, name, url,
                            str(folder / "studies"), **kw)
    prepare(settings)
    return settings


def worker(url: str, name: str, cwd: Path, *extra: str) -> subprocess.Popen:
    """`tunectl tune --storage URL --study NAME` with no --space, in a folder of its own."""
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*TUNECTL, "tune", "--storage", url, "--study", name, "--jobs", "1", "--json", *extra],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_workers_share_one_study_and_retry_a_killed_workers_trial(pg_url, tmp_path):
    """A worker is killed (-9) mid-trial; then three workers on three "machines" finish the study.

    All of them join with only --storage and --study: the space and data come from the study.
    One process set-up costs several seconds of imports, so one scenario covers both claims.
    """
    from tunectl.models import load_checkpoint
    from tunectl.results import checkpoint_path

    name, shared, target = unique("workers"), tmp_path / "shared-artifacts", 6
    create_study(pg_url, name, tmp_path / "first", artifacts=str(shared))
    victim = worker(pg_url, name, tmp_path / "victim", "--trials", str(target), "--heartbeat", "1")
    deadline = time.time() + 120
    while time.time() < deadline:  # mid-trial: running, its config chosen (so its heartbeat has begun)
        running = [t for t in trial_attrs(pg_url, name) if t["state"] == "RUNNING" and t["config"]]
        if running:
            break
        assert victim.poll() is None, victim.communicate()[1][-2000:]
        time.sleep(0.2)
    else:
        pytest.fail("the worker never started a trial")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    time.sleep(3.5)  # three heartbeats missed: stale for any worker with --heartbeat 1

    procs = [worker(pg_url, name, tmp_path / f"machine{i}", "--trials", str(target), "--heartbeat", "1")
             for i in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert password(pg_url) not in out + err
    docs = [json.loads(out) for out, _ in outs]
    assert all(d["storage"] == pg_url.replace(password(pg_url), "***") for d in docs)
    assert all(d["study"] == name and d["n_trials"] >= target for d in docs)

    records = trial_attrs(pg_url, name)
    assert [r["number"] for r in records] == list(range(len(records)))  # no duplicate numbers, none missing
    killed, rest = records[0], records[1:]
    assert killed["state"] == "FAIL" and killed["reason"] == "worker died"
    assert all(r["state"] in ("COMPLETE", "PRUNED") for r in rest), [r["state"] for r in rest]  # all accounted for
    assert target <= len(rest) <= target + 2  # each worker stops at the target (the others may be mid-trial)
    retried = [r for r in rest if r["retry_of"] == 0]
    assert len(retried) == 1 and retried[0]["params"] == killed["params"]
    assert retried[0]["worker"] != killed["worker"]
    assert len({r["worker"] for r in rest}) >= 2  # the trials were shared out

    # the best is the same from every worker's folder: it comes from the server, not a file
    best = min((r for r in rest if r["state"] == "COMPLETE"), key=lambda r: r["value"])
    for i in range(3):
        result = invoke("show", name, "--storage", pg_url, "--json", cwd=tmp_path / f"machine{i}")
        assert result.exit_code == 0, result.stderr
        shown = json.loads(result.stdout)["best"]
        assert (shown["number"], shown["value"]) == (best["number"], best["value"])

    # checkpoints went to the shared artifact folder (the study's, given to no worker); the best few stay
    assert 1 <= len(list(shared.iterdir())) <= 3 + 1  # +1: two trials finishing at the same moment
    path = checkpoint_path(tmp_path / "first" / "studies" / name, best)
    assert path is not None and path.parent == shared.resolve()
    assert load_checkpoint(path)["trial"] == best["number"]


def trial_attrs(url: str, name: str) -> list[dict]:
    """trial_records: each trial with the worker that ran it, in trial-number order."""
    from tunectl.results import open_study, trial_records

    return trial_records(open_study(name, url))  # each record names its worker


@pytest.fixture(scope="module")
def small_study(pg_url, tmp_path_factory):
    """A study with two finished trials, made through the CLI (in process)."""
    folder = tmp_path_factory.mktemp("masking")
    (folder / "space.yaml").write_text(SPACE)
    name = unique("small")
    result = invoke("tune", "--space", "space.yaml", "--study", name, "--storage", pg_url, "--trials", "2",
                    "--json", cwd=folder)
    assert result.exit_code == 0, result.stderr
    return name, folder


def test_a_worker_with_other_data_is_refused(pg_url, small_study):
    name, folder = small_study
    result = invoke("tune", "--study", name, "--storage", pg_url, "--trials", "3", "--split-seed", "1", cwd=folder)
    assert result.exit_code == 2
    assert "do not produce the study's split" in result.stderr and "split seed 0" in result.stderr
    result = invoke("tune", "--study", name, "--storage", pg_url, "--trials", "3", "--dataset", "iris", cwd=folder)
    assert result.exit_code == 2 and "started on data set 'digits', not 'iris'" in result.stderr
    assert len(trial_attrs(pg_url, name)) == 2  # nothing ran


def test_the_password_is_never_printed(pg_url, small_study):
    name, folder = small_study
    secret = password(pg_url)
    outputs = []
    for args in (["studies"], ["studies", "--json"], ["show", name], ["show", name, "--json"],
                 ["show", "no-such-study"]):
        result = invoke(*args, "--storage", pg_url, cwd=folder)
        outputs.append(result.stdout + result.stderr)
        assert secret not in outputs[-1]
    rows = json.loads(outputs[1])
    assert any(r["study"] == name for r in rows)
    assert all(r["storage"] == pg_url.replace(secret, "***") for r in rows)
    assert json.loads(outputs[3])["storage"] == pg_url.replace(secret, "***")
    assert "no study 'no-such-study'" in outputs[4] and ":***@" in outputs[4]
    # a refused login: the driver's error, with no password in it
    wrong = pg_url.replace(secret, "Wrong-Secret-123")
    result = invoke("show", name, "--storage", wrong, cwd=folder)
    assert result.exit_code == 2 and "password authentication failed" in result.stderr, result.stderr
    assert "Wrong-Secret-123" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["studies"], ["show", "s"], ["tune", "--study", "s"],
                                     ["tune", "--study", "s", "--space", "searchspaces/quick.yaml"]])
def test_an_unreachable_server_is_one_line_in_seconds(command):
    url = f"postgresql://tunectl:Sekrit-42@127.0.0.1:{pg.free_port()}/tunectl"  # nothing listens there
    start = time.time()
    result = invoke(*command, "--storage", url, cwd=Path(__file__).resolve().parents[1])
    assert time.time() - start < 10
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot open storage postgresql://tunectl:***@127.0.0.1" in lines[0]
    assert "Connection refused" in lines[0] and "Sekrit-42" not in result.stderr + result.stdout


def fresh_schema(url: str) -> str:
    """`url` with its own empty schema: a database as fresh as a new one, without CREATE DATABASE."""
    import psycopg2

    schema = f"t_{uuid.uuid4().hex[:8]}"
    con = psycopg2.connect(url, connect_timeout=10)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    con.close()
    return f"{url}?options=-csearch_path%3D{schema}"


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_workers_starting_together_on_a_fresh_database_all_get_in(kind, request, tmp_path):
    """Each worker's first connection creates Optuna's tables; started together, all but one used
    to lose that race (duplicate key / table already exists) and exit."""
    import threading

    from tunectl.storage import open_storage

    url = fresh_schema(request.getfixturevalue("pg_url")) if kind == "postgresql" else f"sqlite:///{tmp_path}/s.db"
    errors: list[str] = []

    def join() -> None:
        try:
            open_storage(url)
        except Exception as e:  # noqa: BLE001 - collected, asserted below
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=join) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ----------------------------------------------------------------------------- the cluster examples

CLUSTER_SPACE = """\
dataset: digits
epochs: 2
params:
  lr:    {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
  width: {type: int, low: 8, high: 32}
fixed:
  depth: 1
  batch_size: 64
"""
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def cluster_commands(kind: str, env: dict[str, str]) -> list[str]:
    """What one task (Slurm) or pod (Kubernetes) of the example runs, exactly as the file says."""
    import re

    if kind == "slurm":
        return ["bash", str(EXAMPLES / "slurm" / "tune-array.sbatch")]  # #SBATCH lines are comments to bash
    doc = yaml.safe_load((EXAMPLES / "kubernetes" / "tune-workers.yaml").read_text())
    assert doc["kind"] == "Job" and doc["spec"]["completionMode"] == "Indexed"
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    # the pod's env: the file's values, the secret's URL, then this test's overrides (small and local)
    secret = [e for e in container["env"] if "valueFrom" in e]
    assert [e["name"] for e in secret] == ["TUNECTL_STORAGE"]  # the password only from the secret
    values = {e["name"]: e["value"] for e in container["env"] if "value" in e} | env
    return [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], word) for word in container["command"]]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["slurm", "kubernetes"])
def test_the_cluster_examples_run_three_workers_on_one_study(pg_url, tmp_path, kind):
    """examples/slurm/tune-array.sbatch and examples/kubernetes/tune-workers.yaml: their own command,
    three at once (three tasks or pods, each in its own folder: no shared disk but --artifacts) on
    one PostgreSQL study; one creates it, the others join, the study gets its trials."""
    from tunectl.results import open_study, runs, trial_records

    (tmp_path / "space.yaml").write_text(CLUSTER_SPACE)
    name = unique(f"cluster-{kind}")
    env = {"TUNECTL_STORAGE": pg_url, "TUNECTL_SPACE": str(tmp_path / "space.yaml"), "TUNECTL_DATASET": "digits",
           "TUNECTL_STUDY": name, "TUNECTL_ARTIFACTS": str(tmp_path / "shared"), "TUNECTL_TRIALS": "6",
           "TUNECTL_TIMEOUT": "10m", "TUNECTL_JOBS": "1", "SLURM_CPUS_PER_TASK": "1"}
    command = cluster_commands(kind, env)
    procs = []
    for i in range(3):
        home = tmp_path / f"node-{i}"
        home.mkdir()
        procs.append(subprocess.Popen(command, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, **env, "HOME": str(home),
                                           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}))
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-800:] for o in outs]
    study = open_study(name, pg_url)
    records = trial_records(study)
    done = [r for r in records if r["state"] in ("COMPLETE", "PRUNED")]
    assert 6 <= len(done) <= 6 + 2  # the study's target (machines apart may each start one more at the end)
    assert {r["state"] for r in records} <= {"COMPLETE", "PRUNED"}
    ran = runs(study)  # every task recorded itself in the study: the same command, three processes
    assert len(ran) == 3 and len({r["pid"] for r in ran}) == 3
    assert all(r["command"].startswith("tunectl tune --space") for r in ran)
    assert pg_url.split("@")[0].split(":")[-1] not in json.dumps(ran)  # no password in what was recorded
    kept = [r for r in records if r["checkpoint"]]
    best3 = sorted((r for r in records if r["state"] == "COMPLETE"), key=lambda r: (r["value"], r["number"]))[:3]
    # the best three always keep theirs; trials finishing at once on three workers may leave one more each
    assert {r["number"] for r in best3} <= {r["number"] for r in kept} and len(kept) <= 3 + 2
    assert all(Path(r["checkpoint"]).parent == (tmp_path / "shared").resolve() for r in kept)
    assert all(Path(r["checkpoint"]).is_file() for r in kept)  # every listed checkpoint is there
