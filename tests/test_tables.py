"""Tables (tunectl/tables.py): types inferred and overridden, one-hot from the training split with an
unknown slot, medians and missing indicators (checked against scikit-learn's own transformers),
--dropna and missing targets counted, identifiers refused, the record stored and applied as stored,
Parquet read like CSV, and every new option's bad inputs as one line (exit 2, nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import invoke, ok_json
from test_hardening import snapshot  # sizes, hashes, mtimes; a study database by its content
from penguins import penguin_rows, real_penguins, write_penguins_like, write_rows
from tunectl.data import DataSettings, load_splits, make_splits, split_indices
from tunectl.errors import DataError
from tunectl.sources import DataSpec, load_dataset
from tunectl.tables import MISSING, UNKNOWN, encode, fit


def table_splits(path, **kw):
    return load_splits(DataSettings(dataset=f"csv:{path}", target="species", **kw), include_test=True)


@pytest.fixture
def penguins_csv(tmp_path):
    return write_penguins_like(tmp_path / "penguins.csv")


# ----------------------------------------------------------------------------- types


def test_types_are_inferred_and_the_flags_override_them(penguins_csv):
    ds = load_dataset(DataSpec(f"csv:{penguins_csv}", target="species"))
    assert ds.task == "multiclass" and ds.classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert ds.table.types == {"island": "categorical", "bill_length_mm": "numeric", "bill_depth_mm": "numeric",
                              "flipper_length_mm": "numeric", "body_mass_g": "numeric", "sex": "categorical",
                              "year": "numeric"}
    forced = load_dataset(DataSpec(f"csv:{penguins_csv}", target="species", categorical="year", drop="body_mass_g"))
    assert forced.table.types["year"] == "categorical" and forced.table.how["year"] == "--categorical"
    assert "body_mass_g" not in forced.table.types and forced.table.dropped == ["body_mass_g"]
    assert sorted(forced.table.frame["year"].unique()) == ["2007", "2008", "2009"]  # categories are the text


def test_a_numeric_flag_on_text_names_the_cell(penguins_csv):
    with pytest.raises(DataError, match=r"line 2, column 'island': 'Dream' is not a number, and island is numeric"):
        load_dataset(DataSpec(f"csv:{penguins_csv}", target="species", numeric="island"))


def test_identifier_columns_are_refused_with_the_fix(tmp_path):
    rows = penguin_rows(60)
    with_name = [rows[0] + ["name"]] + [r + [f"bird-{i}"] for i, r in enumerate(rows[1:])]
    path = write_rows(tmp_path / "named.csv", with_name)
    with pytest.raises(DataError, match=r"column 'name' looks like an identifier \(all 60 values distinct\); "
                                        r"--drop name"):
        load_dataset(DataSpec(f"csv:{path}", target="species"))
    assert load_dataset(DataSpec(f"csv:{path}", target="species", drop="name")).table.types.get("name") is None
    with_id = [["penguin_id"] + rows[0]] + [[str(i + 1)] + r for i, r in enumerate(rows[1:])]
    path = write_rows(tmp_path / "ids.csv", with_id)
    with pytest.raises(DataError, match=r"column 'penguin_id' looks like an identifier .*--drop penguin_id "
                                        r"\(or --numeric penguin_id"):
        load_dataset(DataSpec(f"csv:{path}", target="species"))
    kept = load_dataset(DataSpec(f"csv:{path}", target="species", numeric="penguin_id"))
    assert kept.table.types["penguin_id"] == "numeric"


def test_a_stray_text_cell_in_a_numeric_column_is_named(tmp_path):
    rows = penguin_rows(60)
    rows[9][3] = "n/a?"  # not one of pandas' missing-value markers
    path = write_rows(tmp_path / "typo.csv", rows)
    with pytest.raises(DataError, match=r"line 10, column 'bill_depth_mm': 'n/a\?' is not a number, but the "
                                        r"column's other values are"):
        load_dataset(DataSpec(f"csv:{path}", target="species"))


# ----------------------------------------------------------------------------- the record


def test_encoding_matches_scikit_learn_fitted_on_the_training_rows(penguins_csv):
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    ds = load_dataset(DataSpec(f"csv:{penguins_csv}", target="species"))
    train, dev, test, _ = split_indices(ds, None, 0)
    record = fit(ds.table, train)
    x = encode(record, ds.table.frame)
    names = record["features"]
    frame = ds.table.frame
    for col in ("bill_length_mm", "body_mass_g"):  # both have missing values in the training rows
        imp = SimpleImputer(strategy="median", add_indicator=True).fit(frame[[col]].iloc[train])
        expected = imp.transform(frame[[col]])
        got = x[:, [names.index(col), names.index(f"{col} missing")]]
        np.testing.assert_array_equal(got, expected)
    for col in ("island", "sex"):
        known = frame[col].iloc[train].dropna()
        enc = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(known.to_frame())
        rows = frame[col].notna().to_numpy()
        slots = [names.index(f"{col}={c}") for c in enc.categories_[0]]
        np.testing.assert_array_equal(x[rows][:, slots], enc.transform(frame[[col]][rows]))
    assert f"sex={MISSING}" in names and x[frame["sex"].isna().to_numpy(), names.index(f"sex={MISSING}")].all()
    assert (x[:, names.index(f"island={UNKNOWN}")] == 0).all()  # every island was seen in training


def test_categories_and_medians_come_from_the_training_split_only(tmp_path):
    rows = penguin_rows(90, na=False)
    path = write_rows(tmp_path / "p.csv", rows)
    ds = load_dataset(DataSpec(f"csv:{path}", target="species"))
    train, dev, test, _ = split_indices(ds, None, 0)
    rows[1 + test[0]][1] = "Atlantis"  # an island only the test split has
    rows[1 + dev[0]][3] = "99.9"  # an outlier outside the training rows cannot move the median
    path = write_rows(tmp_path / "p.csv", rows)
    s = table_splits(path)
    record = s.manifest["preprocessing"]
    island = next(c for c in record["columns"] if c["name"] == "island")
    assert "Atlantis" not in island["categories"]
    depth = next(c for c in record["columns"] if c["name"] == "bill_depth_mm")
    train_values = [float(rows[1 + i][3]) for i in train]
    assert depth["median"] == float(np.median(train_values))
    # the Atlantis row is encoded in the unknown slot: scaled, it is the only one off the training mean
    slot = record["features"].index(f"island={UNKNOWN}")
    x_test = s.test[0]
    row = int(np.searchsorted(test, test[0]))
    assert x_test[row, slot] > 0 and (x_test[np.arange(len(test)) != row, slot] == 0).all()


def test_dropna_and_missing_targets_are_counted_in_the_manifest(tmp_path):
    rows = penguin_rows(120)
    for i in (3, 40, 77):
        rows[i][0] = "NA"  # no target: always dropped
    path = write_rows(tmp_path / "p.csv", rows)
    data = [r for r in rows[1:] if r[0] != "NA"]
    incomplete = sum(1 for r in data if any(v in ("", "NA") for v in r))
    filled = table_splits(path)
    assert filled.manifest["dropped_rows"] == {"missing_target": 3, "incomplete": 0}
    assert filled.manifest["n_examples"] == 117
    dropped = table_splits(path, dropna=True)
    assert dropped.manifest["dropped_rows"] == {"missing_target": 3, "incomplete": incomplete} and incomplete > 0
    assert dropped.manifest["n_examples"] == 117 - incomplete
    record = dropped.manifest["preprocessing"]
    assert not any(c.get("indicator") or c.get("missing_slot") for c in record["columns"])
    doc = ok_json(invoke("datasets", "--dataset", f"csv:{path}", "--target", "species", "--dropna", "--json"))
    assert doc["dropped_rows"] == {"missing_target": 3, "incomplete": incomplete}
    assert any(f"dropped 3 without a target, {incomplete} incomplete (--dropna)" in line for line in doc["lines"])


def test_a_stored_record_is_applied_as_stored_not_recomputed(penguins_csv):
    first = table_splits(penguins_csv)
    stored = json.loads(json.dumps(first.manifest))  # as split.json holds it
    col = next(c for c in stored["preprocessing"]["columns"] if c["name"] == "bill_length_mm")
    col["median"] = 1000.0  # a record that differs from what refitting would give
    stored["scaling"]["x_mean"][0][0] = 5.0
    ds = load_dataset(DataSpec(f"csv:{penguins_csv}", target="species"))
    again = make_splits(ds, seed=0, include_test=True, stored=stored)
    assert again.manifest["preprocessing"]["columns"] == stored["preprocessing"]["columns"]
    missing = ds.table.frame["bill_length_mm"].isna().to_numpy()
    names = stored["preprocessing"]["features"]
    k = names.index("bill_length_mm")
    train, _, _, _ = split_indices(ds, None, 0)
    scale = stored["scaling"]["x_std"][0][k]
    # a missing bill length in the training rows reads 1000 mm, scaled with the stored mean and std
    row = int(np.flatnonzero(missing[train])[0])
    mean = stored["scaling"]["x_mean"][0][k]
    assert again.x_train[row, k].item() == pytest.approx((1000.0 - mean) / scale, rel=1e-6)
    assert again.x_train[:, 0].sub(first.x_train[:, 0]).abs().max() > 0  # the stored mean 5.0 was used
    same = make_splits(ds, seed=0, include_test=True, stored=first.manifest)
    assert same.manifest["data_hash"] == first.manifest["data_hash"]


def test_parquet_reads_like_the_csv(penguins_csv, tmp_path):
    import pandas as pd

    frame = pd.read_csv(penguins_csv)  # pandas' own types: floats with NaN, text, int year
    frame.to_parquet(tmp_path / "p.parquet")
    a = table_splits(penguins_csv)
    b = load_splits(DataSettings(dataset=f"parquet:{tmp_path / 'p.parquet'}", target="species"), include_test=True)
    assert a.manifest["preprocessing"]["features"] == b.manifest["preprocessing"]["features"]
    assert [c.get("median") for c in a.manifest["preprocessing"]["columns"]] == \
        [c.get("median") for c in b.manifest["preprocessing"]["columns"]]
    assert a.manifest["hashes"] == b.manifest["hashes"]
    np.testing.assert_array_equal(a.x_train.numpy(), b.x_train.numpy())


def test_parquet_types_bools_categories_and_dates(tmp_path):
    import pandas as pd

    n = 40
    pd.DataFrame({"y": np.arange(n) % 2, "c": pd.Categorical(["a", "b"] * 20), "b": [True, False] * 20,
                  "d": pd.date_range("2020-01-01", periods=n)}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"column 'd' holds dates or times; --drop d"):
        load_dataset(DataSpec(f"parquet:{tmp_path / 't.parquet'}", target="y"))
    ds = load_dataset(DataSpec(f"parquet:{tmp_path / 't.parquet'}", target="y", drop="d"))
    assert ds.table.types == {"c": "categorical", "b": "numeric"}
    assert ds.table.frame["b"].tolist()[:2] == [1.0, 0.0] and ds.table.frame["c"].tolist()[:2] == ["a", "b"]


def test_the_real_penguins_table_either_way():
    path = real_penguins()
    filled = load_splits(DataSettings(dataset=f"csv:{path}", target="species"))
    assert filled.manifest["n_examples"] == 344 and filled.manifest["dropped_rows"]["incomplete"] == 0
    sex = next(c for c in filled.manifest["preprocessing"]["columns"] if c["name"] == "sex")
    assert sex["categories"] == ["female", "male"] and sex["missing"] == 11
    dropped = load_splits(DataSettings(dataset=f"csv:{path}", target="species", dropna=True))
    assert dropped.manifest["dropped_rows"]["incomplete"] == 11 and dropped.manifest["n_examples"] == 333


# ----------------------------------------------------------------------------- bad inputs: one line, exit 2


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    write_penguins_like(tmp_path / "p.csv", 60)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1" + b"\x00" * 64)
    (tmp_path / "folder.parquet").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


TABLE = ("--dataset", "csv:p.csv", "--target", "species")
BAD = [
    ((*TABLE, "--drop", "wingspan"), "--drop wingspan: csv:p.csv has no column 'wingspan'"),
    ((*TABLE, "--drop", "island,,sex"), "--drop 'island,,sex': an empty name between commas"),
    ((*TABLE, "--drop", "species"), "--drop species: is the --target column"),
    ((*TABLE, "--categorical", "beak"), "--categorical beak: csv:p.csv has no column 'beak'"),
    ((*TABLE, "--categorical", "year,year"), "names 'year' twice"),
    ((*TABLE, "--categorical", "year", "--numeric", "year"), "column 'year' is named by two of --drop, --categorical"),
    ((*TABLE, "--numeric", "island"), "column 'island': 'Dream' is not a number, and island is numeric"),
    ((*TABLE, "--numeric", ""), "--numeric '': give column names between commas"),
    ((*TABLE, "--numeric", "nope"), "--numeric nope: csv:p.csv has no column 'nope'"),
    (("--dataset", "digits", "--dropna"), "--dropna: only for tables (csv:PATH, parquet:PATH), not 'digits'"),
    (("--dataset", "iris", "--drop", "a"), "--drop: only for tables"),
    ((*TABLE, "--dropna", "--drop", "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year"),
     "csv:p.csv: no feature column left after --drop"),
    (("--dataset", "parquet:broken.parquet", "--target", "y"), "parquet:broken.parquet: not a readable Parquet file"),
    (("--dataset", "parquet:folder.parquet", "--target", "y"), "parquet:folder.parquet: is a folder, not a Parquet file"),
    (("--dataset", "parquet:missing.parquet", "--target", "y"), "parquet:missing.parquet: no such file"),
]


@pytest.mark.parametrize("command", ["train", "datasets"])
@pytest.mark.parametrize("args,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_table_inputs_are_one_line_exit_2_and_write_nothing(workspace, command, args, message):
    before = snapshot(workspace)
    extra = ("--epochs", "1", "--out", "run") if command == "train" else ()
    result = invoke(command, *args, *extra)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, (result.exit_code, result.output)
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.output and result.stdout == ""
    assert snapshot(workspace) == before


def test_bad_table_settings_in_a_params_file(workspace):
    (workspace / "params.yaml").write_text("lr: 0.01\ndata:\n  dataset: csv:p.csv\n  target: species\n  dropna: maybe\n")
    result = invoke("train", "--params", "params.yaml", "--epochs", "1")
    assert result.exit_code == 2 and "data.dropna: expected true or false, got 'maybe'" in result.stderr
    (workspace / "params.yaml").write_text("lr: 0.01\ndata:\n  dataset: csv:p.csv\n  target: species\n  drop: ',x'\n")
    result = invoke("train", "--params", "params.yaml", "--epochs", "1")
    assert result.exit_code == 2 and "data.drop: an empty name between commas" in result.stderr
