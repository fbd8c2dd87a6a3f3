"""`tunectl report`, `tunectl tune --report` and `tunectl dashboard` on real small studies.

One study (digits, 9 trials of at most 3 epochs, median pruner: complete and pruned trials)
is tuned once for the module, with --report; a failed trial is added with Optuna's API
(a trial that fails by itself needs a broken configuration, and the next ten would fail too).
Smaller studies cover the single-trial and the nothing-complete reports.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

import pg  # require_module: a missing optuna-dashboard skips locally, fails under CI=true
from conftest import invoke
from tunectl.report import fmt, verdict_label

DASHBOARD_MISSING = "optuna-dashboard is not installed: pip install 'tunectl[dashboard]'"

SPACE = """\
model: mlp
dataset: digits
epochs: 3
params:
  lr:         {type: float, low: 1.0e-4, high: 3.0e-1, log: true}
  width:      {type: int, low: 8, high: 32, log: true}
  depth:      {type: int, low: 1, high: 2}
  batch_size: {type: categorical, choices: [64, 128]}
  optimizer:  {type: categorical, choices: [adam, momentum]}
  beta:       {type: float, low: 0.8, high: 0.99, when: {optimizer: [momentum]}}
"""
FIGURES = ("history", "intermediate", "importances", "slice", "parallel", "contour", "timeline", "curves", "diagnosis")
SECTIONS = ("glance", "leaderboard", "best", *FIGURES, "evaluations", "environment")
FAIL_REASON = "failed: RuntimeError: <script>alert(1)</script> out of memory"
LOOKS = [{"time": "2026-01-01 09:00:00", "trial": 0, "refit": False, "test_error": 0.0417, "dev_error": 0.05,
          "train_error": 0.03},
         {"time": "2026-01-01 09:05:00", "trial": 1, "refit": False, "test_error": 0.0389, "dev_error": 0.06,
          "train_error": 0.04}]


def ok(result):
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    return result


class Page(HTMLParser):
    """Sections by id: their text and the src of their images."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: str | None = None
        self.notes: list[str] = []
        self._in_note = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.current = a["id"]
            self.sections[self.current] = {"text": "", "images": [], "plots": []}
        elif tag == "img" and self.current:
            self.sections[self.current]["images"].append(a["src"])
        elif tag == "div" and self.current and str(a.get("id", "")).startswith("fig-"):
            self.sections[self.current]["plots"].append(a["id"])
        elif tag == "p" and a.get("class") in ("note", "warn"):
            self._in_note = True
            self.notes.append("")

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None
        elif tag == "p":
            self._in_note = False

    def handle_data(self, data):
        if self.current:
            self.sections[self.current]["text"] += data + " "  # cells apart: "epochs trained" "21"
        if self._in_note:
            self.notes[-1] += data

    def text(self, sid: str) -> str:
        return " ".join(self.sections[sid]["text"].split())


