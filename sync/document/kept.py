"""A log entry as a loaded trip keeps it in memory: a plain tuple.

Every loaded trip keeps up to ``2 * keep`` log entries (:meth:`DocState.keep_recent`).
A :class:`~sync.document.results.LogEntry` and its meta dicts are three objects the
cycle collector walks in every full collection for as long as they are kept, and a
full collection holds the whole process: with 100 busy trips, up to 83 ms. A
:data:`Kept` entry is ``(version, update, meta as JSON text, the names of the fields
it wrote)``: ints, bytes and strs in exact tuples, which the collector stops tracking
once it has seen them. The meta is parsed again only when an entry is read back
(:func:`entry_of`: a replay, a rebase); a trim needs only the field names.
"""

from __future__ import annotations

import json

import orjson

from tripsage_sync.sync.document.results import LogEntry
from tripsage_sync.sync.wire.jsontext import json_text

__all__ = ["Kept", "entry_of", "kept"]

#: ``(version, update, meta JSON, field names)``; ``None``: the meta names no fields
#: (an entry of an older format: it may have written any field).
Kept = tuple[int, bytes, str, tuple[str, ...] | None]


def kept(entry: LogEntry) -> Kept:
    """``entry`` as memory keeps it."""
    fields = entry.meta.get("fields")
    names = tuple(fields) if isinstance(fields, dict) else None
    return (entry.version, entry.update, json_text(entry.meta), names)


def entry_of(entry: Kept) -> LogEntry:
    """The :class:`LogEntry` :func:`kept` kept."""
    try:
        meta = orjson.loads(entry[2])
    except orjson.JSONDecodeError:  # what json_text wrote with json.dumps (a lone surrogate)
        meta = json.loads(entry[2])
    return LogEntry(entry[0], entry[1], meta)
