"""studies.py and files.py: study folders (names, owners, the files in them) and writing files whole.

Unit tests on tmp_path; two real processes where the point is what two processes do at once.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tunectl import studies
from tunectl.errors import ConfigError, StudyError
from tunectl.files import NewFolder, check_new_folder, write_json, write_text


def hidden(folder: Path) -> list[str]:
    """What a write left behind: temporary files and staging folders start with a dot."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------- names and folders


@pytest.mark.parametrize("text, name", [
    ("digits-quick", "digits-quick"),
    ("csv:/data/house.csv", "csv-house"),  # the source kind stays, the folders go
    ("npz:../shared/x.npz", "npz-x"),
    ("folder:/data/images/", "folder-images"),
    ("a/b", "a_b"),
    ("two words", "two_words"),
    ("x.", "x"),  # no trailing dot: a folder some systems cannot open
    ("..", "study"),  # never the parent folder
    ("", "study"),
    ("v1.2_final", "v1.2_final"),
])
def test_safe_name(text, name):
    assert studies.safe_name(text) == name


def test_study_dir_is_the_safe_name_under_the_root(tmp_path):
    assert studies.study_dir("a/b", tmp_path) == tmp_path / "a_b"
    assert studies.study_dir("digits") == Path("studies") / "digits"  # the default root


@pytest.mark.parametrize("name, message", [
    ("", "give the study a name"),
    ("   ", "give the study a name"),
    ("x" * 129, "129 characters; use at most 128"),
    ("night\x1b[31m", "holds a control character"),
    ("a\nb", "holds a control character"),
    ("a\x7fb", "holds a control character"),
])
def test_check_name_refuses(name, message):
    with pytest.raises(StudyError, match="^--study ") as e:
        studies.check_name(name)
    assert message in str(e.value)


@pytest.mark.parametrize("name", ["x", "x" * 128, "a/b", "digits-quick", "nuit-été"])
def test_check_name_accepts(name):
    studies.check_name(name)


def test_check_root(tmp_path):
    studies.check_root(tmp_path)
    studies.check_root(tmp_path / "not-yet")  # made when the first study is
    (tmp_path / "file").write_text("x")
    with pytest.raises(StudyError, match="is a file, not a folder"):
        studies.check_root(tmp_path / "file")


# ----------------------------------------------------------------------------- who owns a folder


@pytest.mark.parametrize("first, second", [("a/b", "a_b"), ("x", "x."), ("x.", "x")])
def test_two_names_for_one_folder_the_second_is_refused(tmp_path, first, second):
    folder = studies.study_dir(first, tmp_path)
    assert folder == studies.study_dir(second, tmp_path)  # the premise: both names map here
    studies.claim_folder(folder, first)
    (folder / "study.db").write_bytes(b"the first study's")
    assert (folder / studies.NAME_FILE).read_text() == first + "\n"
    studies.claim_folder(folder, first)  # its own again: fine
    studies.check_owner(folder, first)
    for refuse in (studies.claim_folder, studies.check_owner):
        with pytest.raises(StudyError, match=f"belongs to study {first!r}; choose another name"):
            refuse(folder, second)
    # a refusal removes nothing and claims nothing
    assert sorted(p.name for p in folder.iterdir()) == ["name.txt", "study.db"]
    assert (folder / "study.db").read_bytes() == b"the first study's"
    assert (folder / studies.NAME_FILE).read_text() == first + "\n"


def test_an_unclaimed_folder_belongs_to_nobody(tmp_path):
    studies.check_owner(tmp_path / "missing", "a")
    (tmp_path / "empty").mkdir()
    studies.check_owner(tmp_path / "empty", "a")
    (tmp_path / "empty" / "study.db").write_bytes(b"")  # an empty file: no study in it to own the folder
    studies.check_owner(tmp_path / "empty", "a")


def test_a_folder_made_before_name_txt_belongs_to_the_study_in_its_database(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    with sqlite3.connect(folder / "study.db") as con:  # as Optuna's storage holds it: a studies table
        con.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name TEXT)")
        con.execute("INSERT INTO studies (study_name) VALUES ('old')")
    con.close()
    studies.check_owner(folder, "old")
    studies.claim_folder(folder, "old")
    for refuse in (studies.claim_folder, studies.check_owner):
        with pytest.raises(StudyError, match="belongs to study 'old'"):
            refuse(folder, "old.")


