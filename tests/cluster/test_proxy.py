"""Three nodes behind a load balancer (issue 13): ``tests/cluster/proxy.py`` in front.

Every client connects to the proxy only, which spreads connections round-robin over the
nodes, as a balancer with no stickiness does; a test can then cut a node off, which
drops its clients' sockets and sends new connections elsewhere. JSON clients run the
spec's offline queue (``websocket-api.md`` "Optimistic Updates": an update stays queued
until its outcome arrives and is re-sent, same ``updateId``, on the next connection);
stock Yjs peers reconnect by themselves (y-websocket).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.api.test_trips import OUTCOMES, create_trip, get_trip, join, update
from tests.api.yjspeer import NodePeer
from tests.cluster.conftest import Balancer, Cluster, through
from tests.cluster.proxy import Proxy
from tests.conftest import ServerProcess
from tests.wsclient import Client

pytestmark = pytest.mark.anyio

EDITORS: Final = ("alice", "bob", "carol")
PEERS: Final = ("dave", "erin", "frank")
FIELDS: Final = {"name": "Europe", "destination": "Paris", "notes": "", "itinerary": []}
SETTLE_S: Final = 20.0
QUIET_S: Final = 0.05  # no frame for this long: nothing more is on its way

Fields = dict[str, Any]


@dataclass
class Editor:
    """A JSON client with the spec's offline queue, and its view of the trip: the join
    answer's fields, then every version it is told of (broadcasts, and its own
    confirmations, which stand in for the broadcast it is not sent). A retryable
    rollback is no answer: the update is sent again after its ``retryAfter``."""

    door: ServerProcess
    user: str
    client: Client
    version: int
    fields: Fields
    queue: dict[str, dict[str, Any]] = field(default_factory=dict)  # updateId -> unanswered
    outcomes: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    told: dict[int, Fields] = field(default_factory=dict)  # version -> its changes
    drops: int = 0
    resent: int = 0

    @classmethod
    async def join(cls, door: ServerProcess, user: str) -> Editor:
        client, started = await join(door, user)
        payload = started["payload"]
        return cls(door, user, client, payload["version"], payload["fields"])

    async def send(self, message: dict[str, Any]) -> None:
        self.queue[message["payload"]["updateId"]] = message
        with contextlib.suppress(ConnectionClosed):  # dropped: it waits in the queue
            await self.client.send(message)

    async def receive(self) -> None:
        """Take the next outcome or broadcast; on a dropped socket, join again (through
        the balancer, wherever it sends us) and re-send the queue."""
        try:
            event = await self.client.recv_type(*OUTCOMES, "trip_update_broadcast")
        except ConnectionClosed:
            await self._rejoin()
            return
        payload = event["payload"]
        if event["type"] == "trip_update_broadcast":
            changes = {name: c["newValue"] for name, c in payload["changes"].items()}
            self._tell(payload["version"], changes)
            return
        if event["type"] == "optimistic_update_rollback":
            assert payload["canRetry"] is True, payload
            await asyncio.sleep(payload.get("retryAfter", 100) / 1000)  # the server's word
            if (message := self.queue.get(payload["updateId"])) is not None:
                await self.send(message)
            return
        self.outcomes[payload["updateId"]].append(event)
        self.queue.pop(payload["updateId"], None)
        if event["type"] == "optimistic_update_confirmed":
            self._tell(payload["serverVersion"], {payload["fieldName"]: payload["confirmedValue"]})

    def _tell(self, version: int, changes: Fields) -> None:
        """One change a version: told twice (live and after a rejoin), it is the same."""
        assert self.told.setdefault(version, changes) == changes, (version, self.told[version])

    async def _rejoin(self) -> None:
        self.drops += 1
        self.client, started = await join(self.door, self.user)
        self.version = started["payload"]["version"]
        self.fields = started["payload"]["fields"]
        self.told = {v: c for v, c in self.told.items() if v > self.version}
        for message in list(self.queue.values()):
            self.resent += 1
            await self.client.send(message)

    async def drain(self) -> None:
        """Until every update sent has its outcome."""
        async with asyncio.timeout(SETTLE_S):
            while self.queue:
                await self.receive()

    async def catch_up(self, version: int) -> tuple[int, Fields]:
        """The view once told of every version up to ``version``; a gap or an extra fails."""
        async with asyncio.timeout(SETTLE_S):
            while not set(range(self.version + 1, version + 1)) <= self.told.keys():
                await self.receive()
        assert max(self.told, default=self.version) == version, sorted(self.told)
        fields = dict(self.fields)
        for v in sorted(self.told):
            fields.update(self.told[v])
        return version, fields

    def confirmed_versions(self) -> dict[str, int]:
        """updateId -> serverVersion; every answer to one updateId is the same."""
        versions: dict[str, int] = {}
        for update_id, answers in self.outcomes.items():
            assert {a["type"] for a in answers} == {"optimistic_update_confirmed"}, answers
            assert len({a["payload"]["serverVersion"] for a in answers}) == 1, answers
            versions[update_id] = answers[0]["payload"]["serverVersion"]
        return versions

    async def close(self) -> None:
        # websockets stops reading once 16 frames wait unread, and then cannot see the
        # server's closing handshake (close() would wait out its 10 s timeout): take
        # what was sent first, until the socket is quiet.
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            while True:
                await self.client.recv(timeout=QUIET_S)
        await self.client.close()


def node_of(proxy: Proxy, client: Client) -> int:
    """The node (its port) the balancer sent ``client``'s connection to."""
    return proxy.backend_of(client.ws.local_address)


