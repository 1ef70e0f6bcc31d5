"""Property test over real server processes (issue 13): random edits on random nodes,
kill -9 and reconnects; every replica ends identical and every confirmed edit is there.

Three nodes share PostgreSQL and Redis; JSON devices (alice owns the trip, bob and carol
edit it) and, in some examples, a stock Yjs peer are spread over them. A step: a device
edits a scalar (last-write-wins) or inserts a token into ``notes`` (a text merge); a node
is killed (kill -9) or started again on its port; a device reconnects to a live node and
re-sends, same ``updateId``, what has no final outcome (the spec's offline queue; a device
whose node died queues its edits), or everything; the peer pushes to ``itinerary``; all
settle (a ``canRetry`` rollback is sent again after ``retryAfter``). At the end, all nodes
up and all devices connected: every ``GET``, fresh join, device view (join answer,
broadcasts, own confirmations) and the peer show one version and the same fields; every
node answers ``sync_request`` from 1 with the same changes 2..V; every connection was told
versions in order, once each, with no gap; an ``updateId`` has one final outcome, repeated
to every re-send (only retryable rollbacks before it), and a connection alive at the end
one per send; a field holds its confirmed value of highest ``serverVersion``, ``notes``
every confirmed token, ``itinerary`` every push.

Hypothesis and asyncio: the test function is synchronous, so Hypothesis calls it once per
example, and each call runs its schedule in an event loop of its own (``asyncio.run``),
drawing steps from ``st.data()`` as it goes (draws depend on earlier draws, never on
timing, so an example replays). The nodes come from a function-scoped fixture, started
once and shared by the examples (``HealthCheck.function_scoped_fixture`` warns of that;
it is the point here); each example has a trip of its own and first restarts the nodes the
previous one killed. Examples are derandomized (the same schedules in every CI run) and
not shrunk (a replay costs seconds): a failure reports its schedule as drawn.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from tests.api.test_resume import sync_request
from tests.api.test_trips import OUTCOMES, create_trip, get_trip
from tests.api.yjspeer import NodePeer
from tests.cluster.conftest import Cluster
from tests.conftest import ServerProcess
from tests.wsclient import Client, open_client
from tripsage_sync.sync.wire import iso_ms

NODES: Final = 3
USERS: Final = ("alice", "bob", "carol")
SCALARS: Final = ("name", "destination", "budget")
NOTES: Final = "Pack light."
FIELDS: Final = dict(name="Europe", destination="Paris", budget=2000, notes=NOTES, itinerary=[])
STEPS: Final = ["edit"] * 5 + ["text"] * 2 + ["reconnect"] * 2 + ["kill", "restart", "settle"]
WAIT_S: Final = 15.0
CONFIRMED: Final = "optimistic_update_confirmed"
_trip_ids = itertools.count()


def _retryable(outcome: dict[str, Any]) -> bool:
    return outcome["type"] == "optimistic_update_rollback" and outcome["canRetry"] is True


@dataclass
class Connection:
    """One WebSocket of a device: what it sent, was answered and was told."""

    client: Client
    node: int
    version: int  # the join answer's
    view: dict[str, tuple[int, Any]]  # field -> (version, value), as this connection saw it
    sent: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    told: list[int] = field(default_factory=list)  # broadcast versions, in arrival order
    confirmed: set[int] = field(default_factory=set)  # serverVersions of its confirmations
    alive: bool = True
    pump: asyncio.Task[None] | None = None

    def apply(self, version: int, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            if version >= self.view.get(name, (0, None))[0]:
                self.view[name] = (version, value)

    def fields(self) -> dict[str, Any]:
        return {name: value for name, (_, value) in self.view.items()}

    def at(self) -> int:
        return max([self.version, *self.told, *self.confirmed])


class Run:
    """One example: its trip, devices and Yjs peer, and every outcome received."""

    def __init__(self, nodes: list[ServerProcess], data: st.DataObject) -> None:
        self.nodes, self.data = nodes, data
        self.trip_id = f"trip-p{next(_trip_ids)}"
        self.live = set(range(NODES))
        self.devices = [Device(self, user) for user in USERS]
        self.outcomes: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self.progress = asyncio.Event()  # set by the pumps on every message and close
        self.peer: NodePeer | None = None
        self.pushed: list[str] = []
        self.edits = itertools.count()

    async def step(self) -> None:
        kind = self.data.draw(st.sampled_from([*STEPS, "yjs"] if self.peer else STEPS))
        if kind in ("edit", "text"):
            device = self.data.draw(st.sampled_from(self.devices))
            name = self.data.draw(st.sampled_from(SCALARS)) if kind == "edit" else "notes"
            at_end = self.data.draw(st.booleans()) if kind == "text" else False
            await device.edit(name, next(self.edits), at_end=at_end)
        elif kind == "reconnect":
            device = self.data.draw(st.sampled_from(self.devices))
            node = self.data.draw(st.sampled_from(sorted(self.live)))
            await device.connect(node, resend_all=self.data.draw(st.booleans()))
        elif kind == "kill" and len(self.live) > 1:
            node = self.data.draw(st.sampled_from(sorted(self.live)))
            self.nodes[node].stop(signal.SIGKILL)
            self.live.discard(node)
            for device in self.devices:  # their sockets are gone, whenever the pump notices
                if device.conn is not None and device.conn.node == node:
                    device.conn.alive = False
        elif kind == "restart" and len(self.live) < NODES:
            dead = set(range(NODES)) - self.live
            await self.restart(self.data.draw(st.sampled_from(sorted(dead))))
        elif kind == "settle":
            await self.settle()
        elif kind == "yjs" and self.peer is not None:
            self.pushed.append(f"y{next(self.edits)}")
            await self.peer.send({"cmd": "push", "key": "itinerary", "value": self.pushed[-1]})

    async def restart(self, node: int) -> None:
        await asyncio.to_thread(self.nodes[node].start)  # same port, same database
        self.live.add(node)

    async def settle(self) -> None:
        """Until every connected device has a final outcome for everything it queued."""
        async with asyncio.timeout(WAIT_S):
            while True:
                self.progress.clear()
                online = [d for d in self.devices if d.conn is not None and d.conn.alive]
                waiting = any(d.in_flight() for d in online)
                retry = [d for d in online if d.queue and not d.in_flight()]
                if not waiting and not retry:
                    return
                if not waiting:
                    # The backoff the rollbacks asked for (retryAfter), not a wait for an event.
                    backoff_ms = max(d.retry_after_ms[u] for d in retry for u in d.queue)
                    await asyncio.sleep(backoff_ms / 1000)
                    for device in retry:
                        await device.send(list(device.queue.values()))
                    continue
                await self.progress.wait()


class Device:
    """A user's device: its offline queue and its current connection."""

    def __init__(self, run: Run, user: str) -> None:
        self.run, self.user = run, user
        self.queue: dict[str, dict[str, Any]] = {}  # updateId -> message, no final outcome yet
        self.log: dict[str, dict[str, Any]] = {}  # every update it made
        self.retry_after_ms: dict[str, int] = {}
        self.conn: Connection | None = None
        self.closed: list[Connection] = []

    def __repr__(self) -> str:  # as Hypothesis prints a drawn device
        return self.user

    async def connect(self, node: int, *, resend_all: bool = False) -> None:
        if self.conn is not None:
            await self.conn.client.close()  # a dropped link: its in-flight answers are lost
            assert self.conn.pump is not None
            await self.conn.pump
            self.closed.append(self.conn)
        server, trip_id = self.run.nodes[node], self.run.trip_id
        session = f"s-{trip_id}-{self.user}-{len(self.closed)}"
        client, _, _ = await open_client(server, self.user, session)
        await client.send({"type": "collaboration_session_start", "payload": {"tripId": trip_id}})
        started = (await client.recv_type("collaboration_session_started", "error"))["payload"]
        assert "version" in started, started
        view = {name: (started["version"], value) for name, value in started["fields"].items()}
        self.conn = Connection(client, node, started["version"], view)
        self.conn.pump = asyncio.create_task(self.pump(self.conn))
        await self.send(list((self.log if resend_all else self.queue).values()))

    async def edit(self, name: str, seq: int, *, at_end: bool) -> None:
        update_id = f"{self.run.trip_id}-{self.user}-u{seq}"
        conn = self.conn or self.closed[-1]
        payload: dict[str, Any] = {
            "updateId": update_id,
            "tripId": self.run.trip_id,
            "fieldName": name,
            "optimisticValue": 3000 + seq if name == "budget" else f"{name}-{seq}",
            "expectedVersion": conn.at(),
            "clientTimestamp": iso_ms(int(time.time() * 1000)),
        }
        if name == "notes":  # a token inserted into the text as this device last saw it
            seen = payload["previousValue"] = conn.fields()["notes"]
            payload["optimisticValue"] = f"{seen} [{seq}]" if at_end else f"[{seq}] {seen}"
        message = {"id": "m-" + update_id, "type": "optimistic_update_start", "payload": payload}
        self.queue[update_id] = self.log[update_id] = message
        await self.send([message])

    async def send(self, messages: list[dict[str, Any]]) -> None:
        conn = self.conn
        for message in messages:
            if conn is None or not conn.alive:
                return  # offline: it stays queued
            conn.sent[message["payload"]["updateId"]] += 1
            with contextlib.suppress(ConnectionClosed):  # its node died: the pump sees it
                await conn.client.send(message)

    def in_flight(self) -> bool:
        conn = self.conn
        return conn is not None and any(conn.sent[u] > conn.outcomes[u] for u in self.queue)

    async def pump(self, conn: Connection) -> None:
        """Read the connection until it closes, recording outcomes and changes."""
        try:
            for message in conn.client.backlog:  # came with the join answer
                self.receive(conn, message)
            async for raw in conn.client.ws:
                self.receive(conn, json.loads(raw))
                self.run.progress.set()
        except ConnectionClosed:
            pass  # its node was killed
        finally:
            conn.alive = False
            self.run.progress.set()

    def receive(self, conn: Connection, message: dict[str, Any]) -> None:
        kind, payload = message.get("type"), message.get("payload") or {}
        for inner in payload.get("messages", []) if kind == "batch" else []:
            self.receive(conn, inner)
        if payload.get("tripId") != self.run.trip_id:
            return
        if kind in OUTCOMES:
            outcome, update_id = {"type": kind, **payload}, payload["updateId"]
            conn.outcomes[update_id] += 1
            self.run.outcomes[update_id].append(outcome)
            if kind == CONFIRMED:
                conn.confirmed.add(version := payload["serverVersion"])
                conn.apply(version, {payload["fieldName"]: payload["confirmedValue"]})
            if _retryable(outcome):
                self.retry_after_ms[update_id] = payload.get("retryAfter") or 100
            else:
                self.queue.pop(update_id, None)
        elif kind == "trip_update_broadcast":
            conn.told.append(payload["version"])
            changes = {name: change["newValue"] for name, change in payload["changes"].items()}
            conn.apply(payload["version"], changes)


