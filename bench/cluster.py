"""Benchmark: cluster mode, one node against two, on two workloads.

Starts a PostgreSQL and a Redis of its own (``tests/services.py``: loopback, temp
dir), then for 1 and for 2 server nodes on a fresh schema each:

- ``--workload json`` (the across-trips JSON workload): ``--editors`` editors, each
  on its own trip, trip *i* served by node *i mod n*, every editor sending
  ``--updates`` optimistic updates back to back (the next after the previous
  outcome), as ``bench/trip_updates.py`` does on one node; Python load generator
  processes (``--procs`` per node), or Node ones with ``--node``
  (``tests/node/json_editors.mjs``). Counts confirmed updates. ``--follow`` also
  opens every trip on every other node, which then adopts each of its commits
  (the cost of a room followed where it has no clients).
- ``--workload yjs`` (the Yjs fan-out): one trip, ``--peers`` light y-websocket
  clients spread over the nodes, ``--writers`` of them each making ``--updates``
  edits, the next once every other client has the previous one
  (``tests/node/yjs_fanout.mjs``); ``--one-entry`` puts the writers on node 0 (the
  readers stay spread). Counts deliveries (an edit reaching one client); latency is
  from an edit to its last delivery.

With ``--pin`` node *k* runs on CPU *k* alone; the load generators, PostgreSQL and
Redis share the machine. Reports throughput, p50/p99, and the CPU per update (or
delivery) of the nodes, the load generators, PostgreSQL and Redis (from ``/proc``),
and the two-node / one-node throughput ratio.

    .venv/bin/python -m bench.cluster [--workload json|yjs] [--editors 100]
        [--updates 100] [--procs 2] [--node] [--peers 100] [--writers 10]
        [--one-entry] [--pin]

Run by hand; numbers go in notes, never in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchserver import SECRET, free_port, start_server
from bench.nodeload import NodeEditors, NodeLoad
from bench.trip_updates import close_workers, cpu_seconds, create_trips, worker
from tests.services import PostgresServer, RedisServer, fresh_postgres_url, services_dir
from tripsage_sync.api.transport.auth import JwtAuthority


@dataclasses.dataclass
class Engines:
    postgres: PostgresServer
    redis: RedisServer

    def traffic(self) -> dict[str, int]:
        """Counters to divide by the work done: PostgreSQL's WAL bytes, Redis's commands
        and bytes in and out."""
        with psycopg.connect(self.postgres.url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        stats = redis.Redis.from_url(self.redis.url).info("stats")
        return {
            "wal_bytes": int(row[0]) if row else 0,
            "redis_commands": int(stats["total_commands_processed"]),
            "redis_bytes_in": int(stats["total_net_input_bytes"]),
            "redis_bytes_out": int(stats["total_net_output_bytes"]),
        }

    def postgres_pid(self) -> int:
        """The postmaster's pid (first line of its ``postmaster.pid``)."""
        return int((self.postgres.base / "data" / "postmaster.pid").read_text().split()[0])