async def json_connections(node: ServerProcess) -> int:
    """The JSON connections ``node`` itself says it holds (asked directly, not through the
    proxy; Yjs peers are not counted there)."""
    async with httpx.AsyncClient(base_url=node.http) as http:
        count: int = (await http.get("/health")).json()["connections"]
        return count


Missing = Callable[[Fields], list[str]]


async def settled(nodes: list[ServerProcess], missing: Missing) -> dict[str, Any]:
    """The trip once every node's REST read (each node asked directly) lacks nothing of
    ``missing`` and all of them agree on version and fields; else what they lacked."""
    trips: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(SETTLE_S):
            while True:
                trips = [await get_trip(node) for node in nodes]
                if not any(missing(t["fields"]) for t in trips) and all(
                    (t["version"], t["fields"]) == (trips[0]["version"], trips[0]["fields"])
                    for t in trips
                ):
                    return trips[0]
                await asyncio.sleep(0.05)  # polling other processes' state, not an event
    except TimeoutError:
        lacking = [(t["version"], missing(t["fields"])) for t in trips]
        raise AssertionError(f"the nodes did not settle: (version, lacking) {lacking}") from None


async def converged(peer: NodePeer, fields: Fields) -> None:
    """Until the peer's replica equals ``fields``; else which keys differ."""
    try:
        await peer.trip(lambda trip: trip == fields)
    except TimeoutError:
        last = next(e["trip"] for e in reversed(peer.events) if e["event"] == "doc")
        differ = sorted(k for k in fields.keys() | last.keys() if fields.get(k) != last.get(k))
        raise AssertionError(f"{peer.name}'s replica differs in {differ}") from None


async def start_trip(cluster: Cluster, balancer: Balancer) -> tuple[list[ServerProcess], Proxy]:
    nodes = cluster(3)
    proxy = await balancer(nodes)
    users = {user: "editor" for user in (*EDITORS[1:], *PEERS)}  # alice owns it
    await create_trip(nodes[0], fields=dict(FIELDS), collaborators=users)
    return nodes, proxy


async def test_clients_spread_by_the_balancer_over_three_nodes_converge(
    cluster: Cluster, balancer: Balancer
) -> None:
    nodes, proxy = await start_trip(cluster, balancer)
    door = through(proxy, nodes[0])
    editors: list[Editor] = []
    peers: list[NodePeer] = []
    try:
        for editor_user, peer_user in zip(EDITORS, PEERS, strict=True):
            editors.append(await Editor.join(door, editor_user))
            peers.append(await NodePeer.start(door, "trip-1", peer_user))
            await peers[-1].synced()  # connected, so the next connection takes the next turn
        # The balancer put one JSON client and one Yjs peer on each node, and the nodes
        # themselves say so.
        assert {node_of(proxy, e.client) for e in editors} == {n.port for n in nodes}
        assert [proxy.open_to(n.port) for n in nodes] == [2, 2, 2]
        assert [await json_connections(n) for n in nodes] == [1, 1, 1]

        for editor in editors:
            for n in range(5):
                key = f"{editor.user}{n}"
                await editor.send(update(key, key, n, editor.version))
        dave, erin, frank = peers
        await dave.send({"cmd": "set", "key": "hotel", "value": "Ritz"})
        await dave.send({"cmd": "insertText", "index": 0, "text": "dave "})
        await erin.send({"cmd": "insertText", "index": 0, "text": "erin "})
        await erin.send({"cmd": "push", "key": "itinerary", "value": {"day": 1}})
        await frank.send({"cmd": "push", "key": "itinerary", "value": {"day": 2}})
        await frank.send({"cmd": "set", "key": "destination", "value": "Rome"})
        for editor in editors:
            await editor.drain()

        def missing(trip: Fields) -> list[str]:
            lacking = [f"{e}{n}" for e in EDITORS for n in range(5) if trip.get(f"{e}{n}") != n]
            wanted = {"hotel": "Ritz", "destination": "Rome"}
            lacking += [k for k, v in wanted.items() if trip.get(k) != v]
            lacking += [f"notes:{p}" for p in ("dave", "erin") if f"{p} " not in trip["notes"]]
            if sorted(d["day"] for d in trip["itinerary"]) != [1, 2]:
                lacking.append("itinerary")
            return lacking

        trip = await settled(nodes, missing)
        for peer in peers:
            await converged(peer, trip["fields"])
        for editor in editors:
            assert await editor.catch_up(trip["version"]) == (trip["version"], trip["fields"])
        versions = [v for e in editors for v in e.confirmed_versions().values()]
        assert len(versions) == len(set(versions)) == 15  # one order of versions for all
    finally:
        for peer in peers:
            await peer.close()
        for editor in editors:
            await editor.close()