async def replay(node: ServerProcess, trip_id: str) -> tuple[dict[str, Any], list[Any]]:
    """A fresh client's join answer, and the payloads ``sync_request`` from 1 answers."""
    client, _, _ = await open_client(node, "carol", f"s-{trip_id}-check-{node.port}")
    try:
        events = await sync_request(client, 1, trip_id)
        answer = [{**e["payload"], "type": e["type"], "timestamp": None} for e in events]
        await client.send({"type": "collaboration_session_start", "payload": {"tripId": trip_id}})
        started = (await client.recv_type("collaboration_session_started"))["payload"]
    finally:
        await client.close()
    return started, answer


async def converged(run: Run) -> dict[str, Any]:
    """The trip once every node, device and the peer (with every item it pushed) agree."""
    deadline = time.monotonic() + WAIT_S
    while True:
        trips = [await get_trip(node, "alice", run.trip_id) for node in run.nodes]
        fields = trips[0]["fields"]
        seen = [d.conn.fields() for d in run.devices if d.conn is not None]
        if run.peer is not None:
            seen.append(next(e["trip"] for e in reversed(run.peer.events) if e["event"] == "doc"))
        agreed = all(t == trips[0] for t in trips) and all(v == fields for v in seen)
        if agreed and set(run.pushed) <= set(fields["itinerary"]):
            return trips[0]
        assert time.monotonic() < deadline, json.dumps([run.trip_id, trips, seen, run.pushed])
        await asyncio.sleep(0.05)  # polling other processes' state, not an event


