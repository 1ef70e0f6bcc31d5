"""The ordered send queue's records: optimistic updates and their outcomes, queued
messages, and the JSON-lines file that persists them (``queue_path``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from tripsage_sync.client.base import OUTCOME_TYPES

__all__ = [
    "STATUS_BY_OUTCOME",
    "PendingUpdate",
    "QueueFile",
    "QueuedMessage",
    "UpdateRef",
    "UpdateStatus",
    "settled",
]

logger = logging.getLogger(__name__)


class UpdateStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"


STATUS_BY_OUTCOME: Final = dict(
    zip(
        OUTCOME_TYPES,
        (UpdateStatus.CONFIRMED, UpdateStatus.REJECTED, UpdateStatus.ROLLED_BACK),
        strict=True,
    )
)


@dataclass
class PendingUpdate:
    """One ``optimistic_update_start`` and, once it arrives, its outcome."""

    update_id: str
    trip_id: str
    field_name: str
    value: Any
    client_timestamp: str
    expected_version: int | None  # None: chained, fixed when first sent
    previous_value: Any = None
    has_previous_value: bool = False
    status: UpdateStatus = UpdateStatus.PENDING
    server_value: Any = None  # confirmedValue / currentServerValue / rollbackToValue
    server_version: int | None = None
    outcome: dict[str, Any] | None = None  # the outcome event's payload
    sends: int = 0

    @property
    def field_key(self) -> str:
        return self.field_name.removeprefix("trip.")

    def message(self) -> dict[str, Any]:
        assert self.expected_version is not None, "expectedVersion not fixed yet"
        payload: dict[str, Any] = {
            "updateId": self.update_id,
            "tripId": self.trip_id,
            "fieldName": self.field_name,
            "optimisticValue": self.value,
            "expectedVersion": self.expected_version,
            "clientTimestamp": self.client_timestamp,
        }
        if self.has_previous_value:
            payload["previousValue"] = self.previous_value
        return {
            "id": f"m-{self.update_id}",
            "type": "optimistic_update_start",
            "timestamp": self.client_timestamp,
            "payload": payload,
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PendingUpdate:
        return cls(**{**data, "status": UpdateStatus(data["status"])})


class QueueFile:
    """The client's durable queue: JSON lines, each appended and fsync'd.

    Records: ``update`` (a :class:`PendingUpdate`), ``assign`` (its expected
    version, for chained updates), ``outcome`` (it is final), ``message`` (a
    message queued while disconnected, with a sequence number) and ``sent``.
    A torn last line (a crash mid-append) is ignored.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> tuple[list[PendingUpdate], list[tuple[int, dict[str, Any]]]]:
        """Pending updates and unsent messages, in the order they were queued."""
        updates: dict[str, PendingUpdate] = {}
        messages: dict[int, dict[str, Any]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return [], []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                if number == len(lines):
                    logger.warning("queue file %s: torn last line ignored", self.path)
                    break
                raise
            kind = record["k"]
            if kind == "update":
                update = PendingUpdate.from_json(record["update"])
                updates[update.update_id] = update
            elif kind == "assign" and record["updateId"] in updates:
                updates[record["updateId"]].expected_version = record["expectedVersion"]
            elif kind == "outcome":
                updates.pop(record["updateId"], None)
            elif kind == "message":
                messages[record["seq"]] = record["message"]
            elif kind == "sent":
                messages.pop(record["seq"], None)
        return list(updates.values()), sorted(messages.items())

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rewrite(
        self, updates: Iterable[PendingUpdate], messages: Iterable[tuple[int, dict[str, Any]]]
    ) -> None:
        """Replace the file by its live records (write, fsync, rename, fsync the dir)."""
        records: list[dict[str, Any]] = [{"k": "update", "update": u.to_json()} for u in updates]
        records += [{"k": "message", "seq": s, "message": m} for s, m in messages]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        with contextlib.suppress(OSError):  # not every platform can open a directory
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


@dataclass
class QueuedMessage:
    message: dict[str, Any]
    seq: int | None = None  # in the queue file
    on_sent: Callable[[], None] | None = None


@dataclass(frozen=True)
class UpdateRef:
    update_id: str


def settled(update: PendingUpdate) -> bool:
    return update.status is not UpdateStatus.PENDING