def png_bytes(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    return base64.b64decode(src[len(prefix):], validate=True)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A real small study, a failed trial added, two looks at the test set, and its report."""
    import optuna
    from optuna.distributions import IntDistribution

    from tunectl.results import open_study

    tmp = tmp_path_factory.mktemp("report")
    (tmp / "space.yaml").write_text(SPACE)
    root = tmp / "studies"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # anything written relative to the working folder stays in tmp
        tuned = json.loads(ok(invoke("tune", "--space", tmp / "space.yaml", "--study", "night", "--trials", 9,
                                     "--pruner", "median", "--root", root, "--device", "cpu", "--json")).stdout)
        st = open_study("night", None, root)
        st.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, params={"width": 16},
            distributions={"width": IntDistribution(8, 32, log=True)}, user_attrs={"reason": FAIL_REASON}))
        (root / "night" / "evaluations.json").write_text(json.dumps(LOOKS))
        reported = ok(invoke("report", "night", "--root", root))
        ok(invoke("report", "night", "--root", root, "--static", "--out", tmp / "static.html"))
    path = root / "night" / "report.html"  # the default place
    return {"root": root, "tmp": tmp, "tuned": tuned, "stdout": reported.stdout, "html": path.read_text(),
            "path": path, "static": (tmp / "static.html").read_text()}


@pytest.mark.slow
def test_report_has_every_section_and_figure(study):
    """Interactive by default: each figure a plotly div, plotly.js inlined once, nothing fetched."""
    from plotly.offline import get_plotlyjs

    assert str(study["path"]) in study["stdout"]
    text = study["html"]
    page = Page(text)
    assert list(page.sections) == list(SECTIONS)
    for sid in FIGURES:
        assert page.sections[sid]["plots"] == [f"fig-{sid}"], sid
        assert not page.sections[sid]["images"], sid
    # self-contained: plotly.js once, inline; nothing is fetched when the file is opened
    js = get_plotlyjs()
    assert text.count(js) == 1
    page_only = text.replace(js, "")  # plotly.js itself names URLs it never fetches (links, docs)
    assert 'src="http' not in page_only and 'href="http' not in page_only and "<script src" not in page_only
    assert page_only.count("<script") == 1 + len(FIGURES)  # plotly.js, then one small call per figure
    states = study["tuned"]["states"]
    assert states["COMPLETE"] >= 5 and states["PRUNED"] >= 1
    glance = page.text("glance")
    assert f"complete {states['COMPLETE']}, pruned {states['PRUNED']}, failed 1" in glance
    assert FAIL_REASON in glance  # shown as text: escaped, never run
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "digits" in glance and "train 1079, dev 359, test 359" in glance and "median" in glance
    assert "verdict" in page.text("diagnosis") and "What to do next" in page.text("diagnosis")
    ev = page.text("evaluations")
    assert "evaluated 2 times" in ev and fmt(0.0417) in ev and fmt(0.0389) in ev


@pytest.mark.slow
def test_static_report_keeps_the_pngs_and_runs_nothing(study):
    page = Page(study["static"])
    assert list(page.sections) == list(SECTIONS)
    for sid in FIGURES:
        (image,) = page.sections[sid]["images"]
        data = png_bytes(image)
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000, sid
        assert not page.sections[sid]["plots"]
    assert "<script" not in study["static"] and 'src="http' not in study["static"]


@pytest.mark.slow
def test_the_figures_hold_every_trial(study):
    """Read from the figure objects the page draws (html_report.figures_of), not from pixels."""
    from tunectl import html_report
    from tunectl.results import importances, open_study, trial_records

    g = html_report.gather("night", None, study["root"])
    figs = html_report.figures_of(g)
    st = open_study("night", None, study["root"])
    records = trial_records(st, study["root"] / "night")
    complete = [r for r in records if r["state"] == "COMPLETE"]
    # the timeline: every trial once, one lane per worker, its state as its colour
    tl = figs["timeline"]
    assert sorted(n for d in tl.data for n, _ in d.customdata) == [r["number"] for r in records]
    assert {d.name for d in tl.data} == {"complete", "pruned", "fail"}
    assert {y for d in tl.data for y in d.y} == {r["worker"] or "unknown" for r in records}
    assert tl.layout.yaxis.title.text == "worker" and tl.layout.xaxis.type == "date"
    # the contour: the two most important parameters, the complete trials as its dots
    imp = importances(st)
    top2 = sorted(imp, key=lambda k: -imp[k])[:2]
    con = figs["contour"]
    assert {con.layout.xaxis.title.text, con.layout.yaxis.title.text} == set(top2)
    dots = [d for d in con.data if d.type == "scatter" and d.mode == "markers"]
    assert sum(len(d.x) for d in dots) == sum(all(p in r["params"] for p in top2) for r in complete)
    # parallel coordinates: one line a complete trial
    par = figs["parallel"]
    assert len([d for d in par.data if d.mode == "lines"]) == len(complete)
    # the per-epoch plot names each trial in its legend
    inter = figs["intermediate"]
    assert inter.layout.showlegend and sorted(d.name for d in inter.data) == sorted(
        f"trial {r['number']}" for r in records if r["state"] != "FAIL")


@pytest.mark.slow
def test_the_leaderboard_lists_pruned_trials_with_where_they_stopped(study):
    from tunectl.results import open_study, trial_records

    rows = Page(study["html"]).text("leaderboard")
    pruned = [r for r in trial_records(open_study("night", None, study["root"]), study["root"] / "night")
              if r["state"] == "PRUNED"]
    assert pruned
    for r in pruned:
        assert f"pruned at epoch {r['epochs']}" == r["reason"] and r["reason"] in rows
        assert fmt(r["dev_error"]) in rows


@pytest.mark.slow
def test_the_environment_names_versions_and_the_commands(study):
    import platform

    import optuna
    import torch

    import tunectl

    env = Page(study["html"]).text("environment")
    for v in (tunectl.__version__, platform.python_version(), torch.__version__, optuna.__version__, "cpu",
              socket.gethostname()):
        assert v in env, v
    assert "1 run of tunectl tune" in env and "tunectl " in env


@pytest.mark.slow
def test_terminal_and_report_show_the_same_numbers(study):
    page = Page(study["html"])
    shown = json.loads(ok(invoke("show", "night", "--root", study["root"], "--json")).stdout)
    terminal = ok(invoke("show", "night", "--root", study["root"], env={"COLUMNS": "240"})).stdout
    st = shown["states"]
    counts = f"complete {st['COMPLETE']}, pruned {st['PRUNED']}, failed {st['FAIL']}, running {st['RUNNING']}"
    assert counts in terminal and counts in page.text("glance")
    assert f"epochs trained {shown['epochs_used']}; pruning saved {shown['epochs_saved']}" in terminal
    assert f"epochs trained {shown['epochs_used']} " in page.text("glance")
    assert f"epochs saved by pruning {shown['epochs_saved']} " in page.text("glance")
    board = page.text("leaderboard")
    for row in shown["leaderboard"]:
        for v in (fmt(row["dev_error"]), fmt(row["train_error"])):
            assert v in terminal and v in board
            assert verdict_label(shown["verdicts"][str(row["number"])]) in board
    assert fmt(shown["best"]["dev_error"]) in page.text("best")
    for name, v in shown["importances"].items():
        assert f"{v:.3f}" in terminal and f"{v:.3f}" in page.text("importances")


@pytest.mark.slow
def test_report_of_a_single_trial_study(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "one.yaml").write_text("model: mlp\ndataset: iris\nepochs: 2\nparams:\n"
                                       "  width: {type: int, low: 4, high: 8}\n")
    tuned = json.loads(ok(invoke("tune", "--space", "one.yaml", "--study", "one", "--trials", 1, "--pruner", "none",
                                 "--root", "s", "--device", "cpu", "--report", "--json")).stdout)
    # `tune --report` writes the report after the study (also after --timeout or Ctrl-C: run_study returns then)
    assert tuned["report"] == str(Path("s") / "one" / "report.html")
    page = Page((tmp_path / "s" / "one" / "report.html").read_text())
    assert set(SECTIONS) <= set(page.sections)
    assert any("single complete trial" in n for n in page.notes)
    assert "at least 5 complete trials" in page.text("importances")
    assert "at least 2 complete trials" in page.text("slice")
    for sid in ("history", "curves", "diagnosis", "timeline"):
        assert page.sections[sid]["plots"] == [f"fig-{sid}"]
    assert "at least 2 complete trials" in page.text("parallel") and "at least 5" in page.text("contour")


@pytest.mark.slow
def test_report_of_a_study_without_a_complete_trial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a learning rate of 1e12 diverges in the first epoch: every trial is stopped ("diverged")
    (tmp_path / "bad.yaml").write_text("model: mlp\ndataset: iris\nepochs: 2\nparams:\n"
                                       "  width: {type: int, low: 4, high: 8}\nfixed:\n  lr: 1.0e+12\n")
    tuned = json.loads(ok(invoke("tune", "--space", "bad.yaml", "--study", "bad", "--trials", 2, "--pruner", "none",
                                 "--root", "s", "--device", "cpu", "--json")).stdout)
    assert tuned["states"]["COMPLETE"] == 0 and tuned["states"]["PRUNED"] == 2
    ok(invoke("report", "bad", "--root", "s", "--out", "out/bad.html"))
    page = Page((tmp_path / "out" / "bad.html").read_text())
    assert set(SECTIONS) <= set(page.sections)
    assert any("no complete trial yet" in n for n in page.notes)
    assert "No complete trial yet" in page.text("leaderboard")
    assert "nothing to diagnose" in page.text("diagnosis")


def test_report_of_a_missing_study_is_one_line(tmp_path):
    result = invoke("report", "nope", "--root", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "run `tunectl tune` first" in result.stderr


# ----------------------------------------------------------------------------- optuna-dashboard


def wsgi_get(wsgi_app, path: str) -> dict:
    from wsgiref.util import setup_testing_defaults

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(wsgi_app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


@pytest.mark.slow
def test_optuna_dashboard_reads_the_study(study):
    optuna_dashboard = pg.require_module("optuna_dashboard", DASHBOARD_MISSING)
    from tunectl import storage as store
    from tunectl import studies

    storage = store.open_storage(studies.default_storage_url("night", study["root"]), None, create=False)
    wsgi_app = optuna_dashboard.wsgi(storage)
    listed = wsgi_get(wsgi_app, "/api/studies")["study_summaries"]
    assert [s["study_name"] for s in listed] == ["night"]
    assert {"key": "dataset", "value": "digits"} in listed[0]["user_attrs"]
    detail = wsgi_get(wsgi_app, f"/api/studies/{listed[0]['study_id']}")
    trials = detail["trials"]
    assert len(trials) == study["tuned"]["n_trials"] + 1  # the added failed trial too
    assert {t["state"] for t in trials} >= {"Complete", "Pruned", "Fail"}
    complete = [t for t in trials if t["state"] == "Complete"]
    assert all(t["params"] and len(t["intermediate_values"]) == 3 for t in complete)
    for t in complete:
        attrs = {a["key"] for a in t["user_attrs"]}
        # only what the trial does not hold already: no params, config or dev-error copies (the standard
        # errors cannot be rebuilt for an RMSE; `enqueued` says why a first trial was tried)
        assert attrs - {"enqueued", "enqueued_why"} == {"train_error", "train_errors", "best_epoch", "reason", "worker",
                                                        "dev_error_se", "train_error_se"}, attrs
    assert detail["has_intermediate_values"] and detail["best_trials"]
    assert detail["objective_names"] == ["dev error"]  # not "Objective 0"


@pytest.mark.parametrize("port", ["0", "99999", "http"])
def test_a_port_that_cannot_be_is_one_line(tmp_path, port):
    result = invoke("dashboard", "any", "--root", tmp_path, "--port", port)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "--port" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_dashboard_without_the_extra_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import optuna_dashboard -> ImportError
    result = invoke("dashboard", "any", "--root", tmp_path)
    assert result.exit_code == 2
    assert "pip install 'tunectl[dashboard]'" in result.stderr


def http_get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.mark.slow
def test_dashboard_serves_the_study_and_its_checkpoints(study):
    """The real optuna-dashboard server (`tunectl dashboard`), over HTTP: the study's API, every
    listed artifact downloads (200, the file's bytes), a dropped checkpoint is not listed."""
    pg.require_module("optuna_dashboard", DASHBOARD_MISSING)
    from tunectl.results import open_study, trial_records

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tunectl.cli", "dashboard", "night", "--root", str(study["root"]),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, listed = time.time() + 90, None
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as r:
                    listed = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.5)
        assert listed is not None, proc.stderr.read().decode() if proc.poll() is not None else "no answer"
        (summary,) = listed["study_summaries"]
        assert summary["study_name"] == "night"
        status, _, body = http_get(f"{base}/api/studies/{summary['study_id']}")
        assert status == 200
        detail = json.loads(body)
        assert {t["state"] for t in detail["trials"]} >= {"Complete", "Pruned", "Fail"}
        records = {r["number"]: r for r in trial_records(open_study("night", None, study["root"]),
                                                         study["root"] / "night")}
        kept = {n for n, r in records.items() if r["checkpoint"]}
        assert len(kept) == 3 < sum(r["state"] == "COMPLETE" for r in records.values())  # some were dropped
        downloads = 0
        for t in detail["trials"]:
            names = [a["filename"] for a in t["artifacts"]]
            assert (t["number"] in kept) == bool(names), (t["number"], names)  # a dropped one is not listed
            for a in t["artifacts"]:
                status, headers, body = http_get(f"{base}/artifacts/{summary['study_id']}/{t['trial_id']}/"
                                                 f"{a['artifact_id']}")
                assert status == 200, (t["number"], a, status)
                assert headers["Content-Type"] == "application/octet-stream"
                assert body == (study["root"] / "night" / records[t["number"]]["checkpoint"]).read_bytes()
                downloads += 1
        assert downloads == 3
        for a in detail["artifacts"]:  # study artifacts (none today): none may answer 4xx/5xx either
            assert http_get(f"{base}/artifacts/{summary['study_id']}/{a['artifact_id']}")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
