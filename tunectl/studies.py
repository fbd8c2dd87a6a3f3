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
from pathlib import Path
from typing import Any

import yaml

from tunectl.config import TrainConfig, from_dict
from tunectl.errors import ConfigError

DATA_KEYS = ("dataset", "data_dir", "target", "task", "image_size", "split", "split_seed", "train_fraction")


def read_params(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A params file -> (TrainConfig fields, data settings). Unknown keys are refused."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--params {path}: no such file; give a params.yaml from `tunectl export` or a run's config.yaml") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"--params {path}: not valid YAML{where}; fix the syntax") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--params {path}: expected a mapping of hyperparameter: value")
    data = doc.pop("data", None) or {}
    if not isinstance(data, dict) or set(data) - set(DATA_KEYS):
        bad = sorted(set(data) - set(DATA_KEYS)) if isinstance(data, dict) else data
        raise ConfigError(f"--params {path}: data: unknown keys {bad}; allowed: {', '.join(DATA_KEYS)}")
    try:
        from_dict(doc)  # validate names and types now, naming the file
    except ConfigError as e:
        raise ConfigError(f"--params {path}: {e}") from None
    return doc, data


def params_text(cfg: TrainConfig, data: dict[str, Any]) -> str:
    body = {**cfg.to_dict(), "data": {k: v for k, v in data.items() if v is not None}}
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


def write_json(path: Path, obj: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
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
    import sqlite3
    import warnings

    import optuna
    import sqlalchemy.exc
    from tunectl.errors import StudyError

    check_url(url)
    kwargs: dict = {}
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists() and not create:
            raise StudyError(f"no study storage at {path}; run `tunectl tune` first or check --storage")
        if path.exists():
            _check_sqlite(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(path) as con:  # WAL: readers never block the writer
                con.execute("PRAGMA journal_mode=WAL")
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    elif url.startswith("postgresql"):
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
                    return optuna.storages.RDBStorage(driver_url(url), **kwargs)
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


def storage_error(e: BaseException) -> str:
    """A driver's error on one line: its first line, without SQLAlchemy's '(Background on ...)'."""
    text = str(getattr(e, "orig", None) or e).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(e).__name__


def artifact_store(folder: Path):
    """Optuna's file-system artifact store in `folder` (a shared path when workers run on many machines)."""
    from optuna.artifacts import FileSystemArtifactStore

    Path(folder).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(Path(folder))


def _check_sqlite(path: Path) -> None:
    import sqlite3

    from tunectl.errors import StudyError

    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as e:
        raise StudyError(f"{path}: the study file is corrupted ({e}); restore it from a backup or start a new --study") from None
