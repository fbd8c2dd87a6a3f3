"""Tables: CSV and Parquet files read with pandas, their column types inferred, and the preprocessing record learned from the training split.

`read_table` reads a file into a `Table`: the feature columns by type (numeric or categorical,
inferred, or as --numeric / --categorical say), the target, and the rows dropped (a missing
target always; an incomplete row with --dropna). `fit` learns the preprocessing record from
the training rows only; `encode` applies a record to any rows (dev, test, a file given to
`tunectl predict`), identically.

The record is plain JSON, stored in the split manifest (split.json, the study, an export), so
that every later command applies the same statistics without recomputing them and without a
pickle. What it holds, per column:

- numeric: the training median, which fills a missing value, and a 0/1 "missing" indicator
  column when the training split has missing values (scikit-learn's
  `SimpleImputer(strategy="median", add_indicator=True)`);
- categorical: the categories seen in the training split, one-hot, plus a slot for a missing
  value (its own category) and an "unknown" slot for a category first seen in dev, test or at
  predict time (`OneHotEncoder(handle_unknown="ignore")` would give such a row all zeros).

Why not scikit-learn's fitted transformers themselves: they persist only as pickles, and
rebuilding one from JSON means refitting it on made-up data. The statistics are a median and a
list of categories per column; tests/test_tables.py checks the encoding against scikit-learn's.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunectl.errors import DataError

FORMATS = ("csv", "parquet")
MISSING, UNKNOWN = "<missing>", "<unknown>"
NA_AFTER_STRIP = ("NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "<NA>", "#N/A")  # pandas' own markers
MAX_CATEGORIES = 100  # a text column with more distinct values than this (and than half its rows) is free text
ID_NAME = re.compile(r"(^|[_\s.-])(id|idx|index|key|row|rowid|uuid)$|^unnamed: ?0$", re.I)


def _q(text: Any, limit: int = 40) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _names(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(n if len(n) <= 40 else n[:37] + "..." for n in names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def parse_columns(text: Any, option: str) -> list[str]:
    """--drop / --categorical / --numeric: column names between commas, none empty, none twice."""
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{option} {_q(text)}: give column names between commas, e.g. {option} id,name")
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise DataError(f"{option} {_q(text)}: an empty name between commas; e.g. {option} id,name")
    twice = sorted({i for i in items if items.count(i) > 1})
    if twice:
        raise DataError(f"{option} {_q(text)}: names {_q(twice[0])} twice; give each column once")
    return items


def is_table(name: Any) -> bool:
    return isinstance(name, str) and name.split(":", 1)[0] in FORMATS and ":" in name


@dataclass
class Table:
    """A table's feature columns, converted by type: numeric ones float64 (NaN: missing), categorical
    ones text (None: missing), and what reading it did."""

    where: str
    frame: Any  # a pandas DataFrame of the feature columns
    types: dict[str, str]  # column -> "numeric" | "categorical", in the file's order
    target: str | None = None
    target_values: Any = None  # a NumPy object array, one per row kept
    rows: dict[str, int] = field(default_factory=dict)  # read, missing_target, incomplete (--dropna), kept
    dropped: list[str] = field(default_factory=list)  # --drop
    dropna: bool = False
    how: dict[str, str] = field(default_factory=dict)  # column -> "inferred" | "--numeric" | "--categorical"

    def take(self, rows: Any) -> "Table":
        """These rows only (a boolean mask or indices), e.g. the classes --classes keeps."""
        rows = np.asarray(rows)
        idx = np.flatnonzero(rows) if rows.dtype == bool else rows
        return Table(self.where, self.frame.iloc[idx].reset_index(drop=True), self.types, self.target,
                     self.target_values[idx] if self.target_values is not None else None,
                     {**self.rows, "kept": int(len(idx))}, self.dropped, self.dropna, self.how)


# ----------------------------------------------------------------------------- reading


def read_frame(name: str):
    """csv:PATH or parquet:PATH -> a pandas DataFrame, every refusal one line. A CSV's cells are read as
    text (pandas' missing-value markers, such as an empty cell or NA, become missing) and stripped."""
    import pandas as pd

    kind, path = name.split(":", 1)
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{name}: is a folder, not a {kind.upper() if kind == 'csv' else 'Parquet'} file; "
                        f"give the file's path")
    if not path.is_file():
        raise DataError(f"{name}: no such file")
    if kind == "parquet":
        try:
            frame = pd.read_parquet(path, engine="pyarrow")
        except ImportError:
            raise DataError(f"{name}: reading Parquet needs pyarrow; pip install pyarrow") from None
        except Exception as e:  # noqa: BLE001 - pyarrow's ArrowInvalid, OSError, ...: not a Parquet file
            raise DataError(f"{name}: not a readable Parquet file ({_q(str(e), 80)}); check the file") from None
        header = [str(c) for c in frame.columns]
        if len(set(header)) != len(header):
            twice = next(h for h in header if header.count(h) > 1)
            raise DataError(f"{name}: {header.count(twice)} columns are named {_q(twice)}; rename them")
        frame.columns = header
        return frame
    header = _check_csv(path, name)
    try:
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig", skipinitialspace=True)
    except (ValueError, OSError) as e:  # pandas' ParserError is a ValueError
        raise DataError(f"{name}: not a readable CSV file ({_q(str(e).strip(), 80)}); check the file") from None
    frame.columns = header
    frame = frame.apply(lambda s: s.str.strip())
    return frame.mask(frame.isin(["", *NA_AFTER_STRIP]))  # ' NA ' is missing too, once stripped


