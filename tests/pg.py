"""A throwaway PostgreSQL server on loopback, for the tests and bench/storage_scaling.py.

The server runs from Debian's binaries (/usr/lib/postgresql/*/bin) in a temporary folder,
listens on 127.0.0.1 at a free port, and has one user `tunectl` with a random password and
one database `tunectl`. PostgreSQL refuses to run as root, so under root it runs as the
`postgres` user that Debian's package creates (via runuser).

    python tests/pg.py          start one, print its URL, stop it on Enter (for trying things by hand)
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class Unavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


def in_ci() -> bool:
    """CI=true (as .ci/run is run): every service and file the suite needs must be there."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_or_skip(reason: str) -> None:
    """Something a test needs is missing: under CI=true that fails the test with the reason (CI never
    skips the server, the dashboard or the shared data); locally the test is skipped, saying why."""
    import pytest

    if in_ci():
        pytest.fail(f"CI=true requires it, so this is a failure, not a skip: {reason}", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, reason: str):
    """import `name`, or require_or_skip(reason)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        require_or_skip(f"{reason} ({e})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise Unavailable("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH); "
                      "apt-get install postgresql, or set TUNECTL_PG_URL to a server's URL")


class Server:
    def __init__(self, fast: bool = True):
        """fast: no fsync (the tests' data are throwaway); the benchmark keeps the defaults."""
        bin_dir = _bin_dir()
        self.user = self.db = "tunectl"
        self.password = secrets.token_hex(12)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tunectl-pg-"))
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise Unavailable("running as root and there is no `postgres` user to run the server as") from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._run_as = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if self._run_as:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._ctl = str(bin_dir / "pg_ctl")
        try:
            self._sh([str(bin_dir / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
                      "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"])
            opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=100"
            if fast:
                opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            self._sh([self._ctl, "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "30", "-o", opts, "start"])
        except Unavailable:
            self.stop()
            raise
        pwfile.unlink()
        try:
            self._create_db()
        except Exception as e:  # noqa: BLE001 - no driver, or a server that will not take a database
            self.stop()
            raise Unavailable(f"could not create the database: {type(e).__name__}: {e}") from None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.db}"

    def _sh(self, cmd: list[str]) -> None:
        try:
            out = subprocess.run(self._run_as + cmd, capture_output=True, text=True, timeout=60, cwd=self.dir)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Unavailable(f"{Path(cmd[0]).name} could not run: {e}") from None
        if out.returncode != 0:
            log = self.dir / "log"
            tail = log.read_text()[-400:] if log.exists() else ""
            raise Unavailable(f"{Path(cmd[0]).name} failed ({out.returncode}): {(out.stderr or out.stdout)[-400:]} {tail}")

    def _create_db(self) -> None:
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                               dbname="postgres", connect_timeout=10)
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f"CREATE DATABASE {self.db}")
        con.close()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self._run_as + [self._ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60, cwd=self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


def start(fast: bool = True) -> Server:
    """A running server, or Unavailable saying why there can be none."""
    return Server(fast)


if __name__ == "__main__":
    server = start()
    print(server.url, flush=True)
    try:
        input("PostgreSQL is up; press Enter to stop it\n")
    finally:
        server.stop()
