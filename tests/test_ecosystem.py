"""tunectl studies read by clients nobody on the project wrote: the `optuna` CLI, a headless browser.

One real study of searchspaces/mlp.yaml (2 trials, its full 30 epochs), on a storage and an
artifact folder shared the way two machines share them (one SQLite file and one folder, each
"machine" with its own working folder and studies/ root). It checks what optuna-dashboard and
`optuna studies` show: small user attributes; a test look seen from the other machine; and the
morning report in headless Chromium (skipped, saying why, where Chromium is not installed; under
CI=true, which installs it, a failure).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import pg
from conftest import invoke, ok_json

REPO = Path(__file__).resolve().parent.parent
MAX_ATTR_BYTES = 600  # a trial's user attributes, as JSON: what the dashboard's trial page and `optuna trials` show


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """`tunectl tune --space mlp` on machine A: a shared storage and artifact folder, A's own studies/."""
    tmp = tmp_path_factory.mktemp("eco")
    a, b = tmp / "machine-a", tmp / "machine-b"
    a.mkdir()
    b.mkdir()
    url = f"sqlite:///{tmp / 'shared.db'}"
    tuned = ok_json(invoke("tune", "--space", "mlp", "--study", "mlp", "--storage", url, "--artifacts",
                           tmp / "artifacts", "--trials", 2, "--pruner", "none", "--device", "cpu", "--json", cwd=a))
    return {"tmp": tmp, "a": a, "b": b, "url": url, "tuned": tuned}


def study(shared):
    from tunectl.results import open_study

    return open_study("mlp", shared["url"], shared["a"] / "studies")


@pytest.mark.slow
def test_a_trial_keeps_at_most_600_bytes_of_user_attributes(shared):
    import optuna

    trials = study(shared).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for t in trials:
        assert len(t.intermediate_values) == 30  # mlp.yaml's whole budget: the longest record a trial makes
        size = len(json.dumps(t.user_attrs))
        assert size <= MAX_ATTR_BYTES, (size, t.user_attrs)
        assert not {"params", "config", "curve", "dev_error", "checkpoint"} & set(t.user_attrs)


@pytest.mark.slow
def test_the_optuna_cli_reads_a_tunectl_study(shared):
    optuna_cli = shutil.which("optuna") or str(Path(sys.executable).parent / "optuna")
    if not Path(optuna_cli).exists():
        pg.require_or_skip("the `optuna` command is not installed next to this Python")
    run = lambda *args: json.loads(subprocess.run(  # noqa: E731
        [optuna_cli, *args, "--storage", shared["url"], "-f", "json"], capture_output=True, text=True, check=True,
        timeout=120).stdout)
    (listed,) = run("studies")
    assert listed["name"] == "mlp" and listed["n_trials"] == 2 and listed["direction"] == ["MINIMIZE"]
    trials = run("trials", "--study-name", "mlp")
    # the objective by its name (set_metric_names), at full precision
    values = {t["number"]: t["value"] for t in trials}
    assert values == {t.number: {"dev error": t.value} for t in study(shared).get_trials(deepcopy=False)}
    best = run("best-trial", "--study-name", "mlp")
    assert best["number"] == shared["tuned"]["best"]["number"]
    assert best["value"] == {"dev error": shared["tuned"]["best"]["value"]}
    assert "lr" in best["params"] and "curve" not in json.dumps(best)


@pytest.mark.slow
def test_a_look_at_the_test_set_is_seen_from_another_machine(shared):
    """Machine B has no evaluations.json of A's; the look recorded in the study tells it."""
    args = ("evaluate", "mlp", "--storage", shared["url"], "--device", "cpu", "--json")
    first = ok_json(invoke(*args, cwd=shared["a"]))
    assert first["evaluated_before"] is False and first["evaluations"] == 1
    second = ok_json(invoke(*args, cwd=shared["b"]))
    assert second["evaluated_before"] is True and second["evaluations"] == 2 and second["warning"]
    assert second["test_error"] == first["test_error"]  # the same kept checkpoint, from the shared folder
    from tunectl.results import LOOK_PREFIX, test_looks

    third = ok_json(invoke(*args, cwd=shared["a"]))  # one process, often the same second: still its own look
    assert third["evaluated_before"] is True and third["evaluations"] == 3
    st = study(shared)
    recorded = [v for k, v in st.user_attrs.items() if k.startswith(LOOK_PREFIX)]
    assert len(recorded) == 3 and {v["test_error"] for v in recorded} == {first["test_error"]}
    # each machine's readable copy holds its own looks; the study holds all of them
    for machine, n in (("a", 2), ("b", 1)):
        local = json.loads((shared[machine] / "studies" / "mlp" / "evaluations.json").read_text())
        assert len(local) == n
    assert len(test_looks(st, shared["a"] / "studies" / "mlp")) == 3


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pg.require_or_skip("Chromium is not installed (apt-get install chromium): the report's browser check needs it")


class Recorder(http.server.SimpleHTTPRequestHandler):
    """Serves the report's folder and records every request the page makes (path, status)."""

    requests: list[tuple[str, int]] = []

    def log_request(self, code="-", size="-"):
        type(self).requests.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_the_report_renders_in_headless_chromium(shared, tmp_path):
    """The page loads with no request but itself, no console message, and every figure drawn by plotly."""
    browser = chromium()
    out = tmp_path / "site"
    ok_json(invoke("report", "mlp", "--storage", shared["url"], "--out", out / "report.html", "--json",
                   cwd=shared["a"]))
    html = (out / "report.html").read_text()
    figures = html.count('<div id="fig-')
    assert figures >= 6
    Recorder.requests = []
    handler = lambda *a, **kw: Recorder(*a, directory=str(out), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/report.html"
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
             "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # nothing may leave this machine
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", f"--user-data-dir={tmp_path / 'profile'}"]
    try:
        dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=180)
        shot = subprocess.run([browser, *flags, "--window-size=1200,2400", "--hide-scrollbars",
                               f"--screenshot={tmp_path / 'report.png'}", url], capture_output=True, text=True,
                              timeout=180)
    finally:
        server.shutdown()
    assert dom.returncode == 0 and shot.returncode == 0, (dom.stderr[-2000:], shot.stderr[-2000:])
    # every request the page made was for itself, and answered
    assert {p for p, _ in Recorder.requests} == {"/report.html"}, Recorder.requests
    assert all(code in (200, 304) for _, code in Recorder.requests), Recorder.requests  # 304: the second load
    console = [line for line in (dom.stderr + shot.stderr).splitlines() if ":CONSOLE" in line]
    assert console == [], console  # no error, no warning, nothing logged by the page
    # plotly drew each figure: its container and an SVG inside every figure's div
    assert dom.stdout.count('class="plot-container plotly"') == figures
    assert dom.stdout.count('class="main-svg"') >= figures
    assert (tmp_path / "report.png").stat().st_size > 50_000  # a drawn page, not a blank one
