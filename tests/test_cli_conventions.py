"""CLI conventions a Typer/click user expects: shell completion (commands, options, choices, study
names), choices as choices, flags without a placeholder, the environment variables shown on the
options they feed, and -q/--quiet on the long commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import invoke

from tunectl.cli import complete_device, complete_model, complete_study

WIDE = {"COLUMNS": "250"}  # rich draws --help at 80 columns otherwise, folding the lines we look for


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def make_studies(root: Path, *names: str) -> None:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "study.db").write_bytes(b"")  # completion reads folder names only: never opens it
    (root / "runs").mkdir()  # `tunectl train` runs: not a study


def tunectl_complete(words: str, cword: int, **env: str) -> list[str]:
    exe = Path(sys.executable).with_name("tunectl")
    if not exe.exists():
        pytest.skip("the tunectl script is not installed next to this Python")
    full = {**os.environ, "_TUNECTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword), **env}
    done = subprocess.run([str(exe)], env=full, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


# ----------------------------------------------------------------------------- completion


def test_show_completion_prints_a_script():
    # in process the program is Typer's test runner: the script names its completion variable after it
    result = invoke("--show-completion", "bash", env={"SHELL": "/bin/bash"})
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "complete -o default -F" in result.stdout and "_COMPLETE=complete_bash" in result.stdout
    exe = Path(sys.executable).with_name("tunectl")
    if exe.exists():  # the installed command: the script the user's shell would source
        done = subprocess.run([str(exe), "--show-completion", "bash"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "SHELL": "/bin/bash"})
        assert done.returncode == 0 and "_TUNECTL_COMPLETE=complete_bash" in done.stdout, done.stderr
    help_text = invoke("--help", env=WIDE).stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text


def test_study_names_complete_from_the_folder_names(tmp_path, monkeypatch):
    make_studies(tmp_path, "wine-quick", "iris-quick", "digits-mlp")

    class Ctx:
        params = {"root": tmp_path}

    assert complete_study(Ctx(), "") == ["digits-mlp", "iris-quick", "wine-quick"]
    assert complete_study(Ctx(), "wi") == ["wine-quick"]
    monkeypatch.setenv("TUNECTL_STUDIES", str(tmp_path))
    Ctx.params = {}
    assert complete_study(Ctx(), "ir") == ["iris-quick"]
    Ctx.params = {"root": tmp_path / "absent"}
    assert complete_study(Ctx(), "") == []


def test_completion_protocol_offers_studies_choices_commands_and_options(tmp_path):
    make_studies(tmp_path, "wine-quick", "iris-quick")
    assert tunectl_complete(f"tunectl show --root {tmp_path} w", 4) == ["wine-quick"]
    assert tunectl_complete("tunectl evaluate ", 2, TUNECTL_STUDIES=str(tmp_path)) == ["iris-quick", "wine-quick"]
    assert tunectl_complete("tunectl tune --sampler ", 3) == ["tpe", "random", "grid", "cmaes", "qmc"]
    assert tunectl_complete("tunectl tune --pruner h", 3) == ["hyperband", "halving"]
    assert "cuda:0" in tunectl_complete("tunectl train --device c", 3)
    assert tunectl_complete("tunectl train --model ", 3) == ["mlp", "cnn", "transfer", "rnn"]
    assert tunectl_complete("tunectl tr", 1) == ["train"]
    assert tunectl_complete("tunectl tune --sa", 2) == ["--sampler"]


def test_free_text_options_complete_cheaply():
    assert complete_model("c") == ["cnn"]
    assert complete_device("cu")[:1] == ["cuda"] and "cpu" not in complete_device("cu")


# ----------------------------------------------------------------------------- choices


@pytest.mark.parametrize("command, words", [
    ("tune", ["tpe|random|grid|cmaes|qmc", "hyperband|halving|median|none", "binary|multiclass|regression",
              "mlp | cnn | transfer"]),
    ("train", ["binary|multiclass|regression", "mlp | cnn | transfer"]),
])
def test_help_lists_the_choices(command, words):
    text = invoke(command, "--help", env=WIDE).stdout
    for word in words:
        assert word in text, (word, text)


@pytest.mark.parametrize("args, option, allowed", [
    (["tune", "--sampler", "tp"], "--sampler", "'tpe', 'random', 'grid', 'cmaes', 'qmc'"),
    (["tune", "--pruner", "hyperbnd"], "--pruner", "'hyperband', 'halving', 'median', 'none'"),
    (["train", "--task", "binry"], "--task", "'binary', 'multiclass', 'regression'"),
])
def test_a_typo_in_a_choice_is_one_line_naming_the_allowed_values(args, option, allowed):
    line = one_line_error(invoke(*args))
    assert line.startswith(f"error: {option} '{args[-1]}' is not one of {allowed}"), line
    assert "Value error" not in line and "Traceback" not in line


# ----------------------------------------------------------------------------- --help


@pytest.mark.parametrize("command", ["train", "tune", "evaluate", "show", "studies", "diagnose"])
def test_help_shows_flags_without_a_placeholder_and_the_env_vars(command):
    text = invoke(command, "--help", env=WIDE).stdout
    assert "--json" in text and "<bool>" not in text, text
    assert "[env var: TUNECTL_STUDIES]" in text or command == "train"
    if command != "train":
        assert "[env var: TUNECTL_STORAGE]" in text
    if command in ("train", "tune", "evaluate", "diagnose"):
        assert "[env var: TUNECTL_DEVICE]" in text and "--quiet" in text and "-q" in text


def test_tunectl_device_from_the_environment_is_still_named_as_such():
    line = one_line_error(invoke("train", "--dataset", "iris", "--epochs", "1", env={"TUNECTL_DEVICE": "tpu"}))
    assert "TUNECTL_DEVICE=tpu" in line, line
    line = one_line_error(invoke("train", "--dataset", "iris", "--epochs", "1", "--device", "tpu",
                                 env={"TUNECTL_DEVICE": "cpu"}))
    assert "--device tpu" in line, line


# ----------------------------------------------------------------------------- -q/--quiet


def test_quiet_train_prints_the_summary_but_no_progress(tmp_path):
    result = invoke("train", "--dataset", "iris", "--epochs", "2", "--device", "cpu", "-q", "--out", tmp_path / "run")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "dev error" in result.stdout and "saved to" in result.stdout
    assert "epoch" not in result.stderr and "train_loss" not in result.stderr, result.stderr
    loud = invoke("train", "--dataset", "iris", "--epochs", "2", "--device", "cpu", "--out", tmp_path / "loud")
    assert loud.exit_code == 0 and "train_loss" in loud.stderr  # the display that -q silences


@pytest.mark.parametrize("argv, code", [(["spaces"], 0), (["show", "no-such-study", "--root", "nowhere"], 2)])
def test_a_command_ends_without_the_interpreters_last_collection(argv, code):
    """`main` freezes the objects it made once the command is over, so the interpreter's exit does not walk
    torch's and Optuna's objects (about a second of every command: bench/parallel.py's command times); the
    command's output and exit code are what they were, on success and on a refusal alike."""
    probe = ("import gc, sys\n"
             f"sys.argv = ['tunectl', *{argv!r}]\n"
             "from tunectl.cli import main\n"
             "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
             "print('frozen', gc.get_freeze_count() > 0, 'code', code, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert f"frozen True code {code}" in done.stderr, done.stderr[-2000:]
