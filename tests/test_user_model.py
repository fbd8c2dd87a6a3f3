"""Issue 11: your own model (`FILE.py:FUNCTION`, a builder) and your own data (`py:FILE.py:FUNCTION`).

Real tiny builders are written into tmp_path and run through the real CLI (CliRunner, and one
real second worker process): training with the builder's own parameters, every refusal (exit 2,
one `error:` line, the working tree unchanged), `py:` data, and the whole pipeline on
examples/convnet.yaml: tune -> show -> diagnose -> report -> evaluate -> export -> train --params,
which reproduces the trial's dev error exactly; a builder file changed after tuning is refused
unless --allow-changed-model; a worker joins a study with a user model only with the same file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from test_hardening import snapshot
from tunectl.cli import app
from tunectl.results import open_study, trial_records

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

# ----------------------------------------------------------------------------- tiny builders

NET = """\
from torch import nn


def build(input_shape, out_dim, channels=4, kernel_size=3, dropout=0.0):
    c, h, w = input_shape  # images only: a tabular input shape makes this raise
    return nn.Sequential(nn.Conv2d(c, channels, kernel_size, padding=kernel_size // 2), nn.ReLU(),
                         nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * h * w, out_dim))
"""
KWARGS = """\
import math
from torch import nn


def build(input_shape, out_dim, **params):
    units = params.get("units", 8)  # not a tunectl name ('hidden' is model: rnn's since issue 16)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), units), nn.ReLU(),
                         nn.Linear(units, out_dim))
"""
RAISES = """\
def build(input_shape, out_dim):
    raise ValueError("boom: this builder is broken")
"""
NOT_MODULE = """\
def build(input_shape, out_dim):
    return lambda x: x  # a function, not an nn.Module
"""
WRONG_SHAPE = """\
import math
from torch import nn


def build(input_shape, out_dim):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 3))  # 3 outputs, whatever the task
"""
# py: data
IRIS_AS_REGRESSION = """\
import torch
from sklearn.datasets import load_iris


def load():
    data = load_iris()
    # tensors, and a third value naming the task: the labels 0, 1, 2 read as numbers
    return torch.tensor(data.data, dtype=torch.float32), torch.tensor(data.target), "regression"
"""
NOT_DATA = """\
def load():
    return "not an (x, y) pair"
"""
BUILDERS = {"net.py": NET, "kw.py": KWARGS, "raises.py": RAISES, "notmodule.py": NOT_MODULE, "wrong.py": WRONG_SHAPE,
            "iris_reg.py": IRIS_AS_REGRESSION, "notdata.py": NOT_DATA}
SPACE = """\
model: {model}
dataset: digits
epochs: 1
params:
  lr: {{type: float, low: 1.0e-3, high: 1.0e-1, log: true}}
  {param}
"""
SPACES = {
    "wrong.yaml": SPACE.format(model="wrong.py:build", param="batch_size: {type: categorical, choices: [32, 64]}"),
    "missing.yaml": SPACE.format(model="nothere.py:build", param="batch_size: {type: categorical, choices: [32, 64]}"),
    "typo.yaml": SPACE.format(model="net.py:build", param="chanels: {type: int, low: 2, high: 4}"),
}


def invoke(*args: Any):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def ok_json(result) -> dict:
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    return json.loads(result.stdout)


def refused(result, *parts: str) -> str:
    """Exit 2, exactly one `error:` line on stderr naming each of `parts`, nothing on stdout."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and result.stdout == "", result.output
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def plain_values(obj: Any) -> list[str]:
    """Every string in a checkpoint (dicts and lists walked, tensors skipped)."""
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in [str(k), *plain_values(v)]]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in plain_values(v)]
    return [obj] if isinstance(obj, str) else []


def find_key(obj: Any, key: str) -> list[Any]:
    """Every value stored under `key`, at any depth (the params file's layout is the core's to choose)."""
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == key] + [x for v in obj.values() for x in find_key(v, key)]
    if isinstance(obj, list):
        return [x for v in obj for x in find_key(v, key)]
    return []


def weights(run: Path) -> list[torch.Tensor]:
    return list(torch.load(run / "model.pt", map_location="cpu", weights_only=True)["state_dict"].values())


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    """A workspace: the builders, the spaces and a copy of examples/, with the current folder there."""
    for name, text in {**BUILDERS, **SPACES}.items():
        (tmp_path / name).write_text(text)
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


TRAIN = ("train", "--dataset", "digits", "--epochs", "1", "--device", "cpu")


