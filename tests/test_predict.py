"""`tunectl predict`: a study's trial, an export bundle or a run folder on new data; the stored
preprocessing applied, then the model; the test split's predictions give evaluate's test error;
unseen categories and missing values; mismatched columns refused naming them; images (folder:,
npz: without y); the output written whole (kill -9 mid-write, two predicts to one --out); and the
real penguins table trained and tuned without hand cleaning."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import invoke, ok_json
from test_hardening import snapshot  # sizes, hashes, mtimes; a study database by its content
from penguins import penguin_rows, real_penguins, write_penguins_like, write_rows
from tunectl.data import split_indices
from tunectl.sources import DataSpec, load_dataset

SPACE = """\
epochs: 12
params:
  lr: {type: float, low: 3.0e-3, high: 3.0e-2, log: true}
fixed:
  width: 32
  depth: 1
  batch_size: 32
"""
TUNECTL = [sys.executable, "-m", "tunectl.cli"]


def read_csv_text(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def one_line(result, message: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, (result.exit_code, result.output)
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.output and result.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A penguins-like table, a 2-trial study on it, a run folder, and new rows to predict."""
    root = tmp_path_factory.mktemp("predict")
    rows = penguin_rows(240)
    write_rows(root / "p.csv", rows)
    (root / "space.yaml").write_text(SPACE)
    ok_json(invoke("tune", "--space", "space.yaml", "--dataset", "csv:p.csv", "--target", "species", "--study", "pen",
                   "--trials", "2", "--pruner", "none", "--json", cwd=root))
    new = [["name"] + rows[0][1:]] + [[f"bird-{i}"] + r[1:] for i, r in enumerate(penguin_rows(30, seed=7)[1:])]
    write_rows(root / "new.csv", new)
    return root


@pytest.fixture
def ws(base, tmp_path, monkeypatch):
    root = tmp_path / "w"
    shutil.copytree(base, root)
    monkeypatch.chdir(root)
    return root


def predict_json(*args, cwd=None) -> dict:
    return ok_json(invoke("predict", *args, "--json", cwd=cwd))


# ----------------------------------------------------------------------------- a study's model


def test_predict_writes_each_class_probability_next_to_the_id(ws):
    result = invoke("predict", "pen", "--dataset", "csv:new.csv", "--out", "predictions.csv", "--id", "name")
    assert result.exit_code == 0, result.output
    rows = read_csv_text((ws / "predictions.csv").read_text())
    assert len(rows) == 30 and list(rows[0]) == ["name", "prediction", "prob_Adelie", "prob_Chinstrap", "prob_Gentoo"]
    assert [r["name"] for r in rows] == [f"bird-{i}" for i in range(30)]
    for r in rows:
        probs = {c: float(r[f"prob_{c}"]) for c in ("Adelie", "Chinstrap", "Gentoo")}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert r["prediction"] == max(probs, key=probs.get)
    truth = [r[0] for r in penguin_rows(30, seed=7)[1:]]
    assert np.mean([r["prediction"] == t for r, t in zip(rows, truth)]) >= 0.8  # the model learned something
    assert "30 predictions by study 'pen', trial" in result.stdout


def test_predict_on_the_test_split_equals_evaluate(ws):
    ds = load_dataset(DataSpec("csv:p.csv", target="species"))
    _, _, test, _ = split_indices(ds, None, 0)
    rows = penguin_rows(240)
    write_rows(ws / "test.csv", [rows[0]] + [rows[1 + i] for i in test])  # the target column may stay
    got = predict_json("pen", "--dataset", "csv:test.csv")
    truth = [rows[1 + i][0] for i in test]
    error = float(np.mean([p["prediction"] != t for p, t in zip(got["predictions"], truth)]))
    ev = ok_json(invoke("evaluate", "pen", "--json"))
    assert ev["trial"] == int(got["model"].rsplit(" ", 1)[1])
    assert error == ev["test_error"]


