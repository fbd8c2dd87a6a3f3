"""Study folders: where each study lives on disk, who owns the folder, and the files in it.

`studies/<name>/` holds `study.db` (the Optuna storage, unless --storage names a server),
`name.txt` (the study that owns the folder), `space.yaml`, `split.json`, `trials/N/curve.json`,
`artifacts/` (the best trials' weights, Optuna's artifact store), `evaluations.json` (every
look at the test set) and `report.html`. This module is the one reader and writer of each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunectl.errors import StudyError
from tunectl.files import locked, write_json, write_text

ROOT = Path("studies")  # default home of studies, relative to where tunectl runs


def safe_name(text: str) -> str:
    """A file-system-safe study name: csv:/data/x.csv -> csv-x."""
    kind, sep, rest = text.partition(":")
    if sep:  # keep the source kind, drop the folders: csv:/data/x.csv -> csv-x
        rest = rest.rstrip("/").split("/")[-1]
        text = f"{kind}-{rest.rsplit('.', 1)[0] if rest.endswith(('.csv', '.npz')) else rest}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("._") or "study"


def study_dir(name: str, root: Path = ROOT) -> Path:
    return Path(root) / safe_name(name)


MAX_NAME = 128  # a study name is typed, shown in tables and becomes a folder name (255 bytes at most)


NAME_FILE = "name.txt"  # in each study folder: the study that owns it (names like a/b and a_b share one)


def check_name(name: str) -> None:
    """Refuse a study name that cannot be typed, shown or kept apart from others."""
    from tunectl.errors import StudyError

    if not name or not name.strip():
        raise StudyError("--study '': give the study a name, e.g. --study digits-quick")
    if len(name) > MAX_NAME:
        raise StudyError(f"--study {name[:40]!r}...: {len(name)} characters; use at most {MAX_NAME}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise StudyError(f"--study {name!r}: holds a control character; use letters, digits, '-', '_' and '.'")


def check_root(root: str | Path) -> None:
    from tunectl.errors import StudyError

    if Path(root).exists() and not Path(root).is_dir():
        raise StudyError(f"--root {root}: is a file, not a folder; give the folder that holds the studies")


def check_owner(folder: Path, name: str) -> None:
    """Refuse (reading only) a study folder that another study owns."""
    from tunectl.errors import StudyError

    claim = folder / NAME_FILE
    owner = claim.read_text().rstrip("\n") if claim.is_file() else _legacy_owner(folder, name)
    if owner is not None and owner != name:
        raise StudyError(f"--study {name!r}: its folder {folder} belongs to study {owner!r}; choose another name")


def claim_folder(folder: Path, name: str) -> None:
    """Make `folder` the study's own: refuse it when another study (a name that maps to the same
    folder, e.g. a/b and a_b) owns it. The claim is one exclusive file creation, so two
    processes racing for one folder cannot both win. A refusal removes nothing."""
    import os

    from tunectl.errors import StudyError

    folder.mkdir(parents=True, exist_ok=True)
    claim = folder / NAME_FILE
    if not claim.exists():
        owner = _legacy_owner(folder, name)
        if owner is None:
            tmp = folder / f".{NAME_FILE}.{os.getpid()}.new"
            try:
                tmp.write_text(name + "\n")
                os.link(tmp, claim)  # atomic: fails when another process claimed it first
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        elif owner != name:
            raise StudyError(f"--study {name!r}: its folder {folder} belongs to study {owner!r}; choose another name")
    owner = claim.read_text().rstrip("\n") if claim.exists() else name
    if owner != name:
        raise StudyError(f"--study {name!r}: its folder {folder} belongs to study {owner!r}; choose another name")


def _legacy_owner(folder: Path, name: str) -> str | None:
    """The study in a folder made before name.txt existed: the one its study.db holds, if any."""
    import sqlite3

    db = folder / "study.db"
    if not db.is_file() or db.stat().st_size == 0:
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
        try:
            names = [r[0] for r in con.execute("SELECT study_name FROM studies")]
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return None  # opening the storage reports what is wrong with it
    return name if name in names or not names else names[0]


def default_storage_url(name: str, root: Path = ROOT) -> str:
    return f"sqlite:///{(study_dir(name, root) / 'study.db').resolve()}"


def artifact_store(folder: Path):
    """Optuna's file-system artifact store in `folder` (a shared path when workers run on many machines),
    writing each file whole: Optuna's own writes in place, so a full disk would leave a cut-short
    checkpoint that no trial points at. Here the bytes go to a temporary file, renamed at the end."""
    import os
    import shutil

    from optuna.artifacts import FileSystemArtifactStore

    class WholeFileStore(FileSystemArtifactStore):
        def write(self, artifact_id: str, content_body) -> None:
            path = Path(folder) / artifact_id
            tmp = path.with_name(f".{artifact_id}.{os.getpid()}.tmp")
            try:
                with open(tmp, "wb") as f:
                    shutil.copyfileobj(content_body, f)
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

    Path(folder).mkdir(parents=True, exist_ok=True)
    return WholeFileStore(Path(folder))


# ----------------------------------------------------------------------------- the files in a study folder

SPACE_FILE, SPLIT_FILE, EVALUATIONS = "space.yaml", "split.json", "evaluations.json"


def write_study_files(folder: Path, space_text: str, manifest: dict[str, Any]) -> None:
    """What a new study writes once: its search space and its split manifest."""
    write_text(folder / SPACE_FILE, space_text)
    write_json(folder / SPLIT_FILE, manifest)


def write_curve(folder: Path, number: int, curve: list[dict[str, Any]]) -> None:
    """A trial's learning curve, one row per epoch: trials/N/curve.json."""
    path = folder / "trials" / str(number)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "curve.json", curve)


def read_curve(folder: Path, number: int) -> list[dict[str, Any]] | None:
    """Trial N's curve as written by write_curve, or None when this machine has none (a worker on
    another machine ran it) or it cannot be read: the reader rebuilds it from the trial then."""
    try:
        rows = json.loads((Path(folder) / "trials" / str(number) / "curve.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return rows if isinstance(rows, list) and all(isinstance(r, dict) for r in rows) else None


def read_evaluations(folder: Path) -> list[dict[str, Any]]:
    """Every recorded look at the test set (evaluations.json), oldest first. A damaged record is
    refused, never read as empty: that would hide earlier looks at the test set."""
    path = Path(folder) / EVALUATIONS
    if not path.exists():
        return []
    try:
        looks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise StudyError(f"{path}: damaged ({type(e).__name__}); repair it or move it aside, then evaluate again") from None
    if not isinstance(looks, list) or not all(isinstance(v, dict) for v in looks):
        raise StudyError(f"{path}: damaged (not a JSON list of looks); repair it or move it aside, then evaluate again")
    return looks


def append_evaluation(folder: Path, look: dict[str, Any]) -> list[dict[str, Any]]:
    """Record one more look at the test set; return the looks before it. Read and appended under a
    lock, so two evaluations at once both count and the second is told about the first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder / f".{EVALUATIONS}.lock"):
        looks = read_evaluations(folder)
        write_json(folder / EVALUATIONS, [*looks, look])
    return looks
