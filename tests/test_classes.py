"""--classes: a classification data set cut down to some of its classes, relabelled 0..k-1, and recorded
(issue 13). Tested through the core: DataSettings and load_splits."""

from __future__ import annotations

import pytest
import torch

from tunectl.data import DataSettings, load_splits, same_split
from tunectl.errors import DataError


def splits(**data):
    return load_splits(DataSettings.from_dict({"dataset": "digits", **data}))


def labels(s) -> list[int]:
    return sorted(set(s.y_train.tolist()) | set(s.y_dev.tolist()))


def test_a_range_keeps_those_classes_relabelled_and_about_half_the_examples():
    full, low = splits(), splits(classes="0-4")
    assert low.classes == ["0", "1", "2", "3", "4"] and low.out_dim == 5 and low.task == "multiclass"
    assert labels(low) == [0, 1, 2, 3, 4]
    for part in ("train", "dev", "test"):
        assert 0.45 < low.manifest["sizes"][part] / full.manifest["sizes"][part] < 0.55
    assert low.manifest["classes"] == {"selection": "0-4", "names": ["0", "1", "2", "3", "4"], "indices": [0, 1, 2, 3, 4]}
    assert low.manifest["data_hash"] != full.manifest["data_hash"]
    assert low.manifest["hashes"] != full.manifest["hashes"]
    assert not same_split(low.manifest, full.manifest)
    assert "classes" not in full.manifest and {"seed", "sizes", "spec", "stratified", "task"} <= set(low.manifest)
    again = splits(classes="0-4")
    assert again.manifest == low.manifest and torch.equal(again.x_train, low.x_train)


def test_the_upper_digits_are_relabelled_from_zero_and_differ_from_the_lower():
    low, high = splits(classes="0-4"), splits(classes="5-9")
    assert high.classes == ["5", "6", "7", "8", "9"] and labels(high) == [0, 1, 2, 3, 4]
    assert high.manifest["classes"]["indices"] == [5, 6, 7, 8, 9]
    assert high.manifest["data_hash"] != low.manifest["data_hash"]


def test_lists_names_and_indices_select_the_same_classes():
    a = load_splits(DataSettings.from_dict({"dataset": "iris", "classes": "setosa,virginica"}))
    b = load_splits(DataSettings.from_dict({"dataset": "iris", "classes": "2, 0"}))
    assert a.classes == b.classes == ["setosa", "virginica"]
    assert a.task == "binary" and a.out_dim == 1 and labels(a) == [0, 1]
    assert a.manifest["data_hash"] == b.manifest["data_hash"] and a.manifest["hashes"] == b.manifest["hashes"]
    assert splits(classes="5,6,7").classes == ["5", "6", "7"]
    assert splits(classes="1-2,7").classes == ["1", "2", "7"]


def test_the_setting_is_stored_and_read_back():
    d = DataSettings.from_dict({"dataset": "digits"}, classes="0-4")
    assert d.classes == "0-4" and d.to_dict()["classes"] == "0-4"
    assert DataSettings.from_dict(d.to_dict()) == d
    assert "classes" not in DataSettings().to_dict()
    assert DataSettings.from_dict({"dataset": "digits", "classes": "3,8"}, task="binary") is not None
    assert load_splits(DataSettings.from_dict({"dataset": "digits", "classes": "3,8", "task": "binary"})).task == "binary"


@pytest.mark.parametrize("data, words", [
    ({"classes": ""}, "empty selection"),
    ({"classes": " , "}, "empty selection"),
    ({"classes": "1,,2"}, "empty item"),
    ({"classes": 3}, "give class indices or names"),
    ({"classes": "3"}, "at least two"),
    ({"classes": "3,3"}, "at least two"),
    ({"classes": "0-12"}, "no class 12"),
    ({"classes": "cat,dog"}, "no class 'cat'"),
    ({"classes": "4-0"}, "runs backwards"),
    ({"classes": "1,2,3", "task": "binary"}, "needs 2"),
    ({"classes": "0-4", "task": "regression"}, "regression"),
    ({"dataset": "diabetes", "classes": "0-1"}, "regression data set"),
])
def test_refusals_are_one_line(data, words):
    with pytest.raises(DataError) as e:
        splits(**data)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_flag_is_refused_in_its_own_name():
    with pytest.raises(DataError, match=r"^--classes '': an empty selection"):
        DataSettings.from_dict({}, classes="")
    with pytest.raises(DataError, match=r"^data\.classes: "):
        DataSettings.from_dict({"classes": ""})


def test_classes_from_the_command_line_make_their_own_study(tmp_path, monkeypatch):
    """`tune --classes 0-4`: a study of its own by default (digits-0-4-quick), its split manifest
    recording the selection; `train --classes` on the embedded digits, and one line for a bad one."""
    import json

    from conftest import invoke, ok_json

    monkeypatch.chdir(tmp_path)
    low = ok_json(invoke("tune", "--dataset", "digits", "--classes", "0-4", "--trials", "1", "--epochs", "1", "--json"))
    assert low["study"] == "digits-0-4-quick"
    manifest = json.loads((tmp_path / "studies" / "digits-0-4-quick" / "split.json").read_text())
    assert manifest["classes"]["selection"] == "0-4" and manifest["classes"]["names"] == ["0", "1", "2", "3", "4"]
    run = ok_json(invoke("train", "--dataset", "digits", "--classes", "5-9", "--epochs", "1", "--json", "--out", "high"))
    assert json.loads((tmp_path / "high" / "split.json").read_text())["classes"]["indices"] == [5, 6, 7, 8, 9]
    assert run["dev_error"] is not None
    bad = invoke("train", "--dataset", "digits", "--classes", "7-3", "--out", "bad")
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--classes" in bad.stderr
    assert not (tmp_path / "bad").exists()