def _check_csv(path: Path, name: str) -> list[str]:
    """The CSV's structure, line by line with the csv module (pandas fills a short row with missing
    values silently): UTF-8, a header without repeats, every row as long as the header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not part of a name
            reader = csv.reader(f)
            header, rows = None, 0
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # a blank line holds no example (pandas skips it too)
                if header is None:
                    header = [h.strip() for h in row]
                    continue
                rows += 1
                if len(row) != len(header):
                    raise DataError(f"{name}: line {reader.line_num} has {len(row)} cells but the header has "
                                    f"{len(header)}; fix that row (a missing or extra comma?)")
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                        f"save it as UTF-8") from None
    except csv.Error as e:  # a NUL byte, a field past the csv module's size limit
        raise DataError(f"{name}: not a readable CSV file ({_q(str(e), 80)}); check the file") from None
    if header is None or rows == 0:
        raise DataError(f"{name}: needs a header row and at least one data row")
    if not all(header):
        raise DataError(f"{name}: column {header.index('') + 1} of the header has no name; name every column")
    twice = next((h for h in header if header.count(h) > 1), None)
    if twice is not None:
        raise DataError(f"{name}: {header.count(twice)} columns are named {_q(twice)}; rename them so that "
                        f"each name is one column")
    return header


def _at(where: str, i: int) -> str:
    """Where data row i (from 0) is: a CSV's line (the header is line 1), a Parquet file's row."""
    return f"line {i + 2}" if where.startswith("csv:") else f"row {i + 1}"


def _missing(s) -> np.ndarray:
    return s.isna().to_numpy()


def _as_numbers(s):
    """A column as float64 (NaN: missing) and the positions of the values that are not numbers."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(s):
        return s.astype(float), np.zeros(len(s), bool)
    if pd.api.types.is_numeric_dtype(s):
        return s.astype("float64"), np.zeros(len(s), bool)
    numbers = pd.to_numeric(s, errors="coerce").astype("float64")
    return numbers, (numbers.isna() & s.notna()).to_numpy()


def _as_text(s):
    """A column as text categories (None: missing); a number keeps the text a CSV writes for it."""
    import pandas as pd

    if pd.api.types.is_float_dtype(s) and s.dropna().apply(float.is_integer).all():
        s = s.astype("Int64")  # 2007.0 (an integer column with a gap, as pandas reads it) is category '2007'
    missing = s.isna().to_numpy()
    return pd.Series([None if m else str(v) for v, m in zip(s.to_numpy(dtype=object), missing)],
                     index=s.index, dtype=object)


