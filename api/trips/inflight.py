"""A trip room's commits in flight (:meth:`TripRoom.durable`), and what they write.

Theory of operation
-------------------
Each commit of a room is a :class:`Commit` in the room's list, in version
order, until its broadcast is done. In a cluster another node may take the
version a commit appends (``raced``): when the commit and the ones after it
in its storage chain are a run of consecutive changes (``movable``), the
room may move them under what the store holds now (``stored_since``) and
submit them again (``TripRoom._rebase``); each commit then awaits its
``retry``.

:class:`WriteKinds` remembers what each write of ``TripRoom.writes_for`` stands
for, so that a commit is counted in the metrics once it is durable and the
cluster relay can tell conflicts from plain appends.
"""

from __future__ import annotations

import itertools
import json
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Final

from tripsage_sync.api.transport.metrics import Metrics
from tripsage_sync.api.transport.services import Services
from tripsage_sync.storage.errors import ChainBroken, DuplicateId, VersionConflict
from tripsage_sync.storage.writer import WriteOp
from tripsage_sync.sync.document import Change, LogEntry

__all__ = [
    "CHAINS",
    "REBASE_RETRIES",
    "Commit",
    "WriteKinds",
    "landed",
    "movable",
    "raced",
    "stored_since",
]

#: Cluster mode: how many times a commit another node beat is moved under its changes
#: (``TripRoom._rebase``) before the room reloads instead. Each time the other node made
#: progress; the bound only keeps a node that keeps losing from waiting on without end.
REBASE_RETRIES: Final = 64

#: Storage chains (``TripRoom.chain``): never one number for two documents.
CHAINS: Final = itertools.count(1)


@dataclass(eq=False)
class Commit:
    """One commit of :meth:`TripRoom.durable` in flight."""

    writes: list[WriteOp[object]]
    change: Change | None  # given when the commit may be moved (``TripRoom._rebase``)
    chain: int
    retry: Future[Any] | None = None  # its writes submitted again, once moved


async def landed(services: Services, future: Future[Any]) -> Exception | None:
    """Await a storage write: the exception it failed with, if it did."""
    try:
        await services.write(future)
    except Exception as exc:  # noqa: BLE001 - any storage failure breaks the room
        return exc
    return None


def raced(failure: Exception | None) -> bool:
    """Whether a commit failed because another node took its version (or its id)."""
    return isinstance(failure, VersionConflict | DuplicateId | ChainBroken)


def movable(commits: list[Commit], failed: Commit, chain: int, version: int) -> list[Commit]:
    """``failed`` and the commits after it, if they may be moved together: all of the
    current ``chain``, each one change that may be moved, their versions consecutive up
    to the document's ``version``; else ``[]``."""
    if failed.chain != chain or failed.change is None:
        return []
    later = [c for c in commits[commits.index(failed) :] if c.writes]
    first = failed.change.version
    if any(c.change is None or c.chain != chain for c in later) or [
        c.change.version for c in later if c.change is not None
    ] != list(range(first, version + 1)):
        return []
    return later


def stored_since(services: Services, trip_id: str, after: int) -> list[LogEntry]:
    """The trip's changes the store holds after version ``after``, as log entries."""
    rows = services.store.updates_since(trip_id, after)
    return [LogEntry(r.version, r.update, json.loads(r.meta_json)) for r in rows]


@dataclass
class WriteKinds:
    """What each write stands for: "append", "conflict_raised", "conflict_resolved"."""

    _kinds: weakref.WeakKeyDictionary[WriteOp[Any], str] = field(
        default_factory=weakref.WeakKeyDictionary
    )

    def mark(self, write: WriteOp[Any], kind: str) -> WriteOp[Any]:
        self._kinds[write] = kind
        return write

    def kind_of(self, write: WriteOp[Any]) -> str | None:
        return self._kinds.get(write)

    def count(self, metrics: Metrics, writes: list[WriteOp[object]]) -> None:
        """Count the committed ``writes`` in ``metrics``."""
        for write in writes:
            match self._kinds.get(write):
                case "append":
                    metrics.log_appends += 1
                case "conflict_raised":
                    metrics.conflicts_raised += 1
                case "conflict_resolved":
                    metrics.conflicts_resolved += 1
