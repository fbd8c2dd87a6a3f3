"""Where studies and runs live on disk: study folders, run folders, params files.

Everything written here goes through a temporary file and a rename, so a kill or a
full disk never leaves half a file that a later command would trust.

A run folder holds `config.yaml` (a params file: every TrainConfig field, plus the data
it was trained on), `history.json`, `model.pt` and `split.json`. `tunectl export`
writes the same shape, so `tunectl train --params DIR/params.yaml` reproduces a trial.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from tunectl.config import TrainConfig, from_dict
from tunectl.errors import ConfigError

def read_params(path: Path):
    """A params file -> (TrainConfig fields, DataSettings). Unknown keys and wrong types are refused."""
    from tunectl.config import check_size, short
    from tunectl.data import DataSettings
    from tunectl.errors import DataError

    path = Path(path)
    where = f"--params {path}"
    try:
        if path.is_dir():
            raise ConfigError(f"{where}: is a folder; give the params.yaml in it (from `tunectl export`) "
                              f"or a run's config.yaml")
        with open(path, "rb") as f:  # a bounded read: /dev/zero or a huge file is refused, not swallowed
            raw = f.read(1_000_001)
        if len(raw) > 1_000_000:
            raise ConfigError(f"{where}: too large for a params file (more than 1000000 bytes); is it the right file?")
        doc = yaml.safe_load(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file; give a params.yaml from `tunectl export` or a run's config.yaml") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                          f"save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read it ({e.strerror or e}); check the path") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{at}; fix the syntax") from None
    except (ValueError, RecursionError) as e:  # a number past Python's digit limit; nesting too deep
        raise ConfigError(f"{where}: cannot read it as YAML ({type(e).__name__}); simplify the file") from None
    check_size(doc, where, ConfigError)
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping of hyperparameter: value")
    data = doc.pop("data", None) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: data: expected a mapping such as {{dataset: digits, split_seed: 0}}, "
                          f"got {short(data)}")
    try:
        data = DataSettings.from_dict(data)
    except DataError as e:
        raise ConfigError(f"{where}: {e}") from None
    bad = [k for k in doc if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}: key {short(bad[0], 60)} is not a hyperparameter name")
    try:
        from_dict(doc)  # validate names and types now, naming the file
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return doc, data


def params_text(cfg: TrainConfig, data) -> str:
    """A params file: every TrainConfig field, and the DataSettings under `data:`."""
    body = {**cfg.to_dict(), "data": data.to_dict()}
    return "# tunectl params: every TrainConfig field; `tunectl train --params THIS_FILE` reruns it\n" + yaml.safe_dump(
        body, sort_keys=False
    )


def new_run_dir(root: Path, dataset: str, model: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset.split("/")[-1])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{safe}-{model}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{safe}-{model}-{stamp}-{n}"
    return path


def check_new_folder(out: Path, force: bool = False, option: str = "--out") -> None:
    """Refuse, before any work, an output folder that would overwrite something."""
    out = Path(out)
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{option} {out}: {parent} is a file, not a folder; give a folder path")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out}: is a file; give a new folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        names = sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise ConfigError(f"{option} {out}: already holds files ({shown}); give a new folder, or add --force to "
                          f"replace it")


class NewFolder:
    """A run folder written whole or not at all.

    Files are written into a hidden sibling folder, which is renamed into place at the end
    (one atomic step): a kill or a full disk leaves no half-written run, only the hidden
    folder, which is removed on any error. If another process made `out` meanwhile, the
    run goes to `out-2` (and so on) rather than over it; `force` replaces `out` instead.
    """

    def __init__(self, out: Path, force: bool = False, fallback: bool = True):
        import os

        self.out, self.force, self.fallback = Path(out), force, fallback
        self.final = self.out
        self.path = self.out.parent / f".{self.out.name}.{os.getpid()}.partial"

    def __enter__(self) -> "NewFolder":
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        return self

    def __exit__(self, kind, value, tb) -> None:
        import errno
        import os
        import shutil

        if kind is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        try:
            if self.out.is_dir() and self.force and any(self.out.iterdir()):
                old = self.out.parent / f".{self.out.name}.{os.getpid()}.old"
                self.out.rename(old)
                self.path.rename(self.out)
                shutil.rmtree(old, ignore_errors=True)
                return
            n = 1
            while True:
                try:
                    self.path.rename(self.final)  # onto a missing or empty folder only
                    return
                except OSError as e:
                    if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                        raise
                    if not self.fallback:
                        raise ConfigError(f"--out {self.out}: another process wrote there meanwhile; nothing was "
                                          f"replaced; give a new folder") from None
                    n += 1
                    self.final = self.out.with_name(f"{self.out.name}-{n}")
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes on this machine (flock on `path`, made if missing)."""
    import fcntl
    import os

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    import os

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two processes never share a temporary file
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:  # a full disk (or Ctrl-C) mid-write: no half file left behind
        tmp.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- study folders and storages

