"""Storage: pragmas, durability across reopen, crashes and processes, maintenance."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.storage.helpers import REPO_ROOT, run_python
from tripsage_sync.storage import Snapshot, Storage, StorageClosed, VersionConflict
from tripsage_sync.storage.connection import Connection
from tripsage_sync.storage.errors import is_unavailable


def test_pragmas_are_set(store: Storage, db_path: Path) -> None:
    def pragmas(db: Connection) -> tuple[str, int, int, int]:
        return (
            db.execute("PRAGMA journal_mode").fetchone()[0],
            db.execute("PRAGMA synchronous").fetchone()[0],
            db.execute("PRAGMA foreign_keys").fetchone()[0],
            db.execute("PRAGMA busy_timeout").fetchone()[0],
        )

    # synchronous 2 is FULL: a commit waits for the WAL's fsync.
    assert store.submit(pragmas).result() == ("wal", 2, 1, 5_000)
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file
    finally:
        conn.close()


def test_foreign_keys_are_enforced(store: Storage) -> None:
    def orphan(db: Connection) -> None:
        db.execute(
            'INSERT INTO trip_updates (trip_id, version, "update", meta, created_ms)'
            " VALUES ('nope', 1, x'00', '{}', 0)"
        )

    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        store.submit(orphan).result()


def test_reopen_keeps_everything(db_path: Path) -> None:
    with Storage(db_path) as store:
        store.set_meta_if_absent("jwt_secret", "s").result()
        store.create_trip("t1", "alice", '{"m": 1}', 1).result()
        store.set_collaborator("t1", "bob", "edit").result()
        for version in (1, 2, 3):
            store.append_update("t1", version, bytes([version]), "{}", 2)
        store.save_snapshot("t1", 2, b"\x00\xff", '{"s": 2}', 3, 2)
        store.put_outcome("t1", "u1", '{"ok": true}', 4)
        store.put_conflict("t1", "c1", "{}", "pending")
        store.claim_chat_session("s1", "alice", 5)
        store.share_chat_session("s1", "bob")
        last = store.append_chat_message("s1", "m1", "user", "alice", "hi", "{}", 6)
        # No waiting on the futures above: close() drains and commits them.
    assert last.result() == 1
    with Storage(db_path) as store:
        assert store.get_meta("jwt_secret") == "s"
        assert store.collaborators("t1") == {"bob": "edit"}
        history = store.trip_history("t1")
        assert history.snapshot == Snapshot(2, b"\x00\xff", '{"s": 2}')
        assert [(u.version, u.update) for u in history.updates] == [(3, b"\x03")]
        assert store.get_outcome("t1", "u1") == '{"ok": true}'
        assert [c.conflict_id for c in store.pending_conflicts()] == ["c1"]
        assert store.chat_session_members("s1") == {"bob"}
        assert [m.content for m in store.chat_messages("s1")] == ["hi"]


def test_closed_storage_refuses_reads_and_writes(db_path: Path) -> None:
    store = Storage(db_path)
    store.close()
    store.close()
    with pytest.raises(StorageClosed):
        store.get_meta("k")
    with pytest.raises(StorageClosed):
        store.set_meta_if_absent("k", "v")


def test_write_survives_sigkill_after_its_future_resolved(db_path: Path) -> None:
    child = run_python(
        """
        import os, signal, sys
        from tripsage_sync.storage import Storage
        store = Storage(sys.argv[1])
        store.create_trip("t1", "alice", "{}", 1).result()
        store.append_update("t1", 1, b"\\x00\\x01", '{"by": "child"}', 2).result()
        print("resolved", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        str(db_path),
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout == "resolved\n"
    # The commit sits in the WAL, never checkpointed: reopening must recover it.
    assert Path(f"{db_path}-wal").stat().st_size > 0
    with Storage(db_path) as store:
        assert store.updates_since("t1", 0) == [(1, b"\x00\x01", '{"by": "child"}')]
        assert store.integrity_check() == []


def test_meta_from_two_processes_agrees(db_path: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = """
        import secrets, sys, time
        from pathlib import Path
        from tripsage_sync.storage import Storage
        go = Path(sys.argv[2])
        while not go.exists():
            time.sleep(0.001)
        with Storage(sys.argv[1]) as store:
            print(store.set_meta_if_absent("jwt_secret", secrets.token_hex(16)).result())
        """
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script.replace("\n        ", "\n"), str(db_path), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    time.sleep(0.2)  # both interpreters started and polling
    go.touch()
    outputs = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    values = {stdout.strip() for stdout, _ in outputs}
    assert len(values) == 1
    with Storage(db_path) as store:
        assert values == {store.get_meta("jwt_secret")}


def test_integrity_check_backup_and_sizes(store: Storage, tmp_path: Path) -> None:
    store.create_trip("t1", "alice", "{}", 1).result()
    store.append_update("t1", 1, b"x" * 10_000, "{}", 2).result()
    assert store.integrity_check() == []
    sizes = store.sizes()
    assert sizes.page_size * sizes.page_count > 10_000
    assert sizes.wal_bytes > 0
    backup = tmp_path / "backup.db"
    store.backup(backup)
    with Storage(backup) as copy:
        assert copy.updates_since("t1", 0) == [(1, b"x" * 10_000, "{}")]
        assert copy.integrity_check() == []


def test_read_connection_is_query_only(store: Storage) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store._read_db.execute("INSERT INTO meta VALUES ('k', 'v')")


def test_a_full_database_is_unavailable_until_space_returns(store: Storage, trip: str) -> None:
    """SQLITE_FULL (``PRAGMA max_page_count`` on the write connection itself): a
    transient unavailability, nothing half-written, and writes commit again after."""
    pages = store.submit(lambda db: db.execute("PRAGMA page_count").fetchone()[0]).result()
    store.submit(lambda db: db.execute(f"PRAGMA max_page_count = {pages}")).result()
    big = b"x" * 200_000
    with pytest.raises(sqlite3.OperationalError, match="full") as raised:
        store.append_update(trip, 1, big, "{}", 2).result()
    assert is_unavailable(raised.value)
    assert store.updates_since(trip, 0) == []
    store.submit(lambda db: db.execute("PRAGMA max_page_count = 1073741823")).result()
    store.append_update(trip, 1, big, "{}", 2).result()
    assert [u.version for u in store.updates_since(trip, 0)] == [1]


def test_refusals_of_one_write_are_not_unavailability(store: Storage, trip: str) -> None:
    store.append_update(trip, 1, b"u1", "{}", 2).result()
    with pytest.raises(VersionConflict) as conflict:
        store.append_update(trip, 1, b"again", "{}", 2).result()
    assert not is_unavailable(conflict.value)

    def orphan(db: Connection) -> None:
        db.execute(
            'INSERT INTO trip_updates (trip_id, version, "update", meta, created_ms)'
            " VALUES ('nope', 1, x'00', '{}', 0)"
        )

    with pytest.raises(sqlite3.IntegrityError) as integrity:
        store.submit(orphan).result()
    assert not is_unavailable(integrity.value)
    assert is_unavailable(StorageClosed("closed"))
