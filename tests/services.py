"""Real PostgreSQL and Redis servers for the tests: on loopback, free ports, temp dirs.

``.ci/run`` starts one of each (``main`` below) and hands their URLs over in
``TRIPSAGE_TEST_POSTGRES_URL`` and ``TRIPSAGE_TEST_REDIS_URL``; without them a
test session starts its own here when the binaries are installed (Debian's
``postgresql`` and ``redis-server``). Without either, tests that need them
skip, except under ``CI=true``, where they fail: CI must run them.

Run as a script (``python -m tests.services EXPORTS``) it starts both,
writes the two ``export`` lines to the file ``EXPORTS``, then waits for
SIGTERM and stops them: what ``.ci/run`` does.

Each test gets a schema of its own in the one database
(:func:`fresh_postgres_url`), so tests never see each other's rows and no
test waits for ``CREATE DATABASE``.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg
import pytest

__all__ = [
    "PostgresServer",
    "RedisServer",
    "fresh_postgres_url",
    "need_postgres",
    "need_redis",
    "postgres_bin",
]

START_TIMEOUT_S: Final = 60.0
_schemas = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``, if PostgreSQL is installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _as_postgres_user() -> list[str]:
    """``initdb`` refuses to run as root: run the server as Debian's ``postgres`` user."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class PostgresServer:
    base: Path
    port: int
    process_log: Path

    @property
    def url(self) -> str:
        return f"postgresql://tripsage@127.0.0.1:{self.port}/tripsage"

    @classmethod
    def start(cls, base: Path) -> PostgresServer:
        bindir = postgres_bin()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL is not installed (apt install postgresql)")
        run_as = _as_postgres_user()
        base.mkdir(parents=True, exist_ok=True)
        if run_as:
            user = pwd.getpwnam("postgres")
            os.chown(base, user.pw_uid, user.pw_gid)
        data, log = base / "data", base / "postgres.log"
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "tripsage", "--auth=trust"]
        subprocess.run(
            [*run_as, *initdb, "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True,
            capture_output=True,
        )
        port = _free_port()
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=on"
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
        subprocess.run(
            [*run_as, *pg_ctl, "-w", "-t", str(int(START_TIMEOUT_S)), "start"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                str(bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "tripsage",
                "tripsage",
            ],
            check=True,
            capture_output=True,
        )
        return cls(base, port, log)

    def pg_ctl(self, *args: str) -> None:
        bindir = postgres_bin()
        assert bindir is not None
        subprocess.run(
            [*_as_postgres_user(), str(bindir / "pg_ctl"), "-D", str(self.base / "data"), *args],
            check=True,
            capture_output=True,
        )

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop at once (open connections are cut) and start again on the same port."""
        self.pg_ctl("-m", "immediate", "-w", "-l", str(self.process_log), "restart")


@dataclass
class RedisServer:
    base: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, base: Path, port: int | None = None) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("Redis is not installed (apt install redis-server)")
        base.mkdir(parents=True, exist_ok=True)
        port = port or _free_port()
        where = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(base)]
        durable = ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        process = subprocess.Popen([binary, *where, *durable, "--logfile", str(base / "redis.log")])
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return cls(base, port, process)
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (see {base / 'redis.log'})")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)

    def restart(self) -> RedisServer:
        """Started again on the same port and files (its AOF is replayed)."""
        return RedisServer.start(self.base, self.port)


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is needed under CI=true (.ci/run installs and starts it)")
    pytest.skip(f"{what} is not installed here")


@contextlib.contextmanager
def services_dir() -> Iterator[Path]:
    """A temp dir the ``postgres`` user can enter (pytest's own are root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="tripsage-services."))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def need_postgres() -> Iterator[str]:
    """The URL of a running PostgreSQL: ``TRIPSAGE_TEST_POSTGRES_URL``, or one started here."""
    url = os.environ.get("TRIPSAGE_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if postgres_bin() is None:
        _missing("PostgreSQL")
    with services_dir() as base:
        server = PostgresServer.start(base / "postgres")
        try:
            yield server.url
        finally:
            server.stop("immediate")


def need_redis() -> Iterator[str]:
    """The URL of a running Redis: ``TRIPSAGE_TEST_REDIS_URL``, or one started here."""
    url = os.environ.get("TRIPSAGE_TEST_REDIS_URL")
    if url:
        yield url
        return
    if shutil.which("redis-server") is None:
        _missing("Redis")
    with services_dir() as base:
        server = RedisServer.start(base / "redis")
        try:
            yield server.url
        finally:
            server.stop()


def fresh_postgres_url(url: str) -> str:
    """``url`` with a new, empty schema first on its ``search_path``: a database of one's own."""
    schema = f"t{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    query.append(("options", f"-csearch_path={schema}"))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def main() -> int:
    """Start both, write the ``export`` lines to the file named by argv[1], run until SIGTERM."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with services_dir() as base:
        postgres = PostgresServer.start(base / "postgres")
        try:
            redis = RedisServer.start(base / "redis")
            try:
                exports = Path(sys.argv[1])
                exports.write_text(
                    f"export TRIPSAGE_TEST_POSTGRES_URL={postgres.url}\n"
                    f"export TRIPSAGE_TEST_REDIS_URL={redis.url}\n"
                )
                while not stopping:
                    signal.pause()
            finally:
                redis.stop()
        finally:
            postgres.stop("immediate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
