"""A throwaway PostgreSQL server for tests: a real ``postgres`` on a private Unix socket.

:class:`PostgresServer` runs ``initdb`` into a temporary directory and starts ``postgres``
listening only on a socket in that directory (no TCP port, so parallel test runs never
collide), in its own process group. As root it runs both as the ``postgres`` user through
``runuser`` (PostgreSQL refuses to run as root). Durability is switched off (``fsync``,
``synchronous_commit``): it is a test server.

    with PostgresServer() as server:
        url = server.create_database()   # a fresh database per test
        ...
        server.stop(); server.start()    # a restart, same data
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "postgres_available"]

#: The default port number names the socket file (``.s.PGSQL.5432``); nothing listens on TCP.
SOCKET_PORT = 5432
USER = "amicable"


def _bindir() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def postgres_available() -> bool:
    """True when ``initdb`` and ``postgres`` are installed (Debian's ``postgresql``)."""
    return _bindir() is not None


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; see the module docstring."""

    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self._bin = bindir
        self.root = Path(tempfile.mkdtemp(prefix="amicable-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.sockets.mkdir()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            self.root.chmod(0o755)
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run([str(self._bin / "initdb"), "-D", str(self.data), "-U", USER,
                   "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"])  # fmt: skip

    def _cmd(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self._as_postgres else argv

    def _run(self, argv: list[str]) -> None:
        subprocess.run(self._cmd(argv), check=True, capture_output=True, timeout=120)

    @property
    def admin_url(self) -> str:
        """URL of the ``postgres`` maintenance database."""
        return self.url("postgres")

    def url(self, database: str) -> str:
        """A libpq URL for ``database`` on this server's socket."""
        return f"postgresql://{USER}@/{database}?host={self.sockets}&port={SOCKET_PORT}"

    def start(self, timeout: float = 60.0) -> None:
        """Start ``postgres`` and wait until it accepts connections."""
        if self._process is not None:
            raise RuntimeError("already running")
        log = self.log.open("ab")
        if self._as_postgres:
            shutil.chown(self.log, "postgres", "postgres")
        argv = [str(self._bin / "postgres"), "-D", str(self.data), "-k", str(self.sockets),
                "-p", str(SOCKET_PORT), "-c", "listen_addresses=", "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]  # fmt: skip
        self._process = subprocess.Popen(
            self._cmd(argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text()[-2000:]}")
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        import psycopg

        if not (self.sockets / f".s.PGSQL.{SOCKET_PORT}").exists():
            return False
        try:
            psycopg.connect(self.admin_url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """Fast shutdown (``SIGINT``: active connections are terminated); waits for exit."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a random name unless given); returns its URL."""
        import psycopg

        name = name or "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
