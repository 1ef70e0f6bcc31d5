"""Every issue-12 target in one table: ours beside the peers and beside the issue's figures.

Runs, in one sitting on this machine (so only ratios measured together count):

1. the peers matrix (``bench/peers.sh``: this server as ``py`` beside y-websocket-server,
   Hocuspocus+SQLite and pycrdt-websocket, server pinned to CPU 0), medians of ``--reps``;
2. the JSON path, ``bench/trip_updates.py --procs 2 --pin --updates 200`` (one trip with 50
   editors; 100 trips; the server on CPU 0, two load generator processes on the other
   core), once as the spec's examples connect and once with ``--batching``;
3. chat, ``bench/chat_stream.py --scenario paced --rate 200`` (2,000 chunks, 100 subscribers);
4. memory, ``bench/room_memory.py`` (2,000 trips opened once and unloaded) and
   ``bench/idle_connections.py`` (``--connections`` idle authenticated JSON sockets);
5. the churn soak, ``bench/churn_soak.py`` (``--soak-minutes``, 12 by default);

then prints one markdown table: each target, the issue's figure on commit 1a4a1e0, ours,
the peer it is measured against, and whether it is met.

    bench/compare.sh [--reps 3] [--connections 10000] [--out DIR] [--soak-minutes 12]
                     [--skip peers,json,chat,memory,churn]
    bench/compare.sh --peers-results DIR   # reuse a matrix already run

Run by hand; the table goes in notes and the README, never in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = os.environ.get("PYTHON", str(ROOT / ".venv" / "bin" / "python"))
SCENARIOS = ("s10x200", "s50x100", "s100x50")
SCHEDULE_S = {"s10x200": 10.0, "s50x100": 5.0, "s100x50": 5.0}  # edits x interval
# The issue's figures (commit 1a4a1e0, quiet machine): ours, then Hocuspocus+SQLite.
ISSUE = {
    "s10x200": "p99 27.8 ms, CPU 0.23 (Hocuspocus 9.0 ms, 0.12)",
    "s50x100": "p99 165 ms, CPU 0.92 (Hocuspocus 14.6 ms, 0.41)",
    "s100x50": "p99 1,389 ms, CPU 0.93 (Hocuspocus 27 ms, 0.48)",
    "idle1000-1doc": "admit 11.5 s, 19.0 CPU-s (Hocuspocus 5.7 s, 4.0 CPU-s)",
    "one-trip": "288 updates/s, p99 290 ms, ~3.5 ms CPU/update",
    "100-trips": "1,530 updates/s, p99 128 ms, ~0.7 ms CPU/update",
    "chat": "p99 11.8 s",
    "rooms": "never unloaded (~16 KiB per trip kept)",
    "idle-json": "~81 KiB per connection",
    "churn": "+86 % RSS in 12 min, CPU 59 -> 93 %",
}


@dataclass
class Row:
    target: str
    issue: str
    ours: str
    peer: str
    met: bool | None  # None: not measured

    def markdown(self) -> str:
        mark = {True: "yes", False: "**no**", None: "not measured"}[self.met]
        return f"| {self.target} | {self.issue} | {self.ours} | {self.peer} | {mark} |"


def run(cmd: list[str], **env: str) -> str:
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, check=True, text=True
    )
    return done.stdout


def last_json(text: str) -> Any:
    """The last JSON document a bench printed (it may print progress before it)."""
    start = max(text.rfind("\n[", 0), text.rfind("\n{", 0))
    return json.loads(text[start + 1 :] if start >= 0 else text)


# -- the peers matrix ------------------------------------------------------------------------


def medians(results: Path, scenario: str, server: str) -> dict[str, float] | None:
    runs = []
    for path in sorted(results.glob(f"{scenario}.{server}.r*.json")):
        data = json.loads(path.read_text())
        lat = data.get("latencyMs") or {}
        srv = data.get("server") or {}
        runs.append(
            {
                "converged": 1.0 if data.get("allConverged") else 0.0,
                "converge_s": data.get("convergeS") or float("inf"),
                "p99_ms": lat.get("p99", float("inf")),
                "cpu_s": srv.get("cpuSDuringEdits") or srv.get("cpuS") or float("inf"),
                "admit_s": data.get("connectAndSyncS") or float("inf"),
                "kb_per_conn": data.get("idleKBPerConnection") or float("inf"),
            }
        )
    if not runs:
        return None
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def peers_rows(results: Path) -> list[Row]:
    rows = []
    for sc in SCENARIOS:
        ours, hocus = medians(results, sc, "py"), medians(results, sc, "hocus-sqlite")
        if ours is None or hocus is None:
            rows.append(Row(f"{sc}: p99, converge, CPU", ISSUE[sc], "-", "-", None))
            continue
        limit = 1.1 * SCHEDULE_S[sc]
        met = (
            ours["converged"] == 1.0
            and ours["p99_ms"] <= hocus["p99_ms"]
            and ours["converge_s"] <= limit
            and ours["cpu_s"] <= hocus["cpu_s"]
        )
        rows.append(
            Row(
                f"{sc}: p99 <= Hocuspocus, converge <= {limit:.1f} s, CPU-s <= Hocuspocus",
                ISSUE[sc],
                f"p99 {ours['p99_ms']:.1f} ms, {ours['converge_s']:.2f} s, "
                f"{ours['cpu_s']:.2f} CPU-s",
                f"p99 {hocus['p99_ms']:.1f} ms, {hocus['converge_s']:.2f} s, "
                f"{hocus['cpu_s']:.2f} CPU-s",
                met,
            )
        )
    ours, hocus = (
        medians(results, "idle1000-1doc", "py"),
        medians(results, "idle1000-1doc", "hocus-sqlite"),
    )
    if ours is None or hocus is None:
        rows.append(Row("idle1000-1doc", ISSUE["idle1000-1doc"], "-", "-", None))
    else:
        met = (
            ours["admit_s"] <= hocus["admit_s"]
            and ours["cpu_s"] <= 1.5 * hocus["cpu_s"]
            and ours["kb_per_conn"] <= 35
        )
        rows.append(
            Row(
                "idle1000-1doc: admit <= Hocuspocus, CPU <= 1.5x, <= 35 KB/conn",
                ISSUE["idle1000-1doc"],
                f"{ours['admit_s']:.1f} s, {ours['cpu_s']:.1f} CPU-s, {ours['kb_per_conn']:.0f} KB",
                f"{hocus['admit_s']:.1f} s, {hocus['cpu_s']:.1f} CPU-s, "
                f"{hocus['kb_per_conn']:.0f} KB",
                met,
            )
        )
    return rows


# -- the JSON path, chat, memory ---------------------------------------------------------------


def markdown_rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=False))
        for line in lines[2:]
    ]


def json_rows() -> list[Row]:
    """The JSON path twice: editors as the spec's examples write them, then asking
    for ``message_batching`` (events that meet go to a client in one batch frame)."""
    rows = []
    for batching in (False, True):
        command = [PYTHON, "bench/trip_updates.py", "--procs", "2", "--pin", "--updates", "200"]
        results = {
            r["scenario"]: r
            for r in markdown_rows(run(command + (["--batching"] if batching else [])))
        }
        how = ", batching" if batching else ""
        for name, rate, deliveries in (("one-trip", 3000, 49), ("100-trips", 10_000, 0)):
            r = results.get(name)
            budget = 100 + 10 * deliveries
            label = f"JSON {name}{how}: >= {rate:,}/s, p99 <= 50 ms, CPU <= {budget} us/update"
            if r is None:
                rows.append(Row(label, ISSUE[name], "-", "-", None))
                continue
            per_s, p99 = float(r["updates/s"]), float(r["p99 ms"])
            cpu_us = cpu_per_update_us(r)
            met = per_s >= rate and p99 <= 50 and cpu_us is not None and cpu_us <= budget
            rows.append(
                Row(
                    label,
                    ISSUE[name],
                    f"{per_s:,.0f}/s, p99 {p99:g} ms, "
                    + (f"{cpu_us:,.0f} us/update" if cpu_us is not None else "CPU ?"),
                    "-",
                    met,
                )
            )
    return rows


def cpu_per_update_us(r: dict[str, str]) -> float | None:
    for key, value in r.items():
        if "us" in key and "update" in key:
            return float(value.split()[0].replace(",", ""))
    if "server CPU" in r and "s" in r and "confirmed" in r:
        share = float(r["server CPU"].rstrip("%")) / 100
        return share * float(r["s"]) / float(r["confirmed"]) * 1e6
    return None


def chat_rows() -> list[Row]:
    out = run([PYTHON, "bench/chat_stream.py", "--scenario", "paced", "--rate", "200"])
    r = last_json(out)[0]
    met = r["p99_ms"] <= 100 and r["in_order_no_gaps_no_duplicates"]
    return [
        Row(
            "chat: 2,000 chunks to 100 subscribers at 200/s, p99 <= 100 ms, in order",
            ISSUE["chat"],
            f"p99 {r['p99_ms']:g} ms, in order: {r['in_order_no_gaps_no_duplicates']}",
            "-",
            met,
        )
    ]


def memory_rows(connections: int) -> list[Row]:
    rooms = last_json(run([PYTHON, "bench/room_memory.py", "--trips", "2000", "--json"]))
    idle = last_json(
        run([PYTHON, "bench/idle_connections.py", "--connections", str(connections), "--json"])
    )
    return [
        Row(
            "2,000 trips opened and unloaded: RSS within 10 % of baseline",
            ISSUE["rooms"],
            f"{rooms['after_unload_pct']:+.1f} %",
            "-",
            rooms["after_unload_pct"] <= 10,
        ),
        Row(
            f"{connections:,} idle JSON connections: <= 15 KB each",
            ISSUE["idle-json"],
            f"{idle['kb_per_connection']:g} KB",
            "-",
            idle["kb_per_connection"] <= 15 and idle["still_open"] == connections,
        ),
    ]


def churn_rows(minutes: float) -> list[Row]:
    """The churn soak: drift after warm-up, CPU per update flat, memory given back."""
    r = last_json(run([PYTHON, "bench/churn_soak.py", "--minutes", f"{minutes:g}", "--json"]))
    first, second = r["cpu_us_per_update_first_half"], r["cpu_us_per_update_second_half"]
    flat = first is not None and second is not None and second <= 1.1 * first
    met = (
        r["drift_pct"] < 5
        and flat
        and r["settled_vs_baseline_pct"] <= 10
        and r["failure_count"] == 0
    )
    return [
        Row(
            f"churn soak ({minutes:g} min): RSS drift < 5 %, CPU flat, back near baseline",
            ISSUE["churn"],
            f"{r['confirmed']:,} updates, drift {r['drift_pct']:+.1f} %, CPU {first} -> {second}"
            f" us/update, after unload {r['settled_vs_baseline_pct']:+.1f} % of baseline",
            "-",
            met,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--peers-results", type=Path, help="reuse this matrix' results")
    parser.add_argument("--out", type=Path, help="where the matrix writes (default: a temp dir)")
    parser.add_argument("--soak-minutes", type=float, default=12.0, help="the churn soak's length")
    parser.add_argument("--skip", default="", help="comma-separated: peers,json,chat,memory,churn")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    rows: list[Row] = []
    if "peers" not in skip:
        results = args.peers_results
        if results is None:
            results = args.out or Path(tempfile.mkdtemp(prefix="tripsage-compare."))
            run(
                ["bash", "bench/peers.sh", str(results)],
                REPS=str(args.reps),
                SCENARIOS=" ".join((*SCENARIOS, "idle1000-1doc")),
                SERVERS="py hocus-sqlite ywss pycrdt",
            )
        rows += peers_rows(results)
    steps: list[tuple[str, Callable[[], list[Row]]]] = [
        ("json", json_rows),
        ("chat", chat_rows),
        ("memory", lambda: memory_rows(args.connections)),
        ("churn", lambda: churn_rows(args.soak_minutes)),
    ]
    for name, step in steps:
        if name not in skip:
            rows += step()
    print("| target | issue (1a4a1e0) | ours | peer (same run) | met |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(row.markdown())


if __name__ == "__main__":
    main()
