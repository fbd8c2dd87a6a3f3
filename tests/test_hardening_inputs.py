"""Hardening, round two (issue 12): hostile inputs to data sets, spaces, params files, devices,
run folders and output paths. Each is answered with one line on stderr (exit 2), no traceback,
and the workspace unchanged: the same real-CLI, snapshot-before-and-after check as
tests/test_hardening.py's matrix, whose helpers this file reuses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import invoke
from test_hardening import SPACE, snapshot, tuned_workspace

TUNE = ("tune", "--root", "studies", "--trials", "1", "--pruner", "none")
TRAIN = ("train", "--out", "run", "--epochs", "1")
S = ("--space", "space.yaml")


def assert_one_line(result, message: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: ") and message in line, line
    assert len(line) <= 400, len(line)  # never an unbounded value in a message
    assert "Traceback" not in result.output and result.stdout == ""
    return line


# ----------------------------------------------------------------------------- the workspace

def write_inputs(root: Path) -> None:
    """The round-two inputs, beside the round-one workspace's."""
    from PIL import Image

    rng = np.random.default_rng(1)
    a = rng.normal(size=60)
    rows = "".join(f"{v:.4f},{i % 3},{int(v > 0)}\n" for i, v in enumerate(a))
    lines = rows.splitlines(keepends=True)
    (root / "missing_cell.csv").write_text("a,b,y\n" + "".join(lines[:2]) + "0.5,1\n" + "".join(lines[3:]))
    (root / "latin1.csv").write_bytes(("a,b,y\n" + rows).replace("a,b", "\xe9t\xe9,b").encode("latin-1"))
    (root / "only_target.csv").write_text("y\n" + "".join(f"{i % 2}\n" for i in range(60)))
    (root / "huge.csv").write_text("a,b,y\n" + rows.replace(f"{a[4]:.4f},", "1e39,", 1))
    (root / "text_cell.csv").write_text("a,b,y\n" + rows.replace(f"{a[6]:.4f},", "abc,", 1))
    (root / "two_y.csv").write_text("y,b,y\n" + rows)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = np.arange(40) % 2
    np.savez(root / "x1d.npz", x=x[:, 0], y=y)
    np.savez(root / "x0d.npz", x=np.float32(3.0), y=y)
    np.savez(root / "y0d.npz", x=x, y=np.int64(1))
    np.savez(root / "y2col.npz", x=x, y=np.stack([y, y], 1))
    np.savez(root / "complex.npz", x=x + 1j * x, y=y)
    np.savez(root / "nofeat.npz", x=np.zeros((40, 0), np.float32), y=y)
    np.save(root / "array.npy", x)
    shutil.move(root / "array.npy", root / "array.npz")  # a .npy file named .npz
    (root / "broken.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 200)  # a zip header, then nothing
    for cls in ("a", "b"):
        (root / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "imgs" / cls / f"{i}.png")
    (root / "imgs" / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    # search spaces
    many = ", ".join(str(i) for i in range(1, 1002))
    (root / "many_choices.yaml").write_text(SPACE.replace("params:\n", f"params:\n  width: {{type: categorical, choices: [{many}]}}\n").replace("  width: 8\n", ""))
    # 'billion laughs': ten aliases of ten aliases ..., expanded inside `choices`
    chain = ", ".join(f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9))
    (root / "laughs.yaml").write_text("epochs: 1\nbomb: [&l0 [a, a, a, a, a, a, a, a, a, a], " + chain + "]\n"
                                      "params:\n  optimizer: {type: categorical, choices: *l8}\n")
    (root / "cycle.yaml").write_text("epochs: 1\nparams:\n  optimizer: &a {type: categorical, choices: [*a]}\n")
    (root / "big_int.yaml").write_text(SPACE.replace("epochs: 1", "epochs: " + "9" * 32))
    (root / "long_key.yaml").write_text(SPACE.replace("  width: 8", "  " + "w" * 1000 + ": 8"))
    (root / "big.yaml").write_text(SPACE + "# " + "x" * 1_100_000 + "\n")
    # params files
    (root / "params_latin1.yaml").write_bytes("# r\xe9glages\nlr: 0.01\n".encode("latin-1"))
    (root / "params_dir").mkdir()
    for name, data in (("seed", "split_seed: abc"), ("size", "image_size: [1]"), ("dataset", "dataset: 5"),
                       ("split", "split: [0.8, 0.1]"), ("fraction", "train_fraction: 2")):
        (root / f"params_{name}.yaml").write_text(f"lr: 0.01\ndata:\n  {data}\n")
    (root / "params_intkey.yaml").write_text("lr: 0.01\n1: 2\n")
    # run folders for diagnose
    for name, doc in (("run_list", [1, 2]), ("run_nokeys", {"status": "complete"}),
                      ("run_types", {"train_error": "abc", "dev_error": 0.2, "config": {}, "history": []}),
                      ("run_ok", {"train_error": 0.1, "dev_error": 0.2, "config": {}, "history": [], "task": "binary"})):
        (root / name).mkdir()
        (root / name / "history.json").write_text(json.dumps(doc))
    (root / "a_file").write_text("not a folder\n")


@pytest.fixture(scope="module")
def base_workspace(tmp_path_factory):
    """The round-one workspace, the round-two inputs and study 's' (csv:data.csv, one complete trial)."""
    root = tuned_workspace(tmp_path_factory.mktemp("workspace2"))
    write_inputs(root)  # files only: the study does not record what else lies in its workspace
    return root


@pytest.fixture
def workspace(base_workspace, tmp_path, monkeypatch):
    root = tmp_path / "w"
    shutil.copytree(base_workspace, root)
    monkeypatch.chdir(root)
    monkeypatch.delenv("TUNECTL_DEVICE", raising=False)
    return root


# ----------------------------------------------------------------------------- the matrix

CSV = lambda name: ("--dataset", f"csv:{name}", "--target", "y")  # noqa: E731
NPZ = lambda name: ("--dataset", f"npz:{name}")  # noqa: E731
SIZE_FIX = "must be a whole number of pixels between 1 and 1024"
SEED_FIX = "must be a whole number between 0 and 4294967295"

BAD_INPUT = [
    # data sets
    ("CSV row missing a cell", (*TRAIN, *CSV("missing_cell.csv")), "line 4 has 2 cells but the header has 3"),
    ("CSV not UTF-8", (*TRAIN, *CSV("latin1.csv")), "csv:latin1.csv: not UTF-8 text (byte 0xe9 at offset 0)"),
    ("CSV with only the target", (*TRAIN, *CSV("only_target.csv")), "has only the target column 'y'"),
    ("CSV value past float32", (*TRAIN, *CSV("huge.csv")), "a feature value of 1e+39 is too large for float32"),
    ("CSV cell not a number", (*TRAIN, *CSV("text_cell.csv")), "line 8, column 'a': 'abc' is not a number"),
    ("CSV target named twice", (*TRAIN, *CSV("two_y.csv")), "2 columns are named 'y'"),
    ("CSV is a folder", (*TRAIN, *CSV("a_folder")), "csv:a_folder: is a folder, not a CSV file"),
    ("npz x 1-D", (*TRAIN, *NPZ("x1d.npz")), "npz:x1d.npz: x is 1-D (shape (40,))"),
    ("npz x 0-d", (*TRAIN, *NPZ("x0d.npz")), "npz:x0d.npz: x is a single value (0-d)"),
    ("npz y 0-d", (*TRAIN, *NPZ("y0d.npz")), "npz:y0d.npz: y is a single value (0-d)"),
    ("npz y N x 2", (*TRAIN, *NPZ("y2col.npz")), "y has shape (40, 2); give one target per example"),
    ("npz complex", (*TRAIN, *NPZ("complex.npz")), "npz:complex.npz: x holds complex numbers"),
    ("npz without features", (*TRAIN, *NPZ("nofeat.npz")), "no feature to learn from"),
    (".npy named .npz", (*TRAIN, *NPZ("array.npz")), "is a single .npy array, not a .npz archive"),
    ("npz a broken zip", (*TRAIN, *NPZ("broken.npz")), "npz:broken.npz: not a readable .npz file"),
    ("corrupt image in a folder", (*TRAIN, "--dataset", "folder:imgs"), "cannot read image imgs/b/bad.png"),
    ("--image-size -4", (*TRAIN, "--dataset", "folder:imgs", "--image-size", "-4"), f"--image-size -4: {SIZE_FIX}"),
    ("--image-size 0", (*TRAIN, "--dataset", "folder:imgs", "--image-size", "0"), f"--image-size 0: {SIZE_FIX}"),
    ("--image-size 100000", (*TUNE, *S, "--dataset", "folder:imgs", "--image-size", "100000"),
     f"--image-size 100000: {SIZE_FIX}"),
    ("--split nan", (*TUNE, *S, "--split", "nan,0.1,0.1"), "--split 'nan,0.1,0.1': give three positive fractions"),
    ("--split inf", (*TRAIN, "--split", "0.8,inf,0.1"), "--split '0.8,inf,0.1': give three positive fractions"),
    ("--split-seed -1", (*TRAIN, "--split-seed", "-1"), f"--split-seed -1: {SEED_FIX}"),
    ("--split-seed 2**32", (*TUNE, *S, "--split-seed", "4294967296"), f"--split-seed 4294967296: {SEED_FIX}"),
    # config
    ("train --seed -1", (*TRAIN, "--seed", "-1"), "seed=-1: must be between 0 and 4294967295"),
    ("train --seed 2**32", (*TRAIN, "--seed", "4294967296"), "seed=4294967296: must be between 0 and 4294967295"),
    ("--set width past the cap", (*TRAIN, "--set", "width=1000000000000"), "width=1000000000000: must be <= 65536"),
    ("--set with a 5000-digit value", (*TRAIN, "--set", "depth=" + "9" * 5000), "depth: expected int, got '999"),
    # search spaces
    ("a 32-digit integer", (*TUNE, "--space", "big_int.yaml"), "big_int.yaml: epochs: " + "9" * 32 + " is out of range"),
    ("1001 choices", (*TUNE, "--space", "many_choices.yaml"), "params.width.choices: 1001 choices; at most 1000"),
    ("billion laughs", (*TUNE, "--space", "laughs.yaml"), "holds more than 100000 values once its YAML aliases"),
    ("alias cycle", (*TUNE, "--space", "cycle.yaml"), "a YAML alias refers to the list or mapping that holds it"),
    ("a 1000-character key", (*TUNE, "--space", "long_key.yaml"), "fixed.wwwwwwwww"),
    ("space file over 1 MB", (*TUNE, "--space", "big.yaml"), "too large for a search-space file (more than 1000000 bytes)"),
    ("space file is /dev/zero", (*TUNE, "--space", "/dev/zero"), "/dev/zero: too large for a search-space file"),
    ("--data-dir a file", (*TRAIN, "--dataset", "mnist", "--data-dir", "a_file"), "--data-dir a_file is a file, not a folder"),
    # --params
    ("--params /dev/zero", (*TRAIN, "--params", "/dev/zero"), "--params /dev/zero: too large for a params file"),
    ("--params not UTF-8", (*TRAIN, "--params", "params_latin1.yaml"), "not UTF-8 text (byte 0xe9 at offset 3)"),
    ("--params a folder", (*TRAIN, "--params", "params_dir"), "--params params_dir: is a folder"),
    ("--params split_seed: abc", (*TRAIN, "--params", "params_seed.yaml"),
     f"data.split_seed: expected a whole number between 0 and 4294967295, got 'abc'"),
    ("--params image_size: [1]", (*TRAIN, "--params", "params_size.yaml"), "data.image_size: expected a whole number of pixels"),
    ("--params dataset: 5", (*TRAIN, "--params", "params_dataset.yaml"), "data.dataset: expected a name, got 5"),
    ("--params split of two", (*TRAIN, "--params", "params_split.yaml"), "data.split: expected three fractions"),
    ("--params train_fraction: 2", (*TRAIN, "--params", "params_fraction.yaml"), "data.train_fraction: expected a fraction in (0, 1]"),
    ("--params a number as key", (*TRAIN, "--params", "params_intkey.yaml"), "key 1 is not a hyperparameter name"),
    # devices
    ("TUNECTL_DEVICE=garbage", ("evaluate", "s"), "TUNECTL_DEVICE=garbage: unknown device; use cpu, cuda, cuda:N or mps"),
    ("evaluate --device tpu", ("evaluate", "s", "--device", "tpu"), "--device tpu: unknown device; use cpu, cuda"),
    # diagnose
    ("history.json a list", ("diagnose", "run_list"), "run_list/history.json: expected a JSON object"),
    ("history.json without keys", ("diagnose", "run_nokeys"), "run_nokeys/history.json: no 'train_error'"),
    ("history.json wrong types", ("diagnose", "run_types"), "'train_error' should be a number, got 'abc'"),
    ("--human-error -5", ("diagnose", "run_ok", "--human-error", "-5"), "--human-error -5: must be a finite number >= 0"),
    ("--human-error nan", ("diagnose", "run_ok", "--human-error", "nan"), "--human-error nan: must be a finite number >= 0"),
    ("--human-error 5 (a rate)", ("diagnose", "run_ok", "--human-error", "5"), "an error rate must be below 1"),
    ("--bias-threshold inf", ("diagnose", "run_ok", "--bias-threshold", "inf"), "--bias-threshold inf: must be a finite"),
    # outputs
    ("report --out DIR", ("report", "s", "--out", "a_folder"), "--out a_folder: is a folder; give a file name"),
    ("report --out under a file", ("report", "s", "--out", "a_file/r.html"), "a_file is a file, not a folder"),
    ("export --out under a file", ("export", "s", "--out", "a_file/x"), "a_file is a file, not a folder"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_one_line_exit_2_nothing_written(workspace, args, message):
    env = {"TUNECTL_DEVICE": "garbage"} if "TUNECTL_DEVICE" in message else None
    before = snapshot(workspace)
    result = invoke(*args, env=env)
    assert_one_line(result, message)
    assert snapshot(workspace) == before


def test_a_deleted_checkpoint_is_named_not_called_unkept(workspace):
    from tunectl.results import open_study, trial_records

    record = trial_records(open_study("s", None, "studies"))[0]
    (workspace / "studies" / "s" / record["checkpoint"]).unlink()
    before = snapshot(workspace)
    line = assert_one_line(invoke("evaluate", "s"), "its checkpoint ")
    assert "is missing (deleted or moved?); add --refit to retrain it, or choose another --trial" in line
    assert snapshot(workspace) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu(workspace):
    before = snapshot(workspace)
    assert_one_line(invoke("evaluate", "s", "--device", "cuda"), "--device cuda: this machine has no usable CUDA GPU")
    assert snapshot(workspace) == before


# ----------------------------------------------------------------------------- the pure functions


def test_csv_blank_lines_are_skipped_and_bom_dropped(tmp_path):
    from tunectl.sources import DataSpec, load_dataset

    path = tmp_path / "d.csv"
    rows = "".join(f"{i * 0.1:.1f},{i % 2}\n" for i in range(30))
    lines = rows.splitlines(keepends=True)
    path.write_bytes(("\ufeffa,y\n" + "".join(lines[:5]) + "\n" + "".join(lines[5:]) + "\n \n").encode("utf-8"))
    ds = load_dataset(DataSpec(f"csv:{path}", target="y"))
    assert ds.table.frame.shape == (30, 1) and ds.task == "binary"


def test_npz_column_vector_targets_are_squeezed(tmp_path):
    from tunectl.sources import DataSpec, load_dataset

    x = np.random.default_rng(0).normal(size=(30, 2))
    np.savez(tmp_path / "d.npz", x=x, y=(np.arange(30) % 2)[:, None])
    ds = load_dataset(DataSpec(f"npz:{tmp_path / 'd.npz'}"))
    assert ds.y.shape == (30,) and ds.task == "binary"


def test_split_seed_at_the_top_of_the_range_splits():
    from tunectl.sources import DataSpec, load_dataset
    from tunectl.data import make_splits

    assert make_splits(load_dataset(DataSpec("iris")), seed=2**32 - 1).manifest["seed"] == 2**32 - 1


def test_check_device_and_pick_device(monkeypatch):
    from tunectl.errors import ConfigError
    from tunectl.train import check_device, pick_device

    monkeypatch.delenv("TUNECTL_DEVICE", raising=False)
    assert check_device("CPU") == torch.device("cpu") and pick_device(torch.device("cpu")).type == "cpu"
    assert check_device(None) == pick_device()
    with pytest.raises(ConfigError, match=r"^--device tpu: unknown device; use cpu, cuda, cuda:N or mps \(this machine has: cpu"):
        check_device("tpu")
    with pytest.raises(ConfigError, match="unknown device"):
        check_device("cuda:x")
    monkeypatch.setenv("TUNECTL_DEVICE", "banana")
    with pytest.raises(ConfigError, match="^TUNECTL_DEVICE=banana: unknown device"):
        pick_device()
    assert check_device("cpu") == torch.device("cpu")  # a named device wins over the variable


def test_human_error_and_output_checks():
    from tunectl.diagnose import check_human_error, check_next_space
    from tunectl.errors import TunectlError

    assert check_human_error(None) == 0.0 and check_human_error(3.5, "regression") == 3.5
    for bad in (-1, float("nan"), float("inf"), "abc"):
        with pytest.raises(TunectlError, match="must be a finite number >= 0"):
            check_human_error(bad, "binary")
    with pytest.raises(TunectlError, match="below 1"):
        check_human_error(1.0, "multiclass")
    with pytest.raises(TunectlError, match="--next-space .*: is a folder"):
        check_next_space(Path("."))


def test_short_never_builds_a_huge_text():
    from tunectl.config import short

    bomb: list = ["a"] * 10
    for _ in range(9):
        bomb = [bomb] * 10  # 10**10 strings once expanded
    assert len(short(bomb)) <= 100 and short(10**5000) == "a number with too many digits"