# each child waits for the file `go` (argv[-1]) so that both start their work at the same moment
WAIT = """
import sys, time
from pathlib import Path
while not Path(sys.argv[-1]).exists():
    time.sleep(0.001)
"""
CLAIM = WAIT + """
from tunectl import studies
from tunectl.errors import StudyError
try:
    studies.claim_folder(Path(sys.argv[1]), sys.argv[2])
    print("won")
except StudyError:
    print("refused")
"""


@pytest.mark.slow
def test_two_processes_claiming_one_folder_one_wins(tmp_path):
    folder, go = tmp_path / "a_b", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM, str(folder), name, str(go)], stdout=subprocess.PIPE,
                              text=True) for name in ("a/b", "a_b")]
    go.touch()
    said = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(said) == ["refused", "won"], said
    winner = ("a/b", "a_b")[said.index("won")]
    assert (folder / studies.NAME_FILE).read_text() == winner + "\n"
    assert hidden(folder) == []


# ----------------------------------------------------------------------------- the files in a study folder


def test_write_study_files(tmp_path):
    manifest = {"dataset": "digits", "sizes": {"train": 1079, "dev": 359, "test": 359}, "ratios": None}
    studies.write_study_files(tmp_path, "epochs: 2\nparams: {}\n", manifest)
    assert (tmp_path / studies.SPACE_FILE).read_text() == "epochs: 2\nparams: {}\n"
    assert json.loads((tmp_path / studies.SPLIT_FILE).read_text()) == manifest
    assert hidden(tmp_path) == []


def test_write_curve(tmp_path):
    curve = [{"epoch": 1, "train_loss": 2.1, "dev_error": 0.5}, {"epoch": 2, "train_loss": 1.2, "dev_error": 0.3}]
    studies.write_curve(tmp_path, 7, curve)
    path = tmp_path / "trials" / "7" / "curve.json"
    assert json.loads(path.read_text()) == curve
    studies.write_curve(tmp_path, 7, curve[:1])  # a retried trial number: replaced whole
    assert json.loads(path.read_text()) == curve[:1]
    assert hidden(path.parent) == []


def test_evaluations_are_read_and_appended_oldest_first(tmp_path):
    assert studies.read_evaluations(tmp_path) == []  # never evaluated
    first, second = {"trial": 0, "test_error": 0.04}, {"trial": 1, "test_error": 0.03}
    assert studies.append_evaluation(tmp_path / "new", first) == []  # the folder is made
    assert studies.append_evaluation(tmp_path / "new", second) == [first]  # the looks before this one
    assert studies.read_evaluations(tmp_path / "new") == [first, second]
    assert json.loads((tmp_path / "new" / studies.EVALUATIONS).read_text()) == [first, second]


@pytest.mark.parametrize("text, why", [
    ('[{"trial": 0, "test_err', "JSONDecodeError"),  # cut short
    ("", "JSONDecodeError"),
    ('{"trial": 0}', "not a JSON list of looks"),
    ("[1, 2]", "not a JSON list of looks"),
    ("null", "not a JSON list of looks"),
])
def test_a_damaged_evaluations_file_is_refused_never_read_as_empty(tmp_path, text, why):
    path = tmp_path / studies.EVALUATIONS
    path.write_text(text)
    for action in (lambda: studies.read_evaluations(tmp_path),
                   lambda: studies.append_evaluation(tmp_path, {"trial": 1})):
        with pytest.raises(StudyError, match="damaged") as e:
            action()
        assert str(e.value).startswith(str(path)) and why in str(e.value) and "move it aside" in str(e.value)
    assert path.read_text() == text  # the earlier looks are still there to repair


APPEND = WAIT + """
from tunectl import studies
for i in range(int(sys.argv[3])):
    studies.append_evaluation(Path(sys.argv[1]), {"writer": sys.argv[2], "i": i})
"""


@pytest.mark.slow
def test_appends_from_two_processes_are_all_kept(tmp_path):
    n, folder, go = 100, tmp_path / "study", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", APPEND, str(folder), writer, str(n), str(go)],
                              stderr=subprocess.PIPE, text=True) for writer in ("a", "b")]
    go.touch()
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    looks = studies.read_evaluations(folder)
    assert len(looks) == 2 * n
    for writer in ("a", "b"):  # each writer's looks all there, in its own order
        assert [look["i"] for look in looks if look["writer"] == writer] == list(range(n))
    assert [p for p in hidden(folder) if not p.endswith(".lock")] == []


# ----------------------------------------------------------------------------- files.py: whole files