ROOT = Path("studies")  # default home of studies, relative to where tunectl runs
DEFAULT_HEARTBEAT = 10  # seconds; a trial silent for 3x this is failed and retried once


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


def _password(url: str) -> str | None:
    """The password in a URL: user:PASS@host, or ?password=PASS (libpq accepts both)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    try:
        return parts.password or (parse_qs(parts.query).get("password") or [None])[0]
    except ValueError:  # a malformed port: still look for the password
        netloc = parts.netloc.rsplit("@", 1)
        return netloc[0].split(":", 1)[1] if len(netloc) == 2 and ":" in netloc[0] else None


def mask_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db: never print a password."""
    from urllib.parse import quote

    pw = _password(url)
    if not pw:
        return url
    head, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        cred, host = netloc.rsplit("@", 1)
        netloc = f"{cred.split(':', 1)[0]}:***@{host}" if ":" in cred else netloc
    masked = f"{head}{sep}{netloc}{slash}{tail}"
    for form in {pw, quote(pw, safe="")}:
        masked = masked.replace(f"password={form}", "password=***")
    return masked


def mask_text(text: str, url: str | None) -> str:
    """Remove the password of `url` from any message (drivers like to quote the URL)."""
    from urllib.parse import quote, unquote

    pw = _password(url) if url else None
    if pw:
        text = text.replace(url, mask_url(url))
        for form in sorted({pw, unquote(pw), quote(pw, safe="")}, key=len, reverse=True):
            text = text.replace(form, "***")
    return text


def mask_passwords(text: str) -> str:
    """Any URL's password in `text` (a driver's message quoting the URL it was given) -> ***."""
    import re

    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def is_server(url: str) -> bool:
    """A storage that workers on other machines can reach (not a local SQLite file)."""
    return not url.startswith("sqlite")


SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "postgresql+psycopg", "mysql", "mysql+pymysql")


def check_url(url: str) -> None:
    from tunectl.errors import StudyError

    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise StudyError(
            f"--storage {mask_url(url)!r}: unknown storage scheme {scheme or '(none)'!r}; use sqlite:///PATH.db "
            f"or postgresql://USER:PASS@HOST:PORT/DB"
        )


def driver_url(url: str) -> str:
    """postgresql://... -> postgresql+psycopg2://... when that is the driver installed.

    SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, while the `postgres` extra
    installs psycopg2 (the one Optuna's docs use): name the driver that is there.
    """
    import importlib.util

    from tunectl.errors import StudyError

    if not url.startswith("postgresql://"):
        return url
    for driver in ("psycopg2", "psycopg"):
        if importlib.util.find_spec(driver) is not None:
            return f"postgresql+{driver}://" + url.removeprefix("postgresql://")
    raise StudyError(f"--storage {mask_url(url)}: no PostgreSQL driver installed; pip install 'tunectl[postgres]'")


CONNECT_TIMEOUT = 5  # seconds per connection attempt: a dead server is reported well within 10 s


