"""``tripsage-sync db copy`` and ``db migrate``: SQLite into PostgreSQL and back, resumable,
checked; run as the command a self-hoster runs, on real files and a real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.storage.helpers import REPO_ROOT
from tripsage_sync.storage import PostgresStorage, Storage, Store, open_store
from tripsage_sync.storage.copy import compare, copy_rows
from tripsage_sync.storage.pgschema import pg_schema_version

UPDATES = 2_345  # more than two batches of the copy


def fill(store: Store) -> None:
    store.set_meta_if_absent("jwt_secret", "s" * 64).result()
    store.create_trip("t1", "alice", '{"fields": ["budget"]}', 1).result()
    store.create_trip("t2", "bob", "{}", 2).result()
    store.set_collaborator("t1", "bob", "editor").result()
    store.save_snapshot("t2", 3, b"\x00state\xff", '{"s": 1}', 4).result()
    writes = [store.append_update("t1", v, bytes([v % 256]) * 3, "{}", v) for v in range(1, 2001)]
    writes += [store.append_update("t2", v, b"t2", "{}", v) for v in range(4, 4 + UPDATES - 2000)]
    for write in writes:
        write.result()
    store.put_outcome("t1", "u-1", '{"status": "confirmed"}', 5).result()
    store.put_conflict("t1", "c-1", '{"field": "budget"}', "pending").result()
    store.claim_chat_session("s1", "alice", 6).result()
    store.share_chat_session("s1", "bob").result()
    for n in range(3):
        payload = json.dumps({"text": f"héllo 🌍 {n}"})
        store.append_chat_message("s1", f"m{n}", "user", "alice", "héllo 🌍", payload, 7).result()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tripsage_sync.api.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )


def test_copy_into_postgres_and_back_is_identical(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "one.db"
    with Storage(source) as store:
        fill(store)
    done = cli("db", "copy", "--from", str(source), "--to", pg_url)
    assert done.returncode == 0, done.stderr
    assert "identical" in done.stdout
    assert "trip_updates" in done.stderr  # the progress bar, table by table
    assert "password" not in done.stdout
    with PostgresStorage(pg_url) as pg, Storage(source) as sqlite:
        assert compare(sqlite, pg) == []
        assert pg.get_meta("jwt_secret") == "s" * 64
        assert pg.updates_since("t1", 1990) == sqlite.updates_since("t1", 1990)
        assert pg.latest_snapshot("t2") == sqlite.latest_snapshot("t2")
        assert pg.chat_messages("s1") == sqlite.chat_messages("s1")
        # The database-wide chat sequence goes on after the copied messages.
        assert pg.append_chat_message("s1", "m9", "user", "bob", "x", "{}", 8).result() == 4
    back = tmp_path / "back.db"
    done = cli("db", "copy", "--from", pg_url, "--to", str(back))
    assert done.returncode == 0, done.stderr
    with PostgresStorage(pg_url) as pg, Storage(back) as sqlite:
        assert compare(pg, sqlite) == []
        assert sqlite.append_chat_message("s1", "m10", "user", "bob", "x", "{}", 8).result() == 5


def test_a_copy_that_stopped_half_way_resumes(tmp_path: Path, pg_url: str) -> None:
    with Storage(tmp_path / "one.db") as sqlite, PostgresStorage(pg_url) as pg:
        fill(sqlite)

        def stop_in_the_log(table: str, done: int, total: int) -> None:
            if table == "trip_updates" and done >= 1000:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            copy_rows(sqlite, pg, stop_in_the_log)
        assert pg.log_stats("t1").update_count == 1000  # one batch landed, the rest did not
        assert compare(sqlite, pg) != []
        copy_rows(sqlite, pg)
        assert compare(sqlite, pg) == []
        copy_rows(sqlite, pg)  # a third run changes nothing
        assert compare(sqlite, pg) == []


def test_a_row_that_differs_is_reported_not_overwritten(tmp_path: Path, pg_url: str) -> None:
    with Storage(tmp_path / "one.db") as sqlite, PostgresStorage(pg_url) as pg:
        fill(sqlite)
        pg.set_meta_if_absent("jwt_secret", "other" * 10).result()
        copy_rows(sqlite, pg)
        assert compare(sqlite, pg) == ["meta: the rows differ (1 on each side)"]
        assert pg.get_meta("jwt_secret") == "other" * 10


def test_copy_refuses_what_it_cannot_do(tmp_path: Path, pg_url: str) -> None:
    missing = cli("db", "copy", "--from", str(tmp_path / "nope.db"), "--to", pg_url)
    assert missing.returncode == 1
    assert "no database at" in missing.stderr
    same = cli("db", "copy", "--from", pg_url, "--to", pg_url)
    assert same.returncode == 2
    unreachable = cli("db", "copy", "--from", pg_url, "--to", "postgresql://x@127.0.0.1:1/x")
    assert unreachable.returncode == 1
    assert "run the same command again" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_migrate_creates_the_schema(pg_url: str) -> None:
    done = cli("db", "migrate", "--url", pg_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"schema version {pg_schema_version_of(pg_url)}")
    again = cli("db", "migrate", "--url", pg_url)
    assert again.returncode == 0, again.stderr
    bad = cli("db", "migrate", "--url", "postgresql://x@127.0.0.1:1/x")
    assert bad.returncode == 1
    assert "cannot migrate" in bad.stderr


def pg_schema_version_of(url: str) -> int:
    with open_store(url) as store:
        assert isinstance(store, PostgresStorage)
        with store.reading() as db:
            return pg_schema_version(db)