def process_tree(root: int) -> list[int]:
    """``root`` and its children (PostgreSQL's backends are the postmaster's children)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == root:
            children.append(int(stat.parent.name))
    return [root, *children]


def group_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def run(nodes: int, args: argparse.Namespace, engines: Engines) -> dict[str, Any]:
    database_url = fresh_postgres_url(engines.postgres.url)
    ports = [free_port() for _ in range(nodes)]
    servers = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, port in enumerate(ports):
            servers.append(
                start_server(
                    port,
                    Path(tmp) / f"unused{index}.db",
                    pin_cpu=index if args.pin else None,
                    database_url=database_url,
                    redis_url=engines.redis.url,
                    node_id=f"bench-{index}",
                    rate_limit_yjs_frames_per_min="0",
                )
            )
        try:
            return _measure(nodes, ports, [s.pid for s in servers], args, engines)
        finally:
            for server in servers:
                server.terminate()
                server.wait(30)


def _measure(
    nodes: int, ports: list[int], pids: list[int], args: argparse.Namespace, engines: Engines
) -> dict[str, Any]:
    if args.workload == "yjs":
        return _fanout(nodes, ports, pids, args, engines)
    layout = [(f"editor{i}", f"trip{i}") for i in range(args.editors)]
    for node, port in enumerate(ports):  # through the node that serves it: loaded there only
        mine = [pair for i, pair in enumerate(layout) if i % nodes == node]
        create_trips(port, JwtAuthority(SECRET), {trip: [user] for user, trip in mine})
        if args.follow:  # and loaded on every other node too, which then adopts each commit
            for other in ports:
                if other != port:
                    open_trips(other, [trip for _, trip in mine])
    context = mp.get_context("spawn")
    pipes: list[Any] = []
    workers: list[Any] = []
    for node, port in enumerate(ports):
        mine = [pair for i, pair in enumerate(layout) if i % nodes == node]
        for share in (mine[i :: args.procs] for i in range(args.procs)):
            if not share:
                continue
            if args.node:
                editors = NodeEditors(port, share, args.updates, JwtAuthority(SECRET), [])
                pipes.append(editors)
                workers.append(editors)
                continue
            ours, theirs = context.Pipe()
            process = context.Process(
                target=worker, args=(port, share, args.updates, [], None, theirs)
            )
            process.start()
            pipes.append(ours)
            workers.append(process)
    reports, cpu = _timed(pipes, [w.pid for w in workers], pids, engines)
    elapsed, latencies = close_workers(pipes, workers, reports)
    return _row(nodes, elapsed, len(latencies), latencies, cpu)


def open_trips(port: int, trips: list[str]) -> None:
    headers = {"Authorization": f"Bearer {JwtAuthority(SECRET).mint('owner', now_s=time.time())}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
        for trip in trips:
            http.get(f"/api/trips/{trip}").raise_for_status()


def _fanout(
    nodes: int, ports: list[int], pids: list[int], args: argparse.Namespace, engines: Engines
) -> dict[str, Any]:
    """One trip, ``--peers`` light y-websocket clients spread over the nodes, ``--writers``
    of them editing (``tests/node/yjs_fanout.mjs``)."""
    authority = JwtAuthority(SECRET)
    users = [f"peer{i}" for i in range(args.peers)]
    create_trips(ports[0], authority, {"fanout": users})
    plan = {
        "urls": [f"ws://127.0.0.1:{port}/ws/yjs" for port in ports],
        "trip": "fanout",
        "tokens": [authority.mint(user, now_s=time.time()) for user in users],
        "writers": args.writers,
        "edits": args.updates,
        "oneEntry": args.one_entry,
    }
    load = NodeLoad("yjs_fanout.mjs", plan)
    (report,), cpu = _timed([load], [load.pid], pids, engines)
    load.send("close")
    load.join(30)
    elapsed = (report["end"] - report["start"]) / 1000
    latencies = sorted(report["latencies"])
    row = _row(nodes, elapsed, report["deliveries"], latencies, cpu)
    row["edits_per_s"] = round(len(latencies) / elapsed, 1)
    return row


def _timed(
    pipes: list[Any], load_pids: list[int], pids: list[int], engines: Engines
) -> tuple[list[Any], dict[str, Any]]:
    """Wait until every load generator is ready, let them go, and gather their reports;
    with the CPU seconds each node, the load, PostgreSQL and Redis spent meanwhile."""
    for pipe in pipes:
        if pipe.recv() != "ready":
            raise SystemExit("a load generator failed to start")
    groups = {
        "load": load_pids,
        "postgres": process_tree(engines.postgres_pid()),
        "redis": [engines.redis.process.pid],
    }
    nodes_start = [cpu_seconds(pid) for pid in pids]
    others_start = {name: group_cpu(members) for name, members in groups.items()}
    traffic_start = engines.traffic()
    for pipe in pipes:
        pipe.send("go")
    reports = [pipe.recv() for pipe in pipes]
    cpu: dict[str, Any] = {
        name: group_cpu(groups[name]) - start for name, start in others_start.items()
    }
    cpu["nodes"] = [cpu_seconds(pid) - start for pid, start in zip(pids, nodes_start, strict=True)]
    cpu["traffic"] = {k: v - traffic_start[k] for k, v in engines.traffic().items()}
    return reports, cpu


def _row(
    nodes: int, elapsed: float, count: int, latencies: list[float], cpu: dict[str, Any]
) -> dict[str, Any]:
    """A result: ``count`` things done (confirmed updates, or deliveries) per second and
    the CPU per thing; ``latencies`` sorted."""
    node_cpu: list[float] = cpu.pop("nodes")
    traffic: dict[str, int] = cpu.pop("traffic")
    return {
        "nodes": nodes,
        "count": count,
        "seconds": round(elapsed, 2),
        "per_s": round(count / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "node_cpu_pct": [round(100 * c / elapsed) for c in node_cpu],
        "node_cpu_us": round(1e6 * sum(node_cpu) / count, 1),
        **{f"{name}_cpu_us": round(1e6 * c / count, 1) for name, c in cpu.items()},
        **{f"{name}_per": round(v / count, 2) for name, v in traffic.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--editors", type=int, default=100)
    parser.add_argument("--updates", type=int, default=100, help="updates per editor")
    parser.add_argument("--procs", type=int, default=1, help="load generator processes per node")
    parser.add_argument("--pin", action="store_true", help="node k on CPU k alone")
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    parser.add_argument(
        "--node", action="store_true", help="load generators in Node (tests/node), not Python"
    )
    parser.add_argument("--workload", choices=("json", "yjs"), default="json")
    parser.add_argument(
        "--follow", action="store_true", help="json: every trip loaded on every node too"
    )
    parser.add_argument("--peers", type=int, default=100, help="yjs: clients of the trip")
    parser.add_argument("--writers", type=int, default=10, help="yjs: clients that edit")
    parser.add_argument(
        "--one-entry", action="store_true", help="yjs: every writer on node 0 (readers spread)"
    )
    args = parser.parse_args()
    with services_dir() as base:
        engines = Engines(
            PostgresServer.start(base / "postgres"), RedisServer.start(base / "redis")
        )
        try:
            results = [run(nodes, args, engines) for nodes in (1, 2)]
        finally:
            engines.redis.stop()
            engines.postgres.stop("immediate")
    if args.json:
        for row in results:
            print(json.dumps(row))
        return
    what = "delivery" if args.workload == "yjs" else "confirmed update"
    counted = "deliveries" if args.workload == "yjs" else "updates"
    print(f"{args.workload} workload; CPU us per {what}")
    print(
        f"| nodes | {counted}/s | p50 ms | p99 ms | node CPU % |"
        " CPU us: nodes / load / PostgreSQL / Redis |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        costs = " / ".join(
            str(r[f"{name}_cpu_us"]) for name in ("node", "load", "postgres", "redis")
        )
        print(
            f"| {r['nodes']} | {r['per_s']:,} | {r['p50_ms']} | {r['p99_ms']} |"
            f" {'+'.join(map(str, r['node_cpu_pct']))} | {costs} |"
        )
    print("\n| nodes | WAL bytes | Redis commands | Redis bytes in | Redis bytes out |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['nodes']} | {r['wal_bytes_per']} | {r['redis_commands_per']} |"
            f" {r['redis_bytes_in_per']} | {r['redis_bytes_out_per']} |"
        )
    print(f"(per {what})")
    ratio = results[1]["per_s"] / results[0]["per_s"]
    print(f"\ntwo nodes / one node: {ratio:.2f}x throughput")


if __name__ == "__main__":
    main()