def test_write_text_and_write_json(tmp_path):
    write_text(tmp_path / "a.txt", "one\n")
    write_text(tmp_path / "a.txt", "two\n")
    assert (tmp_path / "a.txt").read_text() == "two\n"
    write_json(tmp_path / "a.json", {"x": [1, 2.5, None]})
    assert (tmp_path / "a.json").read_text().endswith("\n") and json.loads((tmp_path / "a.json").read_text()) == {
        "x": [1, 2.5, None]}
    assert hidden(tmp_path) == []


def test_write_text_cut_short_leaves_the_old_file_and_no_half_file(tmp_path, monkeypatch):
    target = tmp_path / "space.yaml"
    target.write_text("the old, whole file\n")
    real = Path.write_text

    def disk_full(self, data, *args, **kwargs):
        real(self, data[: len(data) // 2], *args, **kwargs)  # half of it down, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_text(target, "a new file, which never arrives whole\n")
    monkeypatch.undo()
    assert target.read_text() == "the old, whole file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]


def test_write_text_interrupted_at_the_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    def interrupted(self, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_text(tmp_path / "new.txt", "x")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- files.py: new folders


def test_a_new_folder_appears_whole(tmp_path):
    out = tmp_path / "run"
    with NewFolder(out) as run:
        (run.path / "model.pt").write_bytes(b"weights")
        (run.path / "history.json").write_text("{}")
        assert not out.exists()  # nothing to see until it is complete
        assert run.path.parent == tmp_path and run.path.name.startswith(".")
    assert run.final == out
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "model.pt"]
    assert hidden(tmp_path) == []


def test_a_new_folder_goes_beside_one_made_meanwhile(tmp_path):
    out = tmp_path / "run"
    for n, final in ((1, out), (2, tmp_path / "run-2"), (3, tmp_path / "run-3")):
        with NewFolder(out) as run:
            (run.path / "n").write_text(str(n))
        assert run.final == final
    assert [(tmp_path / name / "n").read_text() for name in ("run", "run-2", "run-3")] == ["1", "2", "3"]
    assert hidden(tmp_path) == []


def test_a_new_folder_fills_an_empty_one(tmp_path):
    (tmp_path / "run").mkdir()
    with NewFolder(tmp_path / "run") as run:
        (run.path / "n").write_text("1")
    assert run.final == tmp_path / "run" and (tmp_path / "run" / "n").read_text() == "1"


def test_force_replaces_the_old_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with NewFolder(out, force=True) as run:
        (run.path / "new.txt").write_text("new")
    assert run.final == out and [p.name for p in out.iterdir()] == ["new.txt"]
    assert hidden(tmp_path) == []


def test_without_fallback_a_folder_made_meanwhile_is_refused_and_kept(tmp_path):
    out = tmp_path / "export"
    with pytest.raises(ConfigError, match="another process wrote there meanwhile; nothing was replaced"):
        with NewFolder(out, fallback=False) as bundle:
            (bundle.path / "model.pt").write_bytes(b"new")
            out.mkdir()
            (out / "theirs").write_text("theirs")
    assert [p.name for p in out.iterdir()] == ["theirs"]
    assert hidden(tmp_path) == [] and not (tmp_path / "export-2").exists()


def test_an_error_inside_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="training failed"):
        with NewFolder(tmp_path / "run") as run:
            (run.path / "model.pt").write_bytes(b"half")
            raise RuntimeError("training failed")
    assert list(tmp_path.iterdir()) == []


def test_check_new_folder(tmp_path):
    check_new_folder(tmp_path / "new")  # missing: fine
    (tmp_path / "empty").mkdir()
    check_new_folder(tmp_path / "empty")  # empty: fine
    full = tmp_path / "full"
    full.mkdir()
    for name in ("a", "b", "c", "d"):
        (full / name).write_text(name)
    with pytest.raises(ConfigError) as e:
        check_new_folder(full)
    assert str(e.value) == (f"--out {full}: already holds files (a, b, c, ...); give a new folder, or add --force "
                            f"to replace it")
    check_new_folder(full, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file; give a new folder"):
        check_new_folder(tmp_path / "file")
    with pytest.raises(ConfigError, match=r"^--next-space .*: .*file is a file, not a folder; give a folder path"):
        check_new_folder(tmp_path / "file" / "below", option="--next-space")
    assert sorted(p.name for p in full.iterdir()) == ["a", "b", "c", "d"]  # a check writes nothing