def read_table(name: str, target: str | None, drop: str | None = None, categorical: str | None = None,
               numeric: str | None = None, dropna: bool = False) -> Table:
    """Read csv:PATH or parquet:PATH for training: features typed, rows without a target dropped."""
    frame = read_frame(name)
    header = list(frame.columns)
    columns = _names(header, 30)
    if target is None:
        raise DataError(f"{name}: say which column to predict with --target COLUMN (columns: {columns})")
    if target not in header:
        raise DataError(f"{name}: no column {_q(target)}; --target must be one of: {columns}")
    flags = {opt: parse_columns(v, opt) if v is not None else []
             for opt, v in (("--drop", drop), ("--categorical", categorical), ("--numeric", numeric))}
    for opt, cols in flags.items():
        for c in cols:
            if c not in header:
                raise DataError(f"{opt} {c}: {name} has no column {_q(c)}; its columns are: {columns}")
            if c == target:
                raise DataError(f"{opt} {c}: is the --target column; name feature columns only")
    both = set(flags["--categorical"]) & set(flags["--numeric"])
    dropped_forced = set(flags["--drop"]) & (set(flags["--categorical"]) | set(flags["--numeric"]))
    if both or dropped_forced:
        c = sorted(both or dropped_forced)[0]
        raise DataError(f"column {_q(c)} is named by two of --drop, --categorical and --numeric; name it in one")
    features = [h for h in header if h != target and h not in flags["--drop"]]
    if not features:
        only = "only the target column" if len(header) == 1 else "no feature column left after --drop"
        raise DataError(f"{name}: has {only} {_q(target)} and no feature to learn from; add feature columns"
                        if len(header) == 1 else f"{name}: {only}; drop fewer columns")
    n_read = len(frame)
    types, how = {}, {}
    for c in features:  # on every row read, so that a message's line number is the file's
        forced = "--categorical" if c in flags["--categorical"] else "--numeric" if c in flags["--numeric"] else None
        types[c] = forced[2:] if forced else _infer(frame[c], c, name)
        how[c] = forced or "inferred"
    y = frame[target]
    no_target = _missing(y)
    frame = convert(frame[features], types, name)[~no_target].reset_index(drop=True)
    y = y[~no_target].reset_index(drop=True)
    incomplete = 0
    if dropna:
        keep = ~frame.isna().any(axis=1).to_numpy()
        incomplete = int((~keep).sum())
        frame, y = frame[keep].reset_index(drop=True), y[keep].reset_index(drop=True)
    if len(frame) == 0:
        why = "every row lacks the target" if not dropna or no_target.all() else "--dropna dropped every row"
        raise DataError(f"{name}: no row left ({why}); fill the target column"
                        + ("" if not dropna else ", or drop --dropna"))
    rows = {"read": n_read, "missing_target": int(no_target.sum()), "incomplete": incomplete, "kept": len(frame)}
    return Table(name, frame, types, target, y.astype(object).to_numpy(), rows, flags["--drop"], dropna, how)