def open_storage(url: str, heartbeat: int | None = DEFAULT_HEARTBEAT, create: bool = True):
    """An Optuna RDBStorage with heartbeats on, and a retry of trials whose worker died.

    Why RDB and not the journal file: in Optuna 5 only RDBStorage implements heartbeats,
    and a killed worker's trial must be failed and retried. SQLite waits up to 60 s for
    a lock (WAL mode, set at creation), which holds for several local workers. A server
    (PostgreSQL, MySQL) is Optuna's distributed mode: workers on many machines share it,
    and the heartbeats live in it, so any worker retries any dead worker's trial.
    """
    import inspect
    import warnings

    import optuna
    import sqlalchemy.exc
    from tunectl.errors import StudyError

    check_url(url)
    kwargs: dict = {}
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        if not path.exists():
            if not create:
                raise StudyError(f"no study storage at {path}; run `tunectl tune` first or check --storage")
            _create_sqlite(path)
        check_sqlite(path)  # empty, foreign, corrupt or unreadable: refused, never re-initialised
        kwargs["skip_table_creation"] = True  # the tables are there: opening a study never writes its schema
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    elif url.startswith("postgresql"):
        kwargs["skip_table_creation"] = not create
        # pre-ping: a connection the server dropped overnight is replaced, not failed on
        kwargs["engine_kwargs"] = {"pool_pre_ping": True, "connect_args": {
            "connect_timeout": CONNECT_TIMEOUT, "application_name": "tunectl"}}
    elif url.startswith("mysql"):
        kwargs["engine_kwargs"] = {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeats are 'experimental' in Optuna
            if heartbeat:
                # the retry callback was renamed in Optuna 4.9; use whichever is installed
                retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
                    optuna.storages.RetryFailedTrialCallback
                name = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in inspect.signature(
                    optuna.storages.RDBStorage).parameters else "failed_trial_callback"
                kwargs.update(heartbeat_interval=heartbeat, grace_period=3 * heartbeat, **{name: retry_cls(max_retry=1)})
            for attempt in range(4):
                try:
                    try:
                        storage = optuna.storages.RDBStorage(driver_url(url), **kwargs)
                        if kwargs.get("skip_table_creation") and not url.startswith("sqlite"):
                            storage.get_all_studies()  # connect now: a refused login is reported here
                    except optuna.exceptions.StorageInternalError as e:  # Optuna's wrapper: the driver's error
                        raise storage_cause(e) or e from None
                    return storage
                except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                        sqlalchemy.exc.OperationalError) as e:
                    # workers started together on a fresh database all create Optuna's tables; the
                    # losers of that race fail on a duplicate (key, type or table), and on a second
                    # look find them made. Anything else (a refused connection) is reported at once.
                    if attempt == 3 or (isinstance(e, sqlalchemy.exc.OperationalError)
                                        and "already exists" not in str(e)):
                        raise
                    time.sleep(0.2 * (attempt + 1))
    except ImportError:
        raise StudyError(f"--storage {mask_url(url)}: its database driver is not installed; "
                         f"pip install 'tunectl[postgres]' (PostgreSQL) or pymysql (MySQL)") from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as e:
        raise StudyError(f"cannot open storage {mask_url(url)}: {mask_text(storage_error(e), url)}; "
                         f"check that the server is up and the URL is right") from None


def storage_cause(e: BaseException) -> BaseException | None:
    """The database error behind `e` (Optuna wraps it, or fails on it again while recording a trial), or None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__module__.startswith(("sqlalchemy", "sqlite3", "psycopg")) or \
                type(e).__name__ == "StorageInternalError":
            inner = e.__cause__ or e.__context__
            return inner if inner is not None and type(inner).__module__.startswith(("sqlalchemy", "sqlite3", "psycopg")) else e
        e = e.__cause__ or e.__context__
    return None


def storage_error(e: BaseException) -> str:
    """A driver's error on one line: its first line, without SQLAlchemy's '(Background on ...)'."""
    text = str(getattr(e, "orig", None) or e).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(e).__name__


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


def sqlite_path(url: str) -> Path:
    """The file of a sqlite:/// URL; a URL naming a folder (or nothing) is refused."""
    from tunectl.errors import StudyError

    raw = url.removeprefix("sqlite:///").split("?", 1)[0]
    path = Path(raw)
    if not raw or raw.endswith("/") or path.is_dir():
        raise StudyError(f"--storage {url}: names a folder, not a file; give a file, e.g. sqlite:///studies/NAME/study.db")
    return path


def _create_sqlite(path: Path) -> None:
    """Make a complete, empty Optuna storage at `path` atomically.

    The tables are made in a private file that is then hard-linked into place: a process
    that finds `path` finds a whole storage, never a half-made one, so an empty file can be
    refused as damage (never re-initialised over a study). Two processes racing here both
    succeed: the loser's link fails on the existing file and it uses the winner's.
    """
    import os
    import sqlite3
    import uuid
    import warnings

    import optuna

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")  # private to this call
    try:
        with sqlite3.connect(tmp, timeout=60) as con:  # WAL: readers never block the writer
            con.execute("PRAGMA journal_mode=WAL")
        con.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = optuna.storages.RDBStorage(f"sqlite:///{tmp}")
        storage.engine.dispose()  # every connection closed: the WAL is folded into the file
        with sqlite3.connect(tmp, timeout=60) as con:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process made it first: use theirs
            pass
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)


def check_sqlite(path: Path) -> None:
    import sqlite3

    from tunectl.errors import StudyError

    if path.stat().st_size == 0:
        raise StudyError(f"{path} is empty (0 bytes): it holds no study; restore it from a backup, or move it "
                         f"away and start again")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.OperationalError as e:  # a folder or file we may not read: not damage
        raise StudyError(f"{path}: cannot open the study file ({e}); check the permissions of the file and its "
                         f"folder") from None
    except sqlite3.DatabaseError as e:
        raise StudyError(f"{path}: not a readable SQLite file ({e}); restore it from a backup, or move it away and "
                         f"start a new --study") from None
    if not {"studies", "trials"} <= tables:
        raise StudyError(f"{path} holds no Optuna study tables; it is not a tunectl study file: move it away, or "
                         f"use another --study or --storage")
