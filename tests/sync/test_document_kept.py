"""Tests for sync/document/kept.py: a log entry as memory keeps it, and read back."""

from __future__ import annotations

import gc

import pytest

from tripsage_sync.sync.document.kept import entry_of, kept
from tripsage_sync.sync.document.results import LogEntry


@pytest.mark.parametrize(
    "meta",
    [
        {"format": 1, "kind": "update", "userId": "ana", "fields": {"budget": [5, "ana", "u1"]}},
        {"userId": "a\ud800b", "fields": {"f": [1, "a\ud800", "u", 2]}},  # json.dumps's text
        {"userId": "😀", "fields": {}, "clientId": 2**53 - 1},
        {"fields": None},  # an older entry without a field list
    ],
)
def test_a_kept_entry_reads_back_as_it_was(meta: dict) -> None:  # type: ignore[type-arg]
    entry = LogEntry(7, b"\x00\x01", meta)
    packed = kept(entry)
    for _ in range(2):  # the field names' tuple, then the entry holding it
        gc.collect()
    assert not gc.is_tracked(packed)
    assert entry_of(packed) == entry
    fields = meta.get("fields")
    assert packed[3] == (tuple(fields) if isinstance(fields, dict) else None)
