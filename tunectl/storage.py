"""Optuna storages: their URLs, opening and creating them, checking a study file, and keeping passwords out of sight.

SQLite in each study's folder by default; PostgreSQL (or MySQL) for workers on many machines,
Optuna's distributed mode. A SQLite file is made complete or not at all, and an empty or
damaged one is refused, never re-initialised. No message ever prints a password.
"""

from __future__ import annotations

import time
from pathlib import Path

DEFAULT_HEARTBEAT = 10  # seconds; a trial silent for 3x this is failed and retried once


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
