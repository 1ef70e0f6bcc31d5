"""``tripsage-sync db check|compact|backup`` against real databases."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api.opshelpers import create_trip, get_trip, run_cli, start_session, update
from tests.conftest import SQLITE_ONLY, ServerProcess
from tests.wsclient import open_client

# The database tools work on the SQLite file (a cluster has `db copy`, tests/storage).
pytestmark = [pytest.mark.anyio, SQLITE_ONLY]


async def _edited_trip(server: ServerProcess, trip_id: str = "trip-db", edits: int = 3) -> None:
    await create_trip(server, "alice", trip_id)
    client, _, _ = await open_client(server, "alice", "s-alice")
    await start_session(client, trip_id)
    version = 1
    for i in range(edits):
        outcome = await update(client, trip_id, f"u-{i}", "destination", f"City {i}", version)
        version = outcome["payload"]["serverVersion"]
    await client.close()


def _log_rows(db: Path, trip_id: str) -> tuple[int, int | None]:
    with sqlite3.connect(db) as conn:
        (updates,) = conn.execute(
            "SELECT count(*) FROM trip_updates WHERE trip_id = ?", (trip_id,)
        ).fetchone()
        row = conn.execute(
            "SELECT version FROM trip_snapshots WHERE trip_id = ?", (trip_id,)
        ).fetchone()
    conn.close()
    return updates, None if row is None else row[0]


def _corrupt(path: Path) -> None:
    """Overwrite the header of every b-tree page after the first (schema) page."""
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    for start in range(page_size, len(data), page_size):
        data[start : start + 12] = b"\x0d\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff"
    path.write_bytes(bytes(data))


async def test_backup_restores_an_identical_trip(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    await _edited_trip(server)
    live = await get_trip(server, "alice", "trip-db")
    backup = tmp_path / "backup.db"
    code, out, err = await run_cli("db", "backup", str(backup), "--db", str(server.db))
    assert code == 0, err  # online: the server is still running
    assert "integrity: ok" in out
    assert "schema version:" in out
    code, _, err = await run_cli("db", "backup", str(backup), "--db", str(server.db))
    assert code == 1
    assert "exists" in err
    server.stop()

    restored = server_factory(db=backup)
    assert await get_trip(restored, "alice", "trip-db") == live


async def test_check_reports_a_corrupted_copy(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    await _edited_trip(server)
    server.stop()
    code, out, err = await run_cli("db", "check", "--db", str(server.db))
    assert code == 0, err
    assert "integrity: ok" in out
    assert "schema version:" in out
    assert "bytes" in out

    copy = tmp_path / "copy.db"
    shutil.copyfile(server.db, copy)
    _corrupt(copy)
    code, out, _ = await run_cli("db", "check", "--db", str(copy))
    assert code == 1
    assert "problem" in out

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 400)
    code, out, _ = await run_cli("db", "check", "--db", str(garbage))
    assert code == 1
    assert "cannot read" in out

    code, out, _ = await run_cli("db", "check", "--db", str(tmp_path / "missing.db"))
    assert code == 1
    assert "no such file" in out


async def test_compact_snapshots_prunes_and_keeps_the_trip(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    await _edited_trip(server, edits=4)
    before = await get_trip(server, "alice", "trip-db")
    server.stop()
    updates, snapshot = _log_rows(server.db, "trip-db")
    assert updates == 5  # creation and four edits
    assert snapshot is None

    code, out, err = await run_cli("db", "compact", "--db", str(server.db))
    assert code == 0, err
    assert "1 of 1 trip(s) compacted, 5 update(s) pruned" in out
    assert _log_rows(server.db, "trip-db") == (0, 5)
    code, out, _ = await run_cli("db", "compact", "--db", str(server.db))
    assert "0 of 1 trip(s) compacted" in out

    again = server_factory(db=server.db)
    assert await get_trip(again, "alice", "trip-db") == before
    # And it keeps working after the compaction.
    client, _, _ = await open_client(again, "alice", "s-again")
    await start_session(client, "trip-db")
    outcome = await update(client, "trip-db", "u-after", "name", "Later", 5)
    assert outcome["payload"]["serverVersion"] == 6
    await client.close()
