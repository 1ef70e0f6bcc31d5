"""Schema migrations by PRAGMA user_version."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from tripsage_sync.storage import SchemaTooNew, Storage
from tripsage_sync.storage.migrations import MIGRATIONS, latest_version, migrate, schema_version
from tripsage_sync.storage.sqlite import connect


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def schema_sql(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT sql FROM sqlite_master ORDER BY name")]
    finally:
        conn.close()


def test_migrations_are_numbered_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert latest_version() == MIGRATIONS[-1].version >= 2


def test_fresh_database_gets_the_latest_schema(db_path: Path) -> None:
    with Storage(db_path) as store:
        assert store.schema_version() == latest_version()
    assert user_version(db_path) == latest_version()


def test_v1_database_migrates_and_keeps_its_rows(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = connect(db_path)
    try:
        assert migrate(db, target=1) == 1
        db.execute("INSERT INTO meta (key, value) VALUES ('jwt_secret', 's3cret')")
        db.execute(
            "INSERT INTO trips (trip_id, owner_id, manual_fields, created_ms)"
            " VALUES ('t1', 'alice', '{}', 5)"
        )
        db.execute("INSERT INTO chat_sessions VALUES ('c1', 'alice', 6)")
        assert "chat_messages" not in db.table_names()
    finally:
        db.close()
    assert user_version(db_path) == 1

    caplog.set_level(logging.INFO, logger="tripsage_sync.storage.migrations")
    with Storage(db_path) as store:
        assert store.schema_version() == 2
        assert store.get_meta("jwt_secret") == "s3cret"
        trip = store.get_trip("t1")
        assert trip is not None
        assert trip.owner_id == "alice"
        assert store.append_chat_message("c1", "m1", "user", "alice", "hi", "{}", 7).result() == 1
    assert [r.getMessage() for r in caplog.records if "migrated" in r.getMessage()] == [
        "migrated schema to version 2 (chat messages with a database-wide sequence)"
    ]


def test_reopening_is_idempotent(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    Storage(db_path).close()
    before = schema_sql(db_path)
    caplog.set_level(logging.INFO, logger="tripsage_sync.storage.migrations")
    with Storage(db_path) as store:
        assert store.schema_version() == latest_version()
    db = connect(db_path)
    try:
        assert migrate(db) == latest_version()
    finally:
        db.close()
    assert schema_sql(db_path) == before
    assert not [r for r in caplog.records if r.name == "tripsage_sync.storage.migrations"]


def test_newer_database_is_refused(db_path: Path) -> None:
    Storage(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew) as raised:
        Storage(db_path)
    assert raised.value.found == latest_version() + 1
    assert user_version(db_path) == latest_version() + 1


def test_failed_migration_leaves_the_previous_version(db_path: Path) -> None:
    db = connect(db_path)
    try:
        migrate(db, target=1)
        # An index in the way makes migration 2 fail after it created its table.
        db.execute("CREATE INDEX chat_messages_by_session ON trips (owner_id)")
        with pytest.raises(sqlite3.OperationalError, match="already exists"):
            migrate(db)
        assert schema_version(db) == 1
        assert "chat_messages" not in db.table_names()
        assert not db.conn.in_transaction
    finally:
        db.close()


def test_unknown_target_is_refused(db_path: Path) -> None:
    db = connect(db_path)
    try:
        with pytest.raises(ValueError, match="no migration"):
            migrate(db, target=latest_version() + 1)
    finally:
        db.close()
