"""CI never skips the server: the guard in tests/pg.py and the one in .ci/run.

Under CI=true a missing PostgreSQL server, psycopg2, optuna-dashboard or shared MNIST file fails
the test with the reason (pg.require_or_skip); without it the test is skipped, saying why. And
.ci/run stops with exit 1, before `make test`, when PostgreSQL cannot be started under CI=true.
Both are run for real in subprocesses (a tiny pytest file; .ci/run with PostgreSQL's binaries
pointed at an empty folder and a stand-in `make`). A few seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

PROBE = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import pg

def test_server():
    pg.require_or_skip("no PostgreSQL server could be started: initdb is missing")

def test_module():
    pg.require_module("no_such_module_for_tunectl", "no_such_module is not installed")

def test_present():
    assert pg.require_module("json", "json missing").dumps(1) == "1"
"""


def env_with(ci: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return env


def run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_probe.py").write_text(PROBE)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", "test_probe.py"],
                          cwd=tmp_path, env=env_with(ci), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_missing_service_fails_with_the_reason(tmp_path, ci):
    out = run_probe(tmp_path, ci)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "2 failed, 1 passed" in out.stdout
    assert "skipped" not in out.stdout
    assert "CI=true requires it, so this is a failure, not a skip: no PostgreSQL server could be started: " \
           "initdb is missing" in out.stdout
    assert "no_such_module is not installed (No module named 'no_such_module_for_tunectl')" in out.stdout


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_locally_a_missing_service_skips_saying_why(tmp_path, ci):
    out = run_probe(tmp_path, ci)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 2 skipped" in out.stdout
    assert re.search(r"SKIPPED \[1\] \S+: no PostgreSQL server could be started: initdb is missing", out.stdout)
    assert "no_such_module is not installed" in out.stdout


def run_ci_script(tmp_path: Path, ci: str | None) -> tuple[subprocess.CompletedProcess, Path]:
    """.ci/run in a copy of the repository's layout, PostgreSQL's binaries in an empty folder, and
    a `make` that only leaves a marker (the suite itself is not run again)."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", repo / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "make-ran"
    (bin_dir / "make").write_text(f"#!/bin/sh\necho \"$@\" > {marker}\n")
    (bin_dir / "make").chmod(0o755)
    (tmp_path / "no-postgres").mkdir()
    env = env_with(ci)
    env.update(PATH=f"{bin_dir}:{env['PATH']}", TUNECTL_PG_BIN=str(tmp_path / "no-postgres"))
    env.pop("TUNECTL_PG_URL", None)
    out = subprocess.run(["bash", str(repo / ".ci" / "run")], env=env, capture_output=True, text=True,
                         timeout=120, stdin=subprocess.DEVNULL)
    return out, marker


def test_ci_run_fails_when_postgres_cannot_start_under_ci(tmp_path):
    out, marker = run_ci_script(tmp_path, "true")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "ci: FAILED: PostgreSQL could not be started, and under CI=true the PostgreSQL tests must run" in out.stderr
    assert not marker.exists()  # make test never ran: a green run without the server is impossible


def test_ci_run_goes_on_without_postgres_outside_ci(tmp_path):
    out, marker = run_ci_script(tmp_path, None)
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "going on without a CI PostgreSQL server" in out.stdout
    assert marker.read_text().strip() == "test"
