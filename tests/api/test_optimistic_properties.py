"""Property test over real sockets: every ``optimistic_update_start`` gets one outcome.

Hypothesis drives three clients (two editors, one viewer) of one trip on a real
server through random mixes of valid and invalid updates: with and without
``expectedVersion`` (0, stale, too new), before and after joining, inside and
outside ``batch``es, re-sent updateIds and offline queues replayed on a new
connection. The server compacts often, so bases fall below the retained
history. Properties:

- every message that carries a string ``updateId`` gets exactly one outcome on
  the connection it was sent on (a re-send gets one more, the same one);
- every confirmed value is the trip's value, or a later confirmed write
  (higher ``serverVersion``) overwrote it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServerProcess
from tests.wsclient import open_client
from tripsage_sync.sync.wire import iso_ms

USERS = ("alice", "bob", "carol")  # owner, editor, viewer
OUTCOMES = frozenset(
    {"optimistic_update_confirmed", "optimistic_update_rejected", "optimistic_update_rollback"}
)
FIELDS: dict[str, Any] = {
    "destination": "Paris",
    "budget": 2000,
    "notes": "Pack light.",
    "itinerary": ["Louvre"],
}
_trip_ids = itertools.count()


@pytest.fixture
def prop_server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    # Compact after every few updates with no retention: old bases are gone.
    return server_factory(
        compact_every_updates=3,
        history_retention_days=0,
        conflict_auto_resolve_ms=3_600_000,  # no resolution changes a field mid-test
    )


def _value(data: st.DataObject, field: str, current: Any) -> Any:
    if field == "notes":
        return data.draw(st.sampled_from(["", "Pack light.", "Pack light!", "x Pack light."]))
    if field == "itinerary":
        return data.draw(st.lists(st.sampled_from(["Louvre", "Orsay", "Seine"]), max_size=3))
    if field == "budget":
        return data.draw(st.integers(0, 5000))
    return data.draw(st.sampled_from(["Rome", "Oslo", "Lima", current]))


def _message(data: st.DataObject, trip_id: str, update_id: str, offset_ms: int) -> Any:
    """One optimistic_update_start, valid or not (the test only needs its updateId)."""
    field = data.draw(st.sampled_from(sorted(FIELDS)))
    payload: dict[str, Any] = {
        "updateId": update_id,
        "tripId": trip_id,
        "fieldName": data.draw(st.sampled_from([field, "trip." + field])),
        "optimisticValue": _value(data, field, FIELDS[field]),
        "clientTimestamp": iso_ms(int(time.time() * 1000) + offset_ms),
    }
    version = data.draw(st.sampled_from(["absent", 0, 1, 2, 5, 40]))
    if version != "absent":
        payload["expectedVersion"] = version
    previous = data.draw(st.sampled_from(["absent", None, FIELDS[field]]))
    if previous != "absent":
        payload["previousValue"] = previous
    match data.draw(
        st.sampled_from(["valid", "valid", "valid", "alias", "invalid-wire", "invalid-value"])
    ):
        case "alias":
            payload["value"] = payload.pop("optimisticValue")
        case "invalid-wire":
            broken = data.draw(st.sampled_from(["tripId", "optimisticValue", "fieldName", "num"]))
            if broken == "num":
                payload["expectedVersion"] = "5"
            else:
                del payload[broken]
        case "invalid-value":
            payload["fieldName"], payload["optimisticValue"] = data.draw(
                st.sampled_from([("bad name", 1), ("notes", 5), ("destination", ["a"])])
            )
    return {"id": "m-" + update_id, "type": "optimistic_update_start", "payload": payload}


class Peer:
    """One user's connection, the messages it sent and the outcomes it got."""

    def __init__(self, server: ServerProcess, user: str) -> None:
        self.server, self.user = server, user
        self.sent: list[dict[str, Any]] = []  # every update message sent on this connection
        self.all_sent: list[dict[str, Any]] = []  # ... and on earlier ones (the offline queue)
        self.outcomes: list[dict[str, Any]] = []
        self.connections = itertools.count()

    async def open(self) -> None:
        self.client, _, _ = await open_client(
            self.server, self.user, f"s-{self.user}-{next(self.connections)}"
        )

    async def send(self, messages: list[dict[str, Any]], *, batch: bool) -> None:
        self.sent.extend(messages)
        self.all_sent.extend(m for m in messages if m not in self.all_sent)
        if batch:
            await self.client.send({"type": "batch", "payload": {"messages": messages}})
        else:
            for message in messages:
                await self.client.send(message)

    async def settle(self, sentinel: str) -> None:
        """Read until the outcome of ``sentinel`` (an invalid update sent last)."""
        await self.client.send(
            {"type": "optimistic_update_start", "payload": {"updateId": sentinel}}
        )
        try:
            while True:
                message = await self.client.recv(timeout=5)
                for inner in _unpack(message):
                    if inner.get("type") in OUTCOMES:
                        if inner["payload"]["updateId"] == sentinel:
                            self.check()
                            return
                        self.outcomes.append(inner)
        except TimeoutError:
            self.check()  # names the updates without an outcome
            raise

    def check(self) -> None:
        """Exactly one outcome per sent message with a string updateId."""
        sent = Counter(m["payload"]["updateId"] for m in self.sent)
        got = Counter(o["payload"]["updateId"] for o in self.outcomes)
        assert got == sent, (self.user, sent - got, got - sent)

    async def reconnect_and_replay(self, sentinel: str) -> None:
        await self.settle(sentinel)
        await self.client.close()
        self.sent, self.outcomes = [], []
        await self.open()
        await self.send(list(self.all_sent), batch=False)


