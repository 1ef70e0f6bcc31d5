"""What only the PostgreSQL store must do: several nodes on one database, lost connections,
durability across kill -9, migrations that race. Real PostgreSQL servers (tests/services.py)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.services import PostgresServer, fresh_postgres_url, postgres_bin, services_dir
from tests.storage.helpers import run_python
from tripsage_sync.storage import PostgresStorage, VersionConflict, WriteOp, ops
from tripsage_sync.storage.errors import ChainBroken, SchemaTooNew, is_unavailable
from tripsage_sync.storage.migrations import latest_version
from tripsage_sync.storage.pgschema import pg_migrate
from tripsage_sync.storage.postgres import PgConnection, pg_connect


@pytest.fixture
def node_a(pg_url: str) -> Iterator[PostgresStorage]:
    with PostgresStorage(pg_url) as store:
        yield store


@pytest.fixture
def node_b(pg_url: str, node_a: PostgresStorage) -> Iterator[PostgresStorage]:
    with PostgresStorage(pg_url) as store:
        yield store


def test_two_nodes_share_one_log_and_the_second_append_of_a_version_loses(
    node_a: PostgresStorage, node_b: PostgresStorage
) -> None:
    node_a.create_trip("t", "alice", "{}", 1).result()
    node_a.append_update("t", 1, b"a1", "{}", 2).result()
    # B has never seen the trip: it reads the version the database holds.
    node_b.submit(_contiguous("t", 2, b"b2")).result()
    # A knew version 1 from its own write; its cache must not hide B's version 2.
    with pytest.raises(VersionConflict) as refused:
        node_a.submit(_contiguous("t", 2, b"a2")).result()
    assert refused.value.current_version == 2
    node_a.submit(_contiguous("t", 3, b"a3")).result()
    assert [u.update for u in node_b.updates_since("t", 0)] == [b"a1", b"b2", b"a3"]


def test_racing_appends_of_one_version_commit_exactly_one(
    node_a: PostgresStorage, node_b: PostgresStorage
) -> None:
    node_a.create_trip("t", "alice", "{}", 1).result()
    for version in range(1, 41):
        futures = [
            node.submit(_contiguous("t", version, name.encode()))
            for node, name in ((node_a, "a"), (node_b, "b"))
        ]
        failures = [f.exception(timeout=30) for f in futures]
        assert sum(f is None for f in failures) == 1, failures
        assert all(f is None or isinstance(f, VersionConflict) for f in failures)
    assert [u.version for u in node_a.updates_since("t", 0)] == list(range(1, 41))


def test_a_batch_that_lost_one_version_to_another_node_commits_the_rest(
    node_a: PostgresStorage, node_b: PostgresStorage
) -> None:
    # A's cache holds both trips at version 1; B appends t1's version 2 meanwhile. A's
    # next batch loses t1's version 2 (and the change of the same chain decided on it),
    # and commits t2's (the batch runs once more in bulk on what the database holds).
    for trip in ("t1", "t2"):
        node_a.create_trip(trip, "alice", "{}", 1).result()
        node_a.submit(_contiguous(trip, 1, b"a1")).result()
    node_b.submit(_contiguous("t1", 2, b"b2")).result()
    futures = [
        node_a.submit_all([_contiguous("t1", 2, b"a2")], chain=7),
        node_a.submit_all([_contiguous("t1", 3, b"a3")], chain=7),
        node_a.submit_all([_contiguous("t2", 2, b"a2")], chain=8),
    ]
    failures = [f.exception(timeout=30) for f in futures]
    assert isinstance(failures[0], VersionConflict)
    assert isinstance(failures[1], ChainBroken)
    assert failures[2] is None
    assert [u.update for u in node_b.updates_since("t1", 0)] == [b"a1", b"b2"]
    assert [u.update for u in node_b.updates_since("t2", 0)] == [b"a1", b"a2"]
    node_a.submit(_contiguous("t1", 3, b"a3")).result()  # on what it holds now


def _contiguous(trip: str, version: int, update: bytes) -> WriteOp[None]:
    return ops.append_update(trip, version, update, "{}", 0, contiguous=True)


def test_migrations_racing_from_many_nodes_apply_once(pg_url: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            db = PgConnection(pg_connect(pg_url))
            try:
                results.append(pg_migrate(db))
            finally:
                db.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert results == [latest_version()] * 4


def test_a_database_from_newer_code_is_refused(pg_url: str) -> None:
    with PostgresStorage(pg_url):
        pass
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(SchemaTooNew):
        PostgresStorage(pg_url)


def test_a_confirmed_write_survives_kill_9_of_its_node(pg_url: str) -> None:
    child = run_python(
        """
        import os, signal, sys
        from tripsage_sync.storage import PostgresStorage
        store = PostgresStorage(sys.argv[1])
        store.create_trip("t1", "alice", "{}", 1).result()
        store.append_update("t1", 1, b"\\x00\\x01", '{"by": "child"}', 2).result()
        print("resolved", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        pg_url,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout == "resolved\n"
    with PostgresStorage(pg_url) as store:
        assert store.updates_since("t1", 0) == [(1, b"\x00\x01", '{"by": "child"}')]


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    """A PostgreSQL of this module's own, to restart under a store."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed here")
    with services_dir() as base:
        server = PostgresServer.start(Path(base) / "postgres")
        try:
            yield server
        finally:
            server.stop("immediate")


def test_the_store_comes_back_by_itself_after_postgres_restarts(
    own_server: PostgresServer,
) -> None:
    with PostgresStorage(fresh_postgres_url(own_server.url)) as store:
        store.create_trip("t", "alice", "{}", 1).result()
        own_server.restart()
        # The connections were cut: the first read and the first write fail, as unavailable.
        with pytest.raises(psycopg.OperationalError) as read_failed:
            store.get_trip("t")
        assert is_unavailable(read_failed.value)
        failed = store.append_update("t", 1, b"u", "{}", 2).exception(timeout=30)
        if failed is not None:  # the writer's connection was cut too (it may have been idle)
            assert is_unavailable(failed)
            store.append_update("t", 1, b"u", "{}", 2).result(timeout=30)
        # Then both connect again: nothing to restart.
        assert store.get_trip("t") is not None
        assert [u.update for u in store.updates_since("t", 0)] == [b"u"]