async def test_a_node_cut_off_mid_editing_loses_nothing_confirmed(
    cluster: Cluster, balancer: Balancer
) -> None:
    nodes, proxy = await start_trip(cluster, balancer)
    door = through(proxy, nodes[0])
    editors = [await Editor.join(door, user) for user in EDITORS]
    alice, bob, carol = editors
    peers: list[NodePeer] = []
    peer_nodes: list[int] = []
    burst = 20
    try:
        for user in PEERS:
            peers.append(await NodePeer.start(door, "trip-1", user))
            await peers[-1].synced()
            peer_nodes.append(proxy.landed[-1])
        victim = node_of(proxy, bob.client)
        assert {node_of(proxy, e.client) for e in editors} == set(peer_nodes) == set(proxy.backends)
        cut_peer = peers[peer_nodes.index(victim)]  # the Yjs peer on bob's node

        # Everyone is editing; bob has his first burst in flight when his node is cut off.
        for editor in editors:
            for n in range(burst):
                key = f"{editor.user}{n}"
                await editor.send(update(key, key, n, 1))
        for user, peer in zip(PEERS, peers, strict=True):
            await peer.send({"cmd": "set", "key": user, "value": 1})
            await peer.send({"cmd": "insertText", "index": 0, "text": f"{user} "})
        while not bob.outcomes:
            await bob.receive()
        mark = cut_peer.mark()
        proxy.cut(victim)
        assert proxy.open_to(victim) == 0
        # They carry on: bob's second burst goes into a dead socket (and his queue).
        for editor in editors:
            for n in range(burst, 2 * burst):
                key = f"{editor.user}{n}"
                await editor.send(update(key, key, n, 1))
        await cut_peer.wait_event("status", status="disconnected", after=mark)
        for user, peer in zip(PEERS, peers, strict=True):
            await peer.send({"cmd": "set", "key": f"{user}-after", "value": 2})
        for editor in editors:
            await editor.drain()
        await cut_peer.wait_event("status", status="connected", after=mark)

        # Bob and the peer reconnected through the balancer, to the other two nodes.
        assert (alice.drops, bob.drops, carol.drops) == (0, 1, 0)
        assert bob.resent >= burst  # at least his second burst was re-sent
        assert node_of(proxy, bob.client) != victim
        assert proxy.open_to(victim) == 0
        assert sum(proxy.open_to(n.port) for n in nodes) == len(editors) + len(peers)

        def missing(trip: Fields) -> list[str]:
            lacking = [
                f"{e}{n}" for e in EDITORS for n in range(2 * burst) if trip.get(f"{e}{n}") != n
            ]
            lacking += [
                f"{p}/{p}-after" for p in PEERS if (trip.get(p), trip.get(f"{p}-after")) != (1, 2)
            ]
            lacking += [f"notes:{p}" for p in PEERS if f"{p} " not in trip["notes"]]
            return lacking

        trip = await settled(nodes, missing)  # the node cut off too: it kept replicating
        for peer in peers:
            await converged(peer, trip["fields"])
        views = [await e.catch_up(trip["version"]) for e in editors]
        assert views == [(trip["version"], trip["fields"])] * len(editors)
        # Exactly one outcome per updateId: re-sends got the first answer, and the one
        # total order has one version per update, seen by alice (never dropped, joined
        # at version 1) as the only version that changed its field.
        versions = {k: v for e in editors for k, v in e.confirmed_versions().items()}
        assert len(versions) == len(EDITORS) * 2 * burst
        assert len(set(versions.values())) == len(versions)
        for key, version in versions.items():
            assert [v for v, c in alice.told.items() if key in c] == [version], key

        # Back in the balancer's turns: a new client there sees the final state.
        proxy.restore(victim)
        async with asyncio.timeout(SETTLE_S):
            while True:  # the victim's turn comes within one round
                client, started = await join(door, "carol")
                if node_of(proxy, client) == victim:
                    break
                await client.close()
        payload = started["payload"]
        assert (payload["version"], payload["fields"]) == (trip["version"], trip["fields"])
        await client.close()
    finally:
        for peer in peers:
            await peer.close()
        for editor in editors:
            await editor.close()