def check_outcomes(run: Run, fields: dict[str, Any], version: int) -> None:
    """One final outcome per updateId, repeated to every re-send; confirmed values last."""
    latest: dict[str, tuple[int, Any]] = {}
    tokens: list[str] = []
    for device in run.devices:
        assert not device.queue, device.queue
        for update_id, message in device.log.items():
            got = run.outcomes[update_id]
            finals = [i for i, o in enumerate(got) if not _retryable(o)]
            assert finals, (update_id, got)
            final = got[finals[0]]
            again = [{**o, "processingTime": None} for o in got[finals[0] :]]
            assert all(o == {**final, "processingTime": None} for o in again), (update_id, got)
            if final["type"] != CONFIRMED:
                continue
            name, at, value = final["fieldName"], final["serverVersion"], final["confirmedValue"]
            assert (name, min(at, version)) == (message["payload"]["fieldName"], at), final
            if at == latest.get(name, (0, None))[0]:  # confirmed with no change of its own
                assert value == latest[name][1], (final, latest)
            latest[name] = max(latest.get(name, (0, None)), (at, value), key=lambda v: v[0])
            if name == "notes":
                tokens.append("[" + update_id.rpartition("-u")[2] + "]")  # what it inserted
    for name, (at, value) in latest.items():
        assert fields[name] == value, (run.trip_id, name, at, value, fields)
    assert NOTES in fields["notes"]
    assert all(t in fields["notes"] for t in tokens), (run.trip_id, tokens, fields)


