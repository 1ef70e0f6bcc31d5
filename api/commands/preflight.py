"""Mistakes an operator can fix, found before they become a traceback.

Theory of operation
-------------------
A command checks what it is about to use (the database file, the address to
listen on) and raises :class:`Refused` with one line that names the path or
the address and says what to do; :func:`api.cli.main` prints it after
``tripsage-sync:`` and exits 2. A failure the checks did not foresee is a
bug and keeps its traceback.

- :func:`database_file`: a SQLite path whose directory is missing, which is a
  directory, or (unless ``create``) which does not exist: the admin commands
  run from another directory would otherwise create a new database with a
  new secret and mint tokens the server rejects.
- :func:`opened_store`: the store opened, an unreadable or corrupt file (or an
  unreachable PostgreSQL) reported in one line.
- :func:`listening_socket`: the server's socket bound before the app starts,
  so that a port in use is one line instead of a started and stopped app.
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
from pathlib import Path

import psycopg

from tripsage_sync.storage import StorageError, Store, open_store

__all__ = ["Refused", "database_file", "listening_socket", "opened_store"]

_POSTGRES: tuple[str, ...] = ("postgresql://", "postgres://")


class Refused(Exception):
    """A mistake the operator can fix: one line, no traceback (exit code 2)."""


def database_file(location: str, *, create: bool) -> None:
    """Refuse a SQLite ``location`` that cannot be the database meant (URLs pass)."""
    if location.startswith(_POSTGRES):
        return
    path = Path(location)
    where = path.absolute()
    if path.is_dir():
        raise Refused(f"the database {where} is a directory; pass a file: --db PATH.db")
    parent = where.parent
    if not parent.is_dir():
        raise Refused(
            f"the directory {parent} of the database {location} does not exist:"
            " create it, or choose another path with --db or TRIPSAGE_DB"
        )
    if not path.exists() and not create:
        raise Refused(
            f"no database at {where}: run the command in the server's directory, or pass"
            " the server's database with --db or TRIPSAGE_DB (or --create for a new one)"
        )


def opened_store(location: str, *, create: bool = True) -> Store:
    """The store at ``location``, checked first (:func:`database_file`); what cannot be
    opened is :class:`Refused` in one line."""
    database_file(location, create=create)
    try:
        return open_store(location)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Refused(f"cannot use the PostgreSQL database: {first}") from exc
    except (sqlite3.DatabaseError, StorageError, OSError) as exc:
        where = Path(location).absolute()
        if isinstance(exc, sqlite3.DatabaseError) and "unable to open" not in str(exc):
            raise Refused(
                f"{where} is not a TripSage database or is damaged ({exc}): restore a backup"
                " (see `tripsage-sync db check`), or choose another --db"
            ) from exc
        raise Refused(
            f"cannot open or create the database {where} ({_reason(where, exc)}):"
            " choose a writable directory with --db or TRIPSAGE_DB"
        ) from exc


def _reason(path: Path, exc: Exception) -> str:
    """Why a SQLite file could not be opened, from the file system's own answer."""
    try:
        with open(path, "ab"):
            pass
    except OSError as os_error:
        return os_error.strerror or str(os_error)
    return str(exc)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (listening is the server's); in use or not
    this machine's address: :class:`Refused`."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise Refused(f"cannot listen on {host!r}: {exc.strerror} (check --host)") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise Refused(
                f"{shown} is already in use (another server?): stop it, or choose another"
                " port with --port or TRIPSAGE_PORT"
            ) from exc
        if exc.errno == errno.EACCES:
            raise Refused(
                f"not allowed to listen on {shown} (ports below 1024 need privileges):"
                " choose another port with --port or TRIPSAGE_PORT"
            ) from exc
        raise Refused(f"cannot listen on {shown}: {exc.strerror} (check --host)") from exc
    sock.set_inheritable(True)
    if os.name == "posix":
        sock.setblocking(False)
    return sock
