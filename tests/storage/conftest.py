"""Fixtures for the storage tests: real SQLite files under ``tmp_path``, no mocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tripsage_sync.storage import Storage


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
