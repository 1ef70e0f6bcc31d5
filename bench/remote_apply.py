"""Micro-benchmark: Yjs peers' updates applied by the trip core, without a server.

Creates one trip (:class:`sync.document.TripDocument`) keeping the default window
of ``--keep`` entries in memory, then ``--peers`` pycrdt peers each write
``--rounds`` new keys into its root map, one update each, in turn: the shape of
the peers matrix's writers (``bench/peers.sh``). Every update goes through
``apply_remote_update`` as the server applies it, so the doc grows to
``peers x rounds`` keys. Reports the process CPU time per update, for the first
and for the last tenth of the updates: the cost of an update should not grow with
the trip's history. ``--overwrite``: each peer sets its own key again and again
instead, so the doc keeps ``peers`` keys and only its history grows.

Also reports the Python memory (``tracemalloc``) the trip holds after the first
tenth and at the end, per update in between: what a live trip keeps of its
history, beside pycrdt's own (about 200 bytes a replaced map item, in Rust).

    .venv/bin/python bench/remote_apply.py [--peers 50] [--rounds 400] [--overwrite]

Run by hand; numbers go in notes, never in tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

from pycrdt import Doc, Map, TransactionEvent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tripsage_sync.sync.document import LogEntry, TripDocument
from tripsage_sync.sync.document.schema import ROOT_MAP


def peer_updates(start: bytes, peers: int, rounds: int, overwrite: bool) -> list[bytes]:
    """Each peer's updates, peers in turn: one new key (a number) per update, or
    (``overwrite``) its own key set anew."""
    docs = []
    for i in range(peers):
        doc: Doc[Map[float]] = Doc(client_id=1_000 + i)
        doc.apply_update(start)
        docs.append(doc)
    updates: list[bytes] = []

    def keep(event: TransactionEvent) -> None:
        updates.append(event.update)

    for doc in docs:
        doc.observe(keep)
    for r in range(rounds):
        for i, doc in enumerate(docs):
            key = f"p{i}" if overwrite else f"p{i}-e{r}"
            doc.get(ROOT_MAP, type=Map)[key] = 1_733_600_000_000.0 + r
    return updates


def run(args: argparse.Namespace, *, traced: bool) -> tuple[list[float], int, TripDocument]:
    """Apply every update; returns their CPU times, and (``traced``) the Python memory
    the trip came to hold after the first tenth. Traced, the log entries are not kept
    (nothing below the window is read on this path: ``older`` would fail)."""
    trip, created = TripDocument.create("bench", {}, frozenset(), created_by="o", now_ms=0)
    stored = [LogEntry(created.version, created.update, created.meta)]

    def older(after: int, up_to: int) -> list[LogEntry]:
        return [e for e in stored if after < e.version <= up_to]

    trip.keep_recent(args.keep, older)
    updates = peer_updates(trip.state_update(), args.peers, args.rounds, args.overwrite)
    tenth = max(1, len(updates) // 10)
    times: list[float] = []
    if traced:
        tracemalloc.start()
    held = 0
    for n, update in enumerate(updates):
        if traced and n == tenth:
            held = tracemalloc.get_traced_memory()[0]
        t0 = time.process_time()
        result = trip.apply_remote_update(update, user_id="u", update_id=f"y{n}", now_ms=n)
        times.append(time.process_time() - t0)
        if result.change is not None and not traced:  # what the shell appends to storage
            change = result.change
            stored.append(LogEntry(change.version, change.update, change.meta))
    if traced:
        held = tracemalloc.get_traced_memory()[0] - held
        tracemalloc.stop()
    return times, held, trip


def measure(args: argparse.Namespace) -> dict[str, float]:
    times, _, trip = run(args, traced=False)
    _, held, _ = run(args, traced=True)
    tenth = max(1, len(times) // 10)
    return {
        "updates": len(times),
        "keys": len(trip.fields()),
        "us_per_update": round(1e6 * sum(times) / len(times), 1),
        "first_tenth_us": round(1e6 * sum(times[:tenth]) / tenth, 1),
        "last_tenth_us": round(1e6 * sum(times[-tenth:]) / tenth, 1),
        "held_bytes_per_update": round(held / (len(times) - tenth)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--keep", type=int, default=256, help="history_window_updates")
    parser.add_argument("--overwrite", action="store_true", help="each peer sets one key")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = measure(args)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['updates']} peer updates, {result['keys']} keys at the end: "
        f"{result['us_per_update']} us CPU per update (first tenth "
        f"{result['first_tenth_us']} us, last tenth {result['last_tenth_us']} us); "
        f"Python memory held {result['held_bytes_per_update']} bytes per update"
    )


if __name__ == "__main__":
    main()
