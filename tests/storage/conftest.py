"""Fixtures for the storage tests: real SQLite files under ``tmp_path`` and a real
PostgreSQL (``tests/services.py``), no mocks.

``store`` is the SQLite store; ``any_store`` is each engine in turn, for the
tests of what every engine must do alike (``test_ops.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import fresh_postgres_url
from tripsage_sync.storage import Storage
from tripsage_sync.storage.postgres import PostgresStorage
from tripsage_sync.storage.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sync.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Storage]:
    storage = Storage(db_path)
    try:
        yield storage
    finally:
        storage.close()


@pytest.fixture
def trip(store: Storage) -> str:
    """A stored trip owned by ``alice``."""
    store.create_trip("trip-1", "alice", '{"fields": []}', 1_000).result()
    return "trip-1"


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """The URL of an empty database of this test's own (a fresh schema)."""
    return fresh_postgres_url(postgres_url)


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Store]:
    store: Store
    if request.param == "sqlite":
        store = Storage(db_path)
    else:
        store = PostgresStorage(request.getfixturevalue("pg_url"))
    try:
        yield store
    finally:
        store.close()