# ----------------------------------------------------------------------------- train a user model


def test_train_a_user_model_with_its_own_parameters(ws):
    doc = ok_json(invoke(*TRAIN, "--model", "net.py:build", "--epochs", 2, "--set", "channels=6",
                         "--set", "kernel_size=5", "--set", "lr=3e-3", "--json", "--out", "run"))
    assert doc["status"] == "complete" and doc["epochs"] == 2
    assert doc["dev_error"] < 0.5  # it learned: chance is 0.9 on ten digits
    # channels and kernel_size reached the builder (kernel_size is a TrainConfig field too: with a
    # builder that takes it, the builder's it is)
    assert [tuple(t.shape) for t in weights(ws / "run") if t.ndim == 4] == [(6, 1, 5, 5)]
    # the checkpoint names the builder and the SHA-256 of its file
    ckpt = torch.load(ws / "run" / "model.pt", map_location="cpu", weights_only=True)
    strings = " ".join(plain_values({k: v for k, v in ckpt.items() if k != "state_dict"}))
    assert sha256(ws / "net.py") in strings and "net.py" in strings and "build" in strings
    params = yaml.safe_load((ws / "run" / "config.yaml").read_text())
    assert find_key(params, "channels") == [6] and 5 in find_key(params, "kernel_size")
    assert find_key(params, "lr") == [3e-3]
    # the run's config.yaml reruns it exactly, builder included
    again = ok_json(invoke("train", "--params", ws / "run" / "config.yaml", "--device", "cpu", "--json",
                           "--out", "again"))
    assert again["dev_error"] == doc["dev_error"] and again["history"][-1]["train_loss"] == doc["history"][-1]["train_loss"]


def test_a_builder_with_kwargs_takes_any_name_and_works_on_tabular_data(ws):
    ok_json(invoke(*TRAIN, "--dataset", "iris", "--model", "kw.py:build", "--set", "units=5", "--json", "--out", "run"))
    assert [tuple(t.shape) for t in weights(ws / "run") if t.ndim == 2] == [(5, 4), (3, 5)]  # iris: 4 features, 3 classes


def test_a_library_model_fits_torchvision_resnet(ws):
    doc = ok_json(invoke(*TRAIN, "--model", "examples/resnet_tiny.py:build", "--train-fraction", "0.2",
                         "--set", "batch_size=32", "--json", "--out", "run"))
    assert doc["status"] == "complete" and doc["dev_error"] is not None


# ----------------------------------------------------------------------------- refusals

BAD = [
    ("missing file", (*TRAIN, "--model", "nothere.py:build"), ["nothere.py"]),
    ("missing function", (*TRAIN, "--model", "net.py:nope"), ["net.py", "nope"]),
    ("missing module", (*TRAIN, "--model", "no_such_package_xyz.nets:build"), ["no_such_package_xyz"]),
    ("builder raises", (*TRAIN, "--model", "raises.py:build"), ["raises.py", "boom: this builder is broken"]),
    ("builder raises on tabular data", (*TRAIN, "--dataset", "iris", "--model", "net.py:build"), ["net.py"]),
    ("not an nn.Module", (*TRAIN, "--model", "notmodule.py:build"), ["notmodule.py", "Module"]),
    ("wrong output shape", (*TRAIN, "--model", "wrong.py:build"), ["wrong.py", "10"]),
    ("unknown parameter", (*TRAIN, "--model", "net.py:build", "--set", "chanels=8"), ["chanels", "did you mean 'channels'"]),
    ("builder param to a built-in model", (*TRAIN, "--model", "cnn", "--set", "channels=8"), ["channels"]),
    ("space: wrong output shape", ("tune", "--space", "wrong.yaml", "--root", "studies", "--trials", "1"), ["wrong.py"]),
    ("space: missing file", ("tune", "--space", "missing.yaml", "--root", "studies", "--trials", "1"), ["nothere.py"]),
    ("space: unknown parameter", ("tune", "--space", "typo.yaml", "--root", "studies", "--trials", "1"),
     ["typo.yaml", "chanels", "did you mean 'channels'"]),
    ("py: missing file", (*TRAIN, "--dataset", "py:nodata.py:load"), ["nodata.py"]),
    ("py: missing function", (*TRAIN, "--dataset", "py:iris_reg.py:nope"), ["iris_reg.py", "nope"]),
    ("py: not (x, y)", (*TRAIN, "--dataset", "py:notdata.py:load"), ["notdata.py"]),
]