def test_an_unseen_category_and_missing_values_are_predicted(ws):
    rows = penguin_rows(4, seed=3, na=False)
    atlantis = [list(r) for r in rows]
    atlantis[2][1] = "Atlantis"  # an island no training row has (rows[0] is the header)
    atlantis[3][6] = "NA"  # sex missing
    atlantis[4][2] = ""  # a missing bill length
    write_rows(ws / "a.csv", atlantis)
    write_rows(ws / "b.csv", rows)
    a = predict_json("pen", "--dataset", "csv:a.csv")["predictions"]
    b = predict_json("pen", "--dataset", "csv:b.csv")["predictions"]
    assert len(a) == 4 and a[0] == b[0]
    for i in (1, 2, 3):  # each changed row was encoded differently (unknown slot, missing slot, median)
        assert a[i]["prediction"] in ("Adelie", "Chinstrap", "Gentoo")
        assert a[i]["prob_Adelie"] != b[i]["prob_Adelie"]


def test_json_goes_to_stdout_and_writes_nothing(ws):
    before = snapshot(ws)
    doc = predict_json("pen", "--dataset", "csv:new.csv", "--id", "name")
    assert doc["n"] == 30 and doc["out"] is None and doc["labels"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert doc["predictions"][0]["name"] == "bird-0"
    assert snapshot(ws) == before


# ----------------------------------------------------------------------------- bundles and run folders


def test_a_bundle_predicts_on_its_own_in_an_empty_folder(ws, tmp_path):
    ok_json(invoke("export", "pen", "--out", "bundle", "--json"))
    assert "preprocessing" in json.loads((ws / "bundle" / "split.json").read_text())
    assert "tunectl predict bundle --dataset" in (ws / "bundle" / "README.md").read_text()
    assert invoke("predict", "pen", "--dataset", "csv:new.csv", "--id", "name", "--out", "from-study.csv").exit_code == 0
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    shutil.copytree(ws / "bundle", elsewhere / "bundle")
    shutil.copy(ws / "new.csv", elsewhere / "new.csv")
    result = invoke("predict", "bundle", "--dataset", "csv:new.csv", "--id", "name", "--out", "from-bundle.csv",
                    cwd=elsewhere)
    assert result.exit_code == 0, result.output
    assert (elsewhere / "from-bundle.csv").read_text() == (ws / "from-study.csv").read_text()


def test_a_run_folder_predicts_regression_in_the_targets_units(ws):
    ok_json(invoke("train", "--dataset", "csv:p.csv", "--target", "body_mass_g", "--epochs", "8", "--out", "run",
                   "--json"))
    history = json.loads((ws / "run" / "history.json").read_text())
    ds = load_dataset(DataSpec("csv:p.csv", target="body_mass_g"))
    _, dev, _, _ = split_indices(ds, None, 0)
    rows = [r for r in penguin_rows(240) if r[5] != "NA"]  # the rows without a target are dropped
    write_rows(ws / "dev.csv", [rows[0]] + [rows[1 + i] for i in dev])
    got = predict_json("run", "--dataset", "csv:dev.csv")
    assert got["columns"] == ["row", "prediction"] and got["task"] == "regression"
    pred = np.array([p["prediction"] for p in got["predictions"]])
    truth = np.array([float(rows[1 + i][5]) for i in dev])
    assert float(np.sqrt(np.mean((pred - truth) ** 2))) == pytest.approx(history["dev_error"], rel=1e-4)


def test_a_bundle_of_your_own_model_predicts_with_its_copy_of_the_builder(tmp_path):
    from sklearn.datasets import load_digits

    repo = Path(__file__).resolve().parent.parent
    work, empty = tmp_path / "work", tmp_path / "empty"
    work.mkdir()
    empty.mkdir()
    shutil.copy(repo / "examples" / "convnet.py", work / "convnet.py")
    space = (repo / "examples" / "convnet.yaml").read_text().replace("epochs: 8", "epochs: 1")
    (work / "convnet.yaml").write_text(space)
    ok_json(invoke("tune", "--space", "convnet.yaml", "--study", "cv", "--trials", "1", "--json", cwd=work))
    x = (load_digits().images[:12] / 16.0).astype(np.float32)  # N x 8 x 8: one-channel images
    np.savez(work / "x.npz", x=x)
    from_study = ok_json(invoke("predict", "cv", "--dataset", "npz:x.npz", "--json", cwd=work))
    ok_json(invoke("export", "cv", "--out", str(empty / "bundle"), "--json", cwd=work))
    shutil.move(work / "x.npz", empty / "x.npz")
    shutil.rmtree(work)  # the builder's original file is gone: the bundle's copy builds the model
    from_bundle = ok_json(invoke("predict", "bundle", "--dataset", "npz:x.npz", "--json", cwd=empty))
    assert from_bundle["n"] == 12 and from_bundle["predictions"] == from_study["predictions"]


def write_images(folder: Path, n: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_images_from_a_folder_and_from_an_npz_without_y(ws):
    from sklearn.datasets import load_digits

    for cls in ("cat", "dog"):
        write_images(ws / "imgs" / cls, 10, seed=len(cls) + ord(cls[0]))
    ok_json(invoke("train", "--dataset", "folder:imgs", "--epochs", "1", "--out", "img-run", "--json"))
    write_images(ws / "new-imgs", 5, seed=99)
    (ws / "new-imgs" / "notes.txt").write_text("not an image\n")
    doc = predict_json("img-run", "--dataset", "folder:new-imgs")
    assert [p["file"] for p in doc["predictions"]] == [f"{i}.png" for i in range(5)]
    assert doc["columns"] == ["file", "prediction", "prob_cat", "prob_dog"]
    digits = load_digits()
    x = (digits.images[:300] / 16.0).astype(np.float32)[:, None]
    np.savez(ws / "digits.npz", x=x, y=digits.target[:300])
    ok_json(invoke("train", "--dataset", "npz:digits.npz", "--epochs", "2", "--out", "npz-run", "--json"))
    np.savez(ws / "x-only.npz", x=x[:20])  # no y: predict needs none
    doc = predict_json("npz-run", "--dataset", "npz:x-only.npz")
    from tunectl.models import load_checkpoint, model_from_checkpoint

    model, _ = model_from_checkpoint(load_checkpoint(ws / "npz-run" / "model.pt"))
    scaling = json.loads((ws / "npz-run" / "split.json").read_text())["scaling"]
    with torch.no_grad():
        xs = (torch.from_numpy(x[:20]) - torch.tensor(scaling["x_mean"])) / torch.tensor(scaling["x_std"])
        expected = model.eval()(xs).argmax(1).tolist()
    assert [int(p["prediction"]) for p in doc["predictions"]] == expected
    assert [p["row"] for p in doc["predictions"]] == list(range(20))
    np.savez(ws / "y-only.npz", y=digits.target[:20])
    np.savez(ws / "flat.npz", x=x[:20].reshape(20, -1))
    one_line(invoke("predict", "npz-run", "--dataset", "npz:y-only.npz", "--json"), "needs an array named 'x'")
    one_line(invoke("predict", "npz-run", "--dataset", "npz:flat.npz", "--json"),
             "x has shape (20, 64) but the model takes N x 1 x 8 x 8")
    one_line(invoke("predict", "npz-run", "--dataset", "npz:x-only.npz", "--id", "row", "--json"),
             "--id row: only for tables")
    one_line(invoke("predict", "npz-run", "--dataset", "csv:p.csv", "--json"), "not a table; give npz:PATH")
    one_line(invoke("predict", "img-run", "--dataset", "folder:nowhere", "--json"), "folder:nowhere: no such folder")


def test_export_onnx_gives_predicts_probabilities(ws):
    from pg import require_module

    ort = require_module("onnxruntime", "export --format onnx is checked with onnxruntime (pip install 'tunectl[onnx]')")
    from tunectl.sources import _to_float32
    from tunectl.tables import encode, read_for

    bad = invoke("export", "pen", "--out", "tfl", "--format", "tflite")
    assert bad.exit_code == 2 and "tflite" in bad.stderr and not (ws / "tfl").exists()
    doc = ok_json(invoke("export", "pen", "--out", "onnx-bundle", "--format", "onnx", "--json"))
    assert "model.onnx" in doc["files"]
    record = json.loads((ws / "onnx-bundle" / "split.json").read_text())["preprocessing"]
    frame, _ = read_for(record, "csv:new.csv", "name")
    x = _to_float32(encode(record, frame), "new.csv").numpy()  # the encoded features, unscaled: ONNX scales them
    (y,) = ort.InferenceSession(str(ws / "onnx-bundle" / "model.onnx")).run(None, {"x": x})
    got = predict_json("onnx-bundle", "--dataset", "csv:new.csv", "--id", "name")
    expected = np.array([[p[f"prob_{c}"] for c in got["labels"]] for p in got["predictions"]])
    assert y.shape == expected.shape == (30, 3)
    np.testing.assert_allclose(y, expected, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- bad input: one line, exit 2


def test_mismatched_columns_are_one_line_naming_them(ws):
    rows = penguin_rows(5, seed=1)
    cases = {
        "missing": ([[c for c in r if c is not r[6]] for r in rows], "missing sex"),
        "extra": ([r + ["x"] for r in rows[:1]] + [r + ["1"] for r in rows[1:]], "not in training x"),
        "type": ([rows[0]] + [r[:5] + ["heavy"] + r[6:] for r in rows[1:]],
                 "wrong type body_mass_g (numbers expected, found 'heavy')"),
    }
    cases["missing"] = ([r[:6] + r[7:] for r in rows], "missing sex")
    for name, (table, message) in cases.items():
        write_rows(ws / f"{name}.csv", table)
        line = one_line(invoke("predict", "pen", "--dataset", f"csv:{name}.csv", "--out", "out.csv"), message)
        assert "give the columns the model was trained on: island, bill_length_mm" in line
        assert not (ws / "out.csv").exists()


BAD = [
    (("pen", "--dataset", "csv:new.csv"), "give --out FILE for the predictions CSV (or --json"),
    (("pen", "--dataset", "csv:new.csv", "--out", "studies"), "--out studies: is a folder"),
    (("pen", "--dataset", "csv:new.csv", "--out", "nowhere/p.csv"), "--out nowhere/p.csv: the folder nowhere does not exist"),
    (("pen", "--dataset", "csv:new.csv", "--out", "new.csv"), "--out new.csv: exists; give a new file, or add --force"),
    (("pen", "--dataset", "csv:new.csv", "--out", "o.csv", "--id", "nope"), "--id nope: csv:new.csv has no column 'nope'"),
    (("pen", "--dataset", "csv:new.csv", "--out", "o.csv", "--id", ""), "--id : csv:new.csv has no column ''"),
    (("pen", "--dataset", "csv:new.csv", "--out", "o.csv", "--trial", "99"), "trial 99"),
    (("nosuch", "--dataset", "csv:new.csv", "--out", "o.csv"), "no study storage at"),
    (("./space.yaml", "--dataset", "csv:new.csv", "--out", "o.csv"), "./space.yaml: not an export bundle or run folder"),
    (("pen", "--dataset", "npz:new.csv", "--out", "o.csv"), "the model was trained on a table (csv:p.csv)"),
    (("pen", "--dataset", "new.csv", "--out", "o.csv"), "--dataset 'new.csv': give csv:PATH, parquet:PATH"),
    (("pen", "--dataset", "csv:absent.csv", "--out", "o.csv"), "csv:absent.csv: no such file"),
    (("pen", "--dataset", "parquet:new.csv", "--out", "o.csv"), "parquet:new.csv: not a readable Parquet file"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_predict_inputs_are_one_line_exit_2_and_write_nothing(ws, args, message):
    before = snapshot(ws)
    one_line(invoke("predict", *args), message)
    assert snapshot(ws) == before


def test_bad_bundle_inputs(ws):
    ok_json(invoke("export", "pen", "--out", "bundle", "--json"))
    one_line(invoke("predict", "bundle", "--trial", "0", "--dataset", "csv:new.csv", "--out", "o.csv"),
             "--trial 0: bundle is one model (a bundle or run folder); drop --trial")
    (ws / "bundle" / "split.json").write_text("{not json")
    one_line(invoke("predict", "bundle", "--dataset", "csv:new.csv", "--out", "o.csv"), "not a readable split manifest")
    (ws / "bundle" / "split.json").unlink()
    one_line(invoke("predict", "bundle", "--dataset", "csv:new.csv", "--out", "o.csv"), "has a model.pt but no split.json")
    (ws / "bundle" / "model.pt").write_bytes(b"garbage")
    one_line(invoke("predict", "bundle", "--dataset", "csv:new.csv", "--out", "o.csv"), "bundle/model.pt")


# ----------------------------------------------------------------------------- written whole


def test_kill_9_during_the_write_leaves_no_half_file(ws):
    rows = penguin_rows(60000, seed=5)  # a big input: the write takes a moment
    write_rows(ws / "big.csv", rows)
    out = ws / "big-out.csv"
    for attempt in range(3):  # the poll may miss a short write on a loaded machine: try again
        proc = subprocess.Popen([*TUNECTL, "predict", "pen", "--dataset", "csv:big.csv", "--out", "big-out.csv"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline, seen = time.monotonic() + 180, False
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.name.startswith(".big-out.csv.") for p in ws.iterdir()):  # the temporary file: mid-write
                proc.send_signal(signal.SIGKILL)
                seen = True
                break
            time.sleep(0.0005)
        proc.wait(timeout=30)
        if seen:
            assert proc.returncode == -signal.SIGKILL
            assert not out.exists() or len(read_csv_text(out.read_text())) == 60000  # never half a file
            break
        assert proc.returncode == 0 and len(read_csv_text(out.read_text())) == 60000  # finished first: whole
        out.unlink()
    assert seen, "three predicts finished before the poll saw their temporary file"
    result = invoke("predict", "pen", "--dataset", "csv:new.csv", "--id", "name", "--out", "big-out.csv", "--force")
    assert result.exit_code == 0 and len(read_csv_text(out.read_text())) == 30, result.output


@pytest.mark.parametrize("force", [False, True])
def test_two_predicts_to_one_out(ws, force):
    cmd = [*TUNECTL, "predict", "pen", "--dataset", "csv:new.csv", "--id", "name", "--out", "same.csv",
           *(["--force"] if force else [])]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    if force:
        assert codes == [0, 0], results
    else:  # one wins; the other is refused in one line, whenever it looked
        assert codes == [0, 2], results
        err = next(e for code, e in results if code == 2).strip().splitlines()
        assert len(err) == 1 and ("exists" in err[0] or "another process wrote it meanwhile" in err[0]), err
    rows = read_csv_text((ws / "same.csv").read_text())
    assert len(rows) == 30
    assert not [p for p in ws.iterdir() if p.name.startswith(".same.csv")]


# ----------------------------------------------------------------------------- the real penguins table


@pytest.mark.slow
def test_the_real_penguins_table_trains_tunes_and_predicts_without_cleaning(tmp_path):
    shutil.copy(real_penguins(), tmp_path / "penguins.csv")
    data = ("--dataset", "csv:penguins.csv", "--target", "species")
    run = invoke("train", *data, "--epochs", "25", "--out", "run", cwd=tmp_path)
    assert run.exit_code == 0, run.output
    assert "csv:penguins.csv: 344 rows read, target species; 344 kept" in run.stderr
    assert "categorical: island (3 categories), sex (2 categories; 11 missing → own category)" in run.stderr
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["dev_error"] <= 0.03
    (tmp_path / "space.yaml").write_text(SPACE.replace("epochs: 12", "epochs: 20"))
    summary = ok_json(invoke("tune", "--space", "space.yaml", *data, "--study", "real", "--trials", "2", "--pruner",
                             "none", "--json", cwd=tmp_path))
    assert summary["best"]["value"] <= 0.03
    # predict on the test split gives evaluate's test error; a category unseen in training works
    ds = load_dataset(DataSpec(f"csv:{tmp_path / 'penguins.csv'}", target="species"))
    _, _, test, _ = split_indices(ds, None, 0)
    lines = (tmp_path / "penguins.csv").read_text().splitlines()
    test_lines = [lines[0]] + [lines[1 + i] for i in test]
    (tmp_path / "test.csv").write_text("\n".join(test_lines) + "\n")
    got = ok_json(invoke("predict", "real", "--dataset", "csv:test.csv", "--json", cwd=tmp_path))
    truth = [line.split(",")[0] for line in test_lines[1:]]
    ev = ok_json(invoke("evaluate", "real", "--json", cwd=tmp_path))
    assert float(np.mean([p["prediction"] != t for p, t in zip(got["predictions"], truth)])) == ev["test_error"]
    (tmp_path / "odd.csv").write_text(lines[0] + "\n" + lines[1].replace("Torgersen", "Anvers") + "\n")
    odd = ok_json(invoke("predict", "real", "--dataset", "csv:odd.csv", "--json", cwd=tmp_path))
    assert odd["n"] == 1 and odd["predictions"][0]["prediction"] in ("Adelie", "Chinstrap", "Gentoo")
