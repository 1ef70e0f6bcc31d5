"""What the observer of a trip's live doc keeps (:class:`sync.document.state.DocState`)."""

from __future__ import annotations

from pycrdt import TransactionEvent

from tripsage_sync.sync.conflicts import JSON
from tripsage_sync.sync.document.schema import FieldKind

__all__ = ["Read", "Seen"]

Read = tuple[FieldKind | None, JSON]  # a field's kind (None: absent) and value


class Seen:
    """What the live doc's observer keeps: its latest update and the reads since.

    The observer is this object's method, not the :class:`DocState`'s: pycrdt keeps
    the callback in the Rust document, out of the garbage collector's sight, so a
    callback that referred back to the DocState would make an uncollectable cycle
    (DocState -> Doc -> callback -> DocState) and every unloaded room would stay.
    With no cycle through it, the DocState is freed when its room is dropped, and
    its finalizer drops the subscription, which frees the Doc.
    """

    __slots__ = ("clocks", "reads", "update")

    def __init__(self) -> None:
        # The update of the live doc's latest transaction (:mod:`.state`, "Scalar writes").
        self.update = b""
        # Scalar fields read since the live doc last changed (:mod:`.state`, "Reading").
        self.reads: dict[str, Read] = {}
        self.clocks: dict[int, int] | None = None  # the live state vector, decoded

    def transaction_done(self, event: TransactionEvent) -> None:
        self.update = event.update
        self.reads = {}
        self.clocks = None