@pytest.mark.parametrize("args, parts", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_model_or_data_is_one_line_exit_2_nothing_written(ws, args, parts):
    # the train commands name --out: nothing may appear there, nor under studies/ for tune
    args = (*args, "--out", "run") if args[0] == "train" else args
    before = snapshot(ws)  # __pycache__ included: importing the user's file writes nothing beside it
    refused(invoke(*args), *parts)
    assert snapshot(ws) == before


# ----------------------------------------------------------------------------- py: data


def test_py_data_of_n_x_h_x_w_are_one_channel_images(ws):
    """examples/digits_py.py returns the digits as N x 8 x 8 (no channel axis), scaled as the embedded
    set: as 1-channel images they give the same split, the same scaling and the same numbers, and a
    ConvNet (which refuses non-image data) trains on them."""
    cnn = ("--model", "cnn", "--set", "filters=4", "--set", "conv_layers=1", "--set", "depth=0", "--json")
    mine = ok_json(invoke(*TRAIN, *cnn, "--dataset", "py:examples/digits_py.py:load", "--out", "py"))
    embedded = ok_json(invoke(*TRAIN, *cnn, "--out", "emb"))
    assert mine["dev_error"] == embedded["dev_error"]
    ckpt = torch.load(ws / "py" / "model.pt", map_location="cpu", weights_only=True)
    assert list(ckpt["input_shape"]) == [1, 8, 8]
    a, b = (json.loads((ws / d / "split.json").read_text()) for d in ("py", "emb"))
    assert a["hashes"] == b["hashes"] and a["data_hash"] == b["data_hash"] and a["sizes"] == b["sizes"]
    # and a builder gets (C, H, W) too
    ok_json(invoke(*TRAIN, "--model", "examples/convnet.py:build", "--dataset", "py:examples/digits_py.py:load",
                   "--json", "--out", "conv"))


def test_py_data_may_name_the_task_and_be_tensors(ws):
    """iris's labels 0, 1, 2 would be three classes; the loader's third value makes them regression
    targets, and a builder gets out_dim 1 for it."""
    doc = ok_json(invoke(*TRAIN, "--dataset", "py:iris_reg.py:load", "--model", "kw.py:build", "--set", "batch_size=16",
                         "--json", "--out", "run"))
    assert json.loads((ws / "run" / "history.json").read_text())["task"] == "regression"
    assert json.loads((ws / "run" / "split.json").read_text())["task"] == "regression"
    assert [tuple(t.shape) for t in weights(ws / "run") if t.ndim == 2][-1] == (1, 8)
    assert doc["dev_error"] is not None  # an RMSE in the target's units
    plain = ok_json(invoke(*TRAIN, "--dataset", "iris", "--json", "--out", "iris"))  # without the task: classes
    assert json.loads((ws / "iris" / "history.json").read_text())["task"] == "multiclass" and plain["dev_error"] < 1


# ----------------------------------------------------------------------------- the whole pipeline


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict[str, Any]:
    """examples/ copied to a workspace, and a study 'conv' of two complete trials of its ConvNet."""
    root = tmp_path_factory.mktemp("user-model")
    shutil.copytree(EXAMPLES, root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        doc = ok_json(invoke("tune", "--space", "examples/convnet.yaml", "--trials", 2, "--epochs", 2, "--pruner", "none",
                             "--study", "conv", "--root", "studies", "--device", "cpu", "--json"))
    assert doc["states"]["COMPLETE"] == 2
    return {"root": root, "url": f"sqlite:///{(root / 'studies' / 'conv' / 'study.db').resolve()}"}


def records(root: Path) -> list[dict]:
    return sorted(trial_records(open_study("conv", None, root / "studies"), root / "studies" / "conv"),
                  key=lambda r: r["number"])


def best(root: Path) -> dict:
    return min((r for r in records(root) if r["state"] == "COMPLETE"), key=lambda r: (r["value"], r["number"]))


def test_tune_diagnose_evaluate_export_and_reproduce(study, monkeypatch, tmp_path):
    ws = study["root"]
    monkeypatch.chdir(ws)
    top = best(ws)
    # the builder's own parameters are searched like tunectl's
    assert {"lr", "batch_size", "channels", "kernel_size", "dropout"} <= set(top["params"])
    shown = ok_json(invoke("show", "conv", "--root", "studies", "--json"))
    assert shown["best"]["number"] == top["number"]

    # diagnose: thresholds of 0 make any error a problem; its actions name the builder's own knobs
    diag = ok_json(invoke("diagnose", "conv", "--root", "studies", "--bias-threshold", 0, "--variance-threshold", 0,
                          "--next-space", "next/next.yaml", "--json"))
    named = {a["param"] for a in diag["actions"] if a.get("param")}
    assert diag["diagnosis"] != "ok"
    if "bias" in diag["diagnosis"]:
        assert "channels" in named, diag["actions"]  # role: capacity
    if "variance" in diag["diagnosis"]:
        assert "dropout" in named, diag["actions"]  # role: regularization
    assert not named & {"width", "depth", "filters", "conv_layers", "activation"}, named  # not the builder's
    # the next space names the same builder, by a path that works from where it was written (next/)
    file, _, function = yaml.safe_load((ws / "next" / "next.yaml").read_text())["model"].rpartition(":")
    assert function == "build"
    assert (ws / "next" / file).read_bytes() == (ws / "examples" / "convnet.py").read_bytes()  # ws/next/ABS = ABS

    assert invoke("report", "conv", "--root", "studies").exit_code == 0
    assert (ws / "studies" / "conv" / "report.html").is_file()

    looked = ok_json(invoke("evaluate", "conv", "--root", "studies", "--device", "cpu", "--json"))
    assert looked["trial"] == top["number"] and looked["dev_error"] == top["value"]
    assert 0 <= looked["test_error"] <= 1

    bundle = tmp_path / "bundle"
    exported = ok_json(invoke("export", "conv", "--root", "studies", "--out", bundle, "--json"))
    assert exported["trial"] == top["number"]
    assert {"params.yaml", "model.pt", "split.json", "README.md", "convnet.py"} <= {p.name for p in bundle.iterdir()}
    assert (bundle / "convnet.py").read_bytes() == (ws / "examples" / "convnet.py").read_bytes()
    assert f"tunectl train --params {bundle / 'params.yaml'}" in (bundle / "README.md").read_text()

    # the bundle is whole: the original file gone, its command still reproduces the dev error exactly
    (ws / "examples").rename(ws / "examples-away")
    try:
        again = ok_json(invoke("train", "--params", bundle / "params.yaml", "--device", "cpu", "--json",
                               "--out", tmp_path / "again"))
    finally:
        (ws / "examples-away").rename(ws / "examples")
    assert again["dev_error"] == top["value"]
    assert again["train_error"] == pytest.approx(top["train_error"], abs=1e-6)


def test_a_changed_builder_file_is_refused_unless_allowed(study, monkeypatch, tmp_path):
    ws = study["root"]
    monkeypatch.chdir(ws)
    top = best(ws)
    bundle = tmp_path / "bundle"
    ok_json(invoke("export", "conv", "--root", "studies", "--out", bundle, "--json"))
    source = ws / "examples" / "convnet.py"
    original = source.read_bytes()
    source.write_bytes(original + b"\n# edited after tuning: the same network, another file\n")
    try:
        before = snapshot(ws)
        refused(invoke("evaluate", "conv", "--root", "studies", "--device", "cpu"), "convnet.py", "--allow-changed-model")
        refused(invoke("export", "conv", "--root", "studies", "--out", tmp_path / "ex"), "convnet.py",
                "--allow-changed-model")
        assert snapshot(ws) == before and not (tmp_path / "ex").exists()
        looked = ok_json(invoke("evaluate", "conv", "--root", "studies", "--device", "cpu", "--allow-changed-model",
                                "--json"))
        assert looked["dev_error"] == top["value"]  # a comment changes the file, not the network
        ok_json(invoke("export", "conv", "--root", "studies", "--out", tmp_path / "ex", "--allow-changed-model", "--json"))
    finally:
        source.write_bytes(original)

    copy = bundle / "convnet.py"
    copy.write_bytes(copy.read_bytes() + b"\n# edited in the bundle\n")
    refused(invoke("train", "--params", bundle / "params.yaml", "--device", "cpu", "--out", tmp_path / "run"),
            "convnet.py", "--allow-changed-model")
    assert not (tmp_path / "run").exists()
    again = ok_json(invoke("train", "--params", bundle / "params.yaml", "--allow-changed-model", "--device", "cpu",
                           "--json", "--out", tmp_path / "run"))
    assert again["dev_error"] == top["value"]


@pytest.mark.slow
def test_a_second_worker_process_joins_a_study_of_a_user_model(study):
    ws = study["root"]
    done = len([r for r in records(ws) if r["state"] in ("COMPLETE", "PRUNED")])
    cmd = [sys.executable, "-m", "tunectl.cli", "tune", "--storage", study["url"], "--study", "conv",
           "--trials", str(done + 1), "--root", "studies", "--device", "cpu", "--json"]
    proc = subprocess.run(cmd, cwd=ws, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    new = records(ws)[-1]
    assert new["state"] == "COMPLETE" and {"channels", "kernel_size", "dropout"} <= set(new["params"])
    assert json.loads(proc.stdout)["n_trials"] == len(records(ws))


def test_a_worker_imports_only_the_file_the_study_recorded(study, monkeypatch, tmp_path):
    """A changed file at the recorded path is refused without being imported; a machine without the
    file is refused; a copy elsewhere, named with --model, joins only when its hash matches."""
    ws = study["root"]
    monkeypatch.chdir(ws)
    join = ("tune", "--storage", study["url"], "--study", "conv", "--root", "studies", "--device", "cpu")
    source = ws / "examples" / "convnet.py"
    original = source.read_bytes()
    marker = tmp_path / "imported"
    planted = original + f"\nopen({str(marker)!r}, 'w').close()  # runs if this file is ever imported\n".encode()
    n = len([r for r in records(ws) if r["state"] in ("COMPLETE", "PRUNED")])
    try:
        source.write_bytes(planted)
        before = snapshot(ws)
        refused(invoke(*join, "--trials", n + 1), "convnet.py")
        assert not marker.exists(), "a file whose hash differs from the study's was imported"
        assert snapshot(ws) == before

        source.unlink()  # this machine does not have the file the study names
        refused(invoke(*join, "--trials", n + 1), "convnet.py")
        assert snapshot(ws) == {k: v for k, v in before.items() if k != "examples/convnet.py"}

        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "convnet.py").write_bytes(planted)
        refused(invoke(*join, "--trials", n + 1, "--model", f"{elsewhere / 'convnet.py'}:build"), "convnet.py")
        assert not marker.exists()
        (elsewhere / "convnet.py").write_bytes(original)
        doc = ok_json(invoke(*join, "--trials", n + 1, "--model", f"{elsewhere / 'convnet.py'}:build", "--json"))
        assert doc["n_trials"] == len(records(ws)) and records(ws)[-1]["state"] == "COMPLETE"
        assert len([r for r in records(ws) if r["state"] in ("COMPLETE", "PRUNED")]) == n + 1
    finally:
        source.write_bytes(original)


def test_transfer_from_a_user_models_checkpoint(ws):
    """--model transfer --init-from a user model's model.pt: the whole user network is the body (its
    weights carried over), a new head on its raw outputs; the result reruns from its config.yaml."""
    ok_json(invoke(*TRAIN, "--model", "net.py:build", "--set", "channels=4", "--json", "--out", "src"))
    doc = ok_json(invoke(*TRAIN, "--model", "transfer", "--init-from", "src/model.pt", "--set", "freeze=body",
                         "--json", "--out", "tr"))
    source = torch.load(ws / "src" / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    moved = torch.load(ws / "tr" / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    # a frozen body: the source's weights, unchanged, under the same names
    assert all(torch.equal(source[k], moved[k]) for k in source if k.startswith("body."))
    again = ok_json(invoke("train", "--params", ws / "tr" / "config.yaml", "--device", "cpu", "--json", "--out", "tr2"))
    assert again["dev_error"] == doc["dev_error"]


def test_less_regularization_is_not_advised_for_a_builder_parameter_already_at_the_bottom():
    """A high-bias builder trial with dropout 0 (its space's low): no 'less regularization: dropout 0' action;
    with dropout 0.3 the action is there, with a lower range; unmarked parameters still get the hint."""
    from tunectl import advice

    space = {"params": {"channels": {"type": "int", "low": 8, "high": 32, "log": True, "role": "capacity"},
                        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "role": "regularization"}}}

    def less(dropout, sp=space):
        c = {"model": "examples/convnet.py:build", "model_params": {"channels": 16, "dropout": dropout},
             "epochs": 8, "weight_decay": 0.0, "augment": "none"}
        return [a for a in advice._bias_actions(c, sp, True, set()) if a["kind"] == "less_regularization"]

    assert [a for a in less(0.0) if a.get("param") == "dropout"] == []
    (act,) = [a for a in less(0.3) if a.get("param") == "dropout"]
    assert act["change"]["spec"]["high"] == 0.3 and act["change"]["spec"]["low"] == 0.0
    bare = {"params": {"channels": space["params"]["channels"]}}  # nothing marked role: regularization
    assert any("mark its parameters `role: regularization`" in a["text"] for a in less(0.0, bare))