def _infer(s, column: str, where: str) -> str:
    """numeric when every value present is a number; categorical text when few distinct values;
    an identifier (all values distinct) or free text refused, with the flag that fixes it."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
        raise DataError(f"{where}: column {_q(column)} holds dates or times; --drop {column}, or turn it into "
                        f"numbers first (a year, a day of the week)")
    present = s.dropna()
    numbers, bad = _as_numbers(s)
    if not bad.any():
        values = numbers.dropna()
        integral = len(values) > 1 and bool((values == values.round()).all())
        if integral and ID_NAME.search(column) and values.nunique() == len(values) \
                and values.max() - values.min() + 1 == len(values):
            raise DataError(f"{where}: column {_q(column)} looks like an identifier (all {len(values)} values "
                            f"distinct, one per row); --drop {column} (or --numeric {column} to keep it as a number)")
        return "numeric"
    if bad.sum() < 0.5 * len(present):  # mostly numbers: a stray cell is a typo, not a category
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where}: {_at(where, i)}, column {_q(column)}: {_q(s.iloc[i])} is not a number, but the "
                        f"column's other values are; fix that cell, leave it empty (missing), or pass "
                        f"--categorical {column}")
    distinct = present.nunique()
    if len(present) > 1 and distinct == len(present):
        raise DataError(f"{where}: column {_q(column)} looks like an identifier (all {distinct} values distinct); "
                        f"--drop {column} (or --categorical {column} to one-hot it anyway)")
    if distinct > MAX_CATEGORIES and distinct > 0.5 * len(present):
        raise DataError(f"{where}: column {_q(column)} has {distinct} distinct texts, too many to be categories "
                        f"(free text?); --drop {column} (or --categorical {column} to one-hot it anyway)")
    return "categorical"


def convert(frame, types: dict[str, str], where: str):
    """Each column to its type: numbers (a cell that is not one is refused, naming it) or text."""
    import pandas as pd

    out = {}
    for c, kind in types.items():
        if kind == "numeric":
            numbers, bad = _as_numbers(frame[c])
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataError(f"{where}: {_at(where, i)}, column {_q(c)}: {_q(frame[c].iloc[i])} is not a number, "
                                f"and {c} is numeric; fix that cell or leave it empty (missing)")
            if np.isinf(numbers.to_numpy()).any():
                i = int(np.flatnonzero(np.isinf(numbers.to_numpy()))[0])
                raise DataError(f"{where}: {_at(where, i)}, column {_q(c)}: an infinite value; replace it with a "
                                f"number, or leave it empty (missing)")
            out[c] = numbers
        else:
            out[c] = _as_text(frame[c])
    return pd.DataFrame(out, index=frame.index)


# ----------------------------------------------------------------------------- the record


def fit(table: Table, train: Any) -> dict[str, Any]:
    """The preprocessing record, learned from the training rows `train` (indices) only."""
    part = table.frame.iloc[np.asarray(train)]
    columns = []
    for c, kind in table.types.items():
        s = part[c]
        if kind == "numeric":
            values = s.dropna()
            median = float(values.median()) if len(values) else 0.0
            columns.append({"name": c, "type": "numeric", "how": table.how.get(c, "inferred"), "median": median,
                            "indicator": bool(s.isna().any()), "missing": int(table.frame[c].isna().sum())})
        else:
            cats = sorted(str(v) for v in s.dropna().unique())
            columns.append({"name": c, "type": "categorical", "how": table.how.get(c, "inferred"),
                            "categories": cats, "missing_slot": bool(s.isna().any()),
                            "missing": int(table.frame[c].isna().sum())})
    record = {"kind": "table", "source": table.where, "target": table.target, "columns": columns,
              "dropped_columns": table.dropped, "dropna": table.dropna, "rows": dict(table.rows),
              "fitted_on": "train", "n_train": int(len(part))}
    record["features"] = feature_names(record)
    return record


def feature_names(record: dict[str, Any]) -> list[str]:
    names = []
    for col in record["columns"]:
        if col["type"] == "numeric":
            names += [col["name"]] + ([f"{col['name']} missing"] if col["indicator"] else [])
        else:
            slots = col["categories"] + ([MISSING] if col["missing_slot"] else []) + [UNKNOWN]
            names += [f"{col['name']}={v}" for v in slots]
    return names


def encode(record: dict[str, Any], frame) -> np.ndarray:
    """Rows (a frame with the record's columns, converted by type) -> float64 features, as the record says.
    A category the training split never saw goes to the column's unknown slot; a missing value to
    its missing slot (or, if the training split had none, the unknown slot)."""
    blocks = []
    for col in record["columns"]:
        s = frame[col["name"]]
        if col["type"] == "numeric":
            v = s.to_numpy(dtype=np.float64, na_value=np.nan)
            miss = np.isnan(v)
            blocks.append(np.where(miss, col["median"], v))
            if col["indicator"]:
                blocks.append(miss.astype(np.float64))
        else:
            cats = col["categories"]
            index = {c: i for i, c in enumerate(cats)}
            unknown = len(cats) + (1 if col["missing_slot"] else 0)
            missing = len(cats) if col["missing_slot"] else unknown
            codes = np.array([missing if v is None or v != v else index.get(v, unknown) for v in s], dtype=np.int64)
            blocks.append(np.eye(unknown + 1)[codes])
    return np.column_stack([b.reshape(len(frame), -1) for b in blocks])


def read_for(record: dict[str, Any], name: str, id_column: str | None = None):
    """A new file (`tunectl predict`) read against a record: (typed feature frame, ids or None).

    Its columns must be the training columns; the target, the columns --drop dropped and the
    --id column may be there too. Anything else is one line that names the columns."""
    frame = read_frame(name)
    header = list(frame.columns)
    if id_column is not None and id_column not in header:
        raise DataError(f"--id {id_column}: {name} has no column {_q(id_column)}; its columns are: {_names(header)}")
    want = [c["name"] for c in record["columns"]]
    allowed = set(want) | {record.get("target")} | set(record.get("dropped_columns") or []) | {id_column}
    missing = [c for c in want if c not in header]
    extra = [c for c in header if c not in allowed]
    wrong = []
    types = {c["name"]: c["type"] for c in record["columns"]}
    if not missing:
        for c in want:
            if types[c] == "numeric" and _as_numbers(frame[c])[1].any():
                bad = frame[c][_as_numbers(frame[c])[1]].iloc[0]
                wrong.append(f"{c} (numbers expected, found {_q(bad, 20)})")
    if missing or extra or wrong:
        parts = ([f"missing {_names(missing)}"] if missing else []) + \
                ([f"not in training {_names(extra)}"] if extra else []) + \
                ([f"wrong type {'; '.join(wrong[:5])}"] if wrong else [])
        raise DataError(f"{name}: its columns do not match the training columns ({'; '.join(parts)}); give the "
                        f"columns the model was trained on: {_names(want, 20)}")
    ids = frame[id_column].astype(object).where(frame[id_column].notna(), "").to_numpy() if id_column else None
    return convert(frame[want], types, name), ids


# ----------------------------------------------------------------------------- what was inferred


def describe(record: dict[str, Any]) -> list[str]:
    """What reading and fitting did, in a few lines (`tunectl datasets`, `train`'s first lines)."""
    rows = record["rows"]
    lines = [f"{record['source']}: {rows['read']} rows read, target {record['target']}"]
    dropped = []
    if rows.get("missing_target"):
        dropped.append(f"{rows['missing_target']} without a target")
    if rows.get("incomplete"):
        dropped.append(f"{rows['incomplete']} incomplete (--dropna)")
    lines[0] += f"; dropped {', '.join(dropped)}; {rows['kept']} kept" if dropped else f"; {rows['kept']} kept"
    num = [c for c in record["columns"] if c["type"] == "numeric"]
    cat = [c for c in record["columns"] if c["type"] == "categorical"]
    def numeric(c: dict[str, Any]) -> str:
        notes = [c["how"]] if c["how"] != "inferred" else []
        if c.get("missing"):
            notes.append(f"{c['missing']} missing → median {c['median']:.6g}" + (" + indicator" if c["indicator"] else ""))
        return c["name"] + (f" ({'; '.join(notes)})" if notes else "")

    def categorical(c: dict[str, Any]) -> str:
        notes = [f"{len(c['categories'])} categories"] + ([c["how"]] if c["how"] != "inferred" else [])
        if c.get("missing"):
            notes.append(f"{c['missing']} missing → own category" if c["missing_slot"] else f"{c['missing']} missing")
        return f"{c['name']} ({'; '.join(notes)})"

    if num:
        lines.append("numeric: " + ", ".join(map(numeric, num)))
    if cat:
        lines.append("categorical: " + ", ".join(map(categorical, cat)))
    if record.get("dropped_columns"):
        lines.append("dropped columns: " + ", ".join(record["dropped_columns"]))
    lines.append(f"features after encoding: {len(record['features'])} (categories, medians and scaling from the "
                 f"{record['n_train']} training rows; unseen categories → <unknown>)")
    return lines


def check_record(record: Any) -> dict[str, Any]:
    """A stored record (split.json of a bundle, a study) has the shape `encode` needs, or one line why not."""
    ok = isinstance(record, dict) and record.get("kind") == "table" and isinstance(record.get("columns"), list)
    if ok:
        for c in record["columns"]:
            ok = ok and isinstance(c, dict) and isinstance(c.get("name"), str) and (
                (c.get("type") == "numeric" and isinstance(c.get("median"), (int, float))
                 and math.isfinite(c["median"]) and isinstance(c.get("indicator"), bool))
                or (c.get("type") == "categorical" and isinstance(c.get("categories"), list)
                    and all(isinstance(v, str) for v in c["categories"]) and isinstance(c.get("missing_slot"), bool)))
    if not ok:
        raise DataError("the stored preprocessing record is damaged (split.json); export the trial again")
    return record