def check_connections(run: Run, fields: dict[str, Any], version: int) -> None:
    """Versions told in order, once each, without a gap; one outcome per send."""
    for device in run.devices:
        assert device.conn is not None
        for conn in [*device.closed, device.conn]:
            where = (run.trip_id, device.user, conn.node, conn.version, str(conn.told))
            assert all(conn.outcomes[u] <= n for u, n in conn.sent.items()), conn.sent
            assert conn.told == sorted(set(conn.told)), where
            heard = set(conn.told) | conn.confirmed
            assert set(range(conn.version + 1, conn.at() + 1)) <= heard, where
        assert device.conn.alive
        assert device.conn.outcomes == device.conn.sent
        assert (device.conn.at(), device.conn.fields()) == (version, fields)


async def finish(run: Run) -> None:
    for node in sorted(set(range(NODES)) - run.live):
        await run.restart(node)
    for device in run.devices:
        node = run.data.draw(st.sampled_from(range(NODES)), label=f"{device.user} ends on")
        if device.conn is None or not device.conn.alive:
            await device.connect(node)
    await run.settle()
    trip = await converged(run)
    fields, version = trip["fields"], trip["version"]
    answers = [await replay(node, run.trip_id) for node in run.nodes]
    for started, answer in answers:
        assert (started["version"], started["fields"]) == (version, fields)
        assert answer == answers[0][1], (run.trip_id, answer, answers[0][1])
        assert [e["version"] for e in answer] == [*range(2, version + 1), version]
    check_outcomes(run, fields, version)
    check_connections(run, fields, version)


async def scenario(nodes: list[ServerProcess], data: st.DataObject) -> None:
    run = Run(nodes, data)
    owner = nodes[data.draw(st.sampled_from(range(NODES)), label="created on")]
    editors = {"bob": "editor", "carol": "editor"}
    await create_trip(owner, trip_id=run.trip_id, fields=FIELDS, manual=[], collaborators=editors)
    try:
        for device in run.devices:
            await device.connect(data.draw(st.sampled_from(range(NODES)), label=device.user))
        if data.draw(st.booleans(), label="yjs peer"):
            peer_node = nodes[data.draw(st.sampled_from(range(NODES)), label="peer on")]
            run.peer = await NodePeer.start(peer_node, run.trip_id, "bob")
            await run.peer.synced()
        for _ in range(data.draw(st.integers(4, 18), label="steps")):
            await run.step()
        await finish(run)
    finally:
        for device in run.devices:
            if device.conn is not None:
                await device.conn.client.close()
        if run.peer is not None:
            await run.peer.close()


class Nodes(list[ServerProcess]):
    def __repr__(self) -> str:  # as Hypothesis prints the test's arguments
        return f"Nodes(ports={[node.port for node in self]})"


@pytest.fixture
def nodes(cluster: Cluster) -> Nodes:  # started once, shared by the test's examples
    return Nodes(cluster(NODES))


@pytest.mark.timeout(300)  # a failing example runs twice, with waits of WAIT_S
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_replicas_end_identical_and_keep_every_confirmed_edit(
    nodes: Nodes, data: st.DataObject
) -> None:
    for node in nodes:  # each example starts with every node running
        if node.process is None:
            node.start()
    asyncio.run(asyncio.wait_for(scenario(nodes, data), 120))