def _unpack(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if message.get("type") == "batch":
        yield from message["payload"]["messages"]
    else:
        yield message


async def _scenario(server: ServerProcess, data: st.DataObject) -> None:
    trip_id = f"trip-p{next(_trip_ids)}"
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with httpx.AsyncClient(base_url=server.http) as http:
        body = {"tripId": trip_id, "fields": FIELDS, "manualResolutionFields": ["budget"]}
        assert (await http.post("/api/trips", json=body, headers=headers)).status_code == 201
        for user, level in (("bob", "editor"), ("carol", "viewer")):
            put = await http.put(
                f"/api/trips/{trip_id}/collaborators/{user}",
                json={"permissionLevel": level},
                headers=headers,
            )
            assert put.status_code == 200
    peers = {user: Peer(server, user) for user in USERS}
    for peer in peers.values():
        await peer.open()
    ids = (f"{trip_id}-u{i}" for i in itertools.count())
    sentinels = (f"{trip_id}-sentinel-{i}" for i in itertools.count())
    confirmed: list[dict[str, Any]] = []
    try:
        for _ in range(data.draw(st.integers(3, 14), label="steps")):
            peer = peers[data.draw(st.sampled_from(["alice", "alice", "bob", "bob", "carol"]))]
            action = data.draw(
                st.sampled_from(["send", "send", "send", "batch", "join", "resend", "replay"])
            )
            offset = data.draw(st.sampled_from([-30_000, -1_000, 0]))
            match action:
                case "send":
                    await peer.send([_message(data, trip_id, next(ids), offset)], batch=False)
                case "batch":
                    count = data.draw(st.integers(1, 3))
                    messages = [_message(data, trip_id, next(ids), offset) for _ in range(count)]
                    await peer.send(messages, batch=True)
                case "join":
                    start = {"type": "collaboration_session_start", "payload": {"tripId": trip_id}}
                    await peer.client.send(start)
                case "resend" if peer.all_sent:
                    again = data.draw(st.sampled_from(peer.all_sent))
                    await peer.send([again], batch=False)
                case "replay":
                    confirmed.extend(o for o in peer.outcomes if o["type"].endswith("confirmed"))
                    await peer.reconnect_and_replay(next(sentinels))
        for peer in peers.values():
            await peer.settle(next(sentinels))
            confirmed.extend(o for o in peer.outcomes if o["type"].endswith("confirmed"))
    finally:
        for peer in peers.values():
            await peer.client.close()
    async with httpx.AsyncClient(base_url=server.http) as http:
        trip = (await http.get(f"/api/trips/{trip_id}", headers=headers)).json()
    latest: dict[str, dict[str, Any]] = {}
    for outcome in confirmed:
        p = outcome["payload"]
        name = p["fieldName"].removeprefix("trip.")
        if name not in latest or p["serverVersion"] >= latest[name]["serverVersion"]:
            latest[name] = p
    for name, p in latest.items():
        assert trip["fields"][name] == p["confirmedValue"], (name, p, trip)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_update_gets_one_outcome_and_confirmed_values_last(
    prop_server: ServerProcess, data: st.DataObject
) -> None:
    # The server is shared by the examples; each has a trip of its own.
    asyncio.run(asyncio.wait_for(_scenario(prop_server, data), 60))
