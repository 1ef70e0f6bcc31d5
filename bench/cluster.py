"""Benchmark: cluster mode, one node against two, on the across-trips JSON workload.

Starts a PostgreSQL and a Redis of its own (``tests/services.py``: loopback, temp
dir), then for 1 and for 2 server nodes on a fresh schema each: ``--editors``
editors, each on its own trip, trip *i* served by node *i mod n*, every editor
sending ``--updates`` optimistic updates back to back (the next after the previous
outcome), as ``bench/trip_updates.py`` does on one node. With ``--pin`` node *k*
runs on CPU *k* alone; the load generator processes, PostgreSQL and Redis share the
machine. Reports confirmed updates/s, p50/p99 from ``optimistic_update_start`` to
``optimistic_update_confirmed``, the nodes' own CPU per update (from ``/proc``), and
the two-node / one-node throughput ratio.

    .venv/bin/python bench/cluster.py [--editors 100] [--updates 100] [--procs 2] [--pin]

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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchserver import SECRET, free_port, start_server
from bench.trip_updates import close_workers, cpu_seconds, create_trips, worker
from tests.services import PostgresServer, RedisServer, fresh_postgres_url, services_dir
from tripsage_sync.api.transport.auth import JwtAuthority


@dataclasses.dataclass
class Engines:
    postgres: PostgresServer
    redis: RedisServer

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
    layout = [(f"editor{i}", f"trip{i}") for i in range(args.editors)]
    create_trips(ports[0], JwtAuthority(SECRET), {trip: [user] for user, trip in layout})
    context = mp.get_context("spawn")
    pipes, workers = [], []
    for node, port in enumerate(ports):
        mine = [pair for i, pair in enumerate(layout) if i % nodes == node]
        for share in (mine[i :: args.procs] for i in range(args.procs)):
            if not share:
                continue
            ours, theirs = context.Pipe()
            process = context.Process(
                target=worker, args=(port, share, args.updates, [], None, theirs)
            )
            process.start()
            pipes.append(ours)
            workers.append(process)
    for pipe in pipes:
        if pipe.recv() != "ready":
            raise SystemExit("a worker failed to start")
    groups = {
        "load": [w.pid for w in workers if w.pid is not None],
        "postgres": process_tree(engines.postgres_pid()),
        "redis": [engines.redis.process.pid],
    }
    cpu_start = [cpu_seconds(pid) for pid in pids]
    others_start = {name: group_cpu(members) for name, members in groups.items()}
    for pipe in pipes:
        pipe.send("go")
    reports = [pipe.recv() for pipe in pipes]
    cpu = [cpu_seconds(pid) - start for pid, start in zip(pids, cpu_start, strict=True)]
    others = {name: group_cpu(groups[name]) - start for name, start in others_start.items()}
    elapsed, latencies = close_workers(pipes, workers, reports)
    total = len(latencies)
    return {
        "nodes": nodes,
        "editors": args.editors,
        "confirmed": total,
        "seconds": round(elapsed, 2),
        "updates_per_s": round(total / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[min(total - 1, int(total * 0.99))], 1),
        "node_cpu_pct": [round(100 * c / elapsed) for c in cpu],
        "node_cpu_us_per_update": round(1e6 * sum(cpu) / total),
        **{f"{name}_cpu_us_per_update": round(1e6 * c / total) for name, c in others.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--editors", type=int, default=100)
    parser.add_argument("--updates", type=int, default=100, help="updates per editor")
    parser.add_argument("--procs", type=int, default=1, help="load generator processes per node")
    parser.add_argument("--pin", action="store_true", help="node k on CPU k alone")
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
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
    print(
        "| nodes | updates/s | p50 ms | p99 ms | node CPU % | CPU us/update:"
        " nodes / load / PostgreSQL / Redis |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        costs = " / ".join(
            str(r[f"{name}_cpu_us_per_update"]) for name in ("node", "load", "postgres", "redis")
        )
        print(
            f"| {r['nodes']} | {r['updates_per_s']:,} | {r['p50_ms']} | {r['p99_ms']} |"
            f" {'+'.join(map(str, r['node_cpu_pct']))} | {costs} |"
        )
    ratio = results[1]["updates_per_s"] / results[0]["updates_per_s"]
    print(f"\ntwo nodes / one node: {ratio:.2f}x throughput")


if __name__ == "__main__":
    main()
