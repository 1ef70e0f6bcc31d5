"""End-to-end: stock Yjs peers (Node: yjs + y-websocket) and JSON clients on one trip."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Map
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.api.test_trips import auth, create_trip, get_trip, join, presence_of, update
from tests.api.yjspeer import NodePeer
from tests.conftest import ServerProcess
from tests.wsclient import TIMEOUT_S
from tripsage_sync.sync.ysync import (
    SyncStep2,
    auth_denied_frame,
    awareness_frame,
    parse_frame,
    sync_step1_frame,
    sync_update_frame,
)

pytestmark = pytest.mark.anyio

FIELDS: dict[str, Any] = {
    "name": "Europe",
    "destination": "Paris",
    "budget": 2000,
    "notes": "",
    "itinerary": [],
}


def has(**expected: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda trip: all(trip.get(k) == v for k, v in expected.items())


async def raw_peer(server: ServerProcess, user: str, trip_id: str = "trip-1") -> Any:
    url = f"{server.ws}/ws/yjs/{trip_id}?token={server.token(user)}"
    return await connect(url, open_timeout=TIMEOUT_S, max_size=None)


async def frames_until_close(ws: Any) -> tuple[list[bytes], int | None]:
    frames = []
    try:
        while True:
            frames.append(await ws.recv())
    except ConnectionClosed:
        pass
    return frames, ws.close_code


async def test_two_yjs_peers_and_a_json_client_converge(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    await create_trip(server, fields=FIELDS, collaborators={"bob": "editor", "carol": "editor"})
    carol, started = await join(server, "carol")
    alice, bob = (
        await NodePeer.start(server, "trip-1", "alice"),
        await NodePeer.start(server, "trip-1", "bob"),
    )
    try:
        for peer in (alice, bob):
            assert has(name="Europe", notes="", itinerary=[])(await peer.synced())
        # Concurrent edits: scalars, the notes Y.Text and the itinerary Y.Array, both sides.
        await alice.send({"cmd": "set", "key": "destination", "value": "Rome"})
        await alice.send({"cmd": "insertText", "index": 0, "text": "alice "})
        await alice.send({"cmd": "push", "key": "itinerary", "value": {"day": 1}})
        await bob.send({"cmd": "set", "key": "name", "value": "Italy"})
        await bob.send({"cmd": "insertText", "index": 0, "text": "bob "})
        await bob.send({"cmd": "push", "key": "itinerary", "value": {"day": 2}})
        version = started["payload"]["version"]
        await carol.send(update("c1", "notes", "carol", version, previous=""))
        await carol.send(update("c2", "travelers", 3, version))
        confirmed = await carol.recv_type("optimistic_update_confirmed")
        assert confirmed["payload"]["updateId"] == "c1"
        # A Yjs peer's change is a trip_update_broadcast with a version of its own.
        broadcast = await carol.recv_matching(
            "trip_update_broadcast", lambda p: p["updatedBy"] == "alice"
        )
        assert broadcast["payload"]["version"] > version

        def done(trip: dict[str, Any]) -> bool:
            notes = trip.get("notes", "")
            return (
                has(destination="Rome", name="Italy", travelers=3)(trip)
                and all(w in notes for w in ("alice", "bob", "carol"))
                and len(trip.get("itinerary", [])) == 2
            )

        seen = [await alice.trip(done), await bob.trip(done)]
        http = await get_trip(server, "carol")
        assert seen[0] == seen[1] == http["fields"]
        assert sorted(d["day"] for d in http["fields"]["itinerary"]) == [1, 2]
        # Every Yjs change is in the update log: a restart rebuilds the same trip.
        await alice.close()
        await bob.close()
        await carol.close()
        server.stop()
        restarted = server_factory(db=server.db)
        assert (await get_trip(restarted, "carol"))["fields"] == http["fields"]
        assert (await get_trip(restarted, "carol"))["version"] == http["version"]
        # Tokens ride in the URL: never in a log line.
        assert "token=***" in server.logs()
        for proc in (server, restarted):
            for user in ("alice", "bob"):
                assert server.token(user).split(".")[1] not in proc.logs()
    finally:
        await alice.close()
        await bob.close()


async def test_offline_yjs_peer_reconnects_and_converges(server: ServerProcess) -> None:
    await create_trip(server, fields=FIELDS, collaborators={"bob": "editor", "carol": "editor"})
    carol, started = await join(server, "carol")
    alice = await NodePeer.start(server, "trip-1", "alice")
    bob = await NodePeer.start(server, "trip-1", "bob")
    try:
        await alice.synced()
        await bob.synced()
        mark = alice.mark()
        await alice.send({"cmd": "disconnect"})
        await alice.wait_event("status", status="disconnected", after=mark)
        await alice.send({"cmd": "set", "key": "hotel", "value": "Ritz"})
        await alice.send({"cmd": "insertText", "index": 0, "text": "offline "})
        await bob.send({"cmd": "insertText", "index": 0, "text": "online "})
        await bob.send({"cmd": "set", "key": "name", "value": "Spain"})
        await carol.send(update("c1", "destination", "Madrid", started["payload"]["version"]))
        await carol.recv_type("optimistic_update_confirmed")
        await bob.trip(has(destination="Madrid"))
        await alice.send({"cmd": "connect"})

        def done(trip: dict[str, Any]) -> bool:
            notes = trip.get("notes", "")
            return has(hotel="Ritz", name="Spain", destination="Madrid")(trip) and (
                "offline" in notes and "online" in notes
            )

        seen = [await alice.trip(done), await bob.trip(done)]
        await carol.recv_matching(
            "trip_update_broadcast", lambda p: "hotel" in p["changes"] and p["updatedBy"] == "alice"
        )
        assert seen[0] == seen[1] == (await get_trip(server, "carol"))["fields"]
    finally:
        await alice.close()
        await bob.close()
        await carol.close()


async def test_viewer_updates_are_refused(server: ServerProcess) -> None:
    await create_trip(server, fields=FIELDS, collaborators={"dave": "viewer", "carol": "editor"})
    carol, _ = await join(server, "carol")
    dave = await NodePeer.start(server, "trip-1", "dave")
    alice = await NodePeer.start(server, "trip-1", "alice")
    try:
        await dave.synced()
        await alice.synced()
        await dave.send({"cmd": "set", "key": "name", "value": "Hacked"})
        denied = await dave.wait_event("denied")
        assert "read-only" in denied["reason"]
        # Not applied, not broadcast: the next change anyone sees is alice's.
        await alice.send({"cmd": "set", "key": "destination", "value": "Oslo"})
        first = await carol.recv_type("trip_update_broadcast")
        assert first["payload"]["updatedBy"] == "alice"
        assert "name" not in first["payload"]["changes"]
        # The viewer stays connected and keeps receiving.
        assert (await dave.trip(has(destination="Oslo")))["name"] == "Hacked"  # its own replica
        assert (await alice.trip(has(destination="Oslo")))["name"] == "Europe"
        assert (await get_trip(server, "carol"))["fields"]["name"] == "Europe"
    finally:
        await dave.close()
        await alice.close()
        await carol.close()


async def test_non_collaborators_and_bad_tokens_are_refused_before_any_document_byte(
    server: ServerProcess,
) -> None:
    await create_trip(server, fields=FIELDS)
    for user, trip_id, code in (("eve", "trip-1", 4403), ("alice", "no-such-trip", 4403)):
        ws = await raw_peer(server, user, trip_id)
        frames, close_code = await frames_until_close(ws)
        assert close_code == code
        assert frames == [auth_denied_frame("forbidden")]  # no sync step, no awareness
    bad = await connect(f"{server.ws}/ws/yjs/trip-1?token=not-a-jwt", open_timeout=TIMEOUT_S)
    frames, close_code = await frames_until_close(bad)
    assert (frames, close_code) == ([auth_denied_frame("unauthorized")], 4401)
    # y-websocket itself gives up on these codes instead of retrying forever.
    eve = await NodePeer.start(server, "trip-1", "eve")
    try:
        terminal = await eve.wait_event("terminal")
        assert terminal["code"] == 4403
        assert not [e for e in eve.events if e["event"] == "doc" and e["trip"]]
    finally:
        await eve.close()


async def test_presence_and_awareness_cross_both_ways(server: ServerProcess) -> None:
    await create_trip(server, fields=FIELDS, collaborators={"bob": "editor", "carol": "editor"})
    carol, _ = await join(server, "carol")
    alice = await NodePeer.start(server, "trip-1", "alice")
    bob = await NodePeer.start(server, "trip-1", "bob")
    try:
        await alice.synced()
        await presence_of(carol, {"alice", "bob", "carol"})
        # A Yjs peer's awareness: its focus shows in presence, under the token's name.
        await alice.send(
            {"cmd": "awareness", "state": {"user": {"name": "Mallory"}, "currentField": "budget"}}
        )
        presence = await carol.recv_matching(
            "trip_collaborator_presence",
            lambda p: any(
                c["userId"] == "alice" and c["currentField"] == "budget"
                for c in p["activeCollaborators"]
            ),
        )
        entry = next(
            c for c in presence["payload"]["activeCollaborators"] if c["userId"] == "alice"
        )
        assert entry["userName"] == "Alice"
        states = await bob.awareness(
            lambda s: (
                any(x.get("currentField") == "budget" for x in s)
                and any(x["user"]["id"] == "carol" for x in s)
            )
        )
        relayed = next(s for s in states.values() if s and s.get("currentField") == "budget")
        assert relayed["user"] == {"id": "alice", "name": "Alice"}  # not "Mallory"
        # A JSON client appears to Yjs peers as an awareness state, and leaves at once.
        dan, _ = await join(server, "bob")
        await alice.awareness(lambda s: sum(x["user"]["id"] == "bob" for x in s) == 1)
        await dan.close()
        await alice.awareness(lambda s: not any(x["user"]["id"] == "bob" for x in s))
        # A Yjs peer that leaves: gone from presence and from the other peers' awareness.
        await alice.close()
        await presence_of(carol, {"bob", "carol"})
        await bob.awareness(lambda s: not any(x["user"]["id"] == "alice" for x in s))
    finally:
        await alice.close()
        await bob.close()
        await carol.close()


async def test_malformed_oversize_and_off_schema_frames_are_refused(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(max_message_size=4096)
    await create_trip(server, fields=FIELDS, collaborators={"carol": "editor"})
    carol, _ = await join(server, "carol")
    before = await get_trip(server, "carol")
    cases: list[tuple[bytes, int]] = [
        (b"\x00\x02\x05abc", 4400),  # truncated frame
        (b"\x07", 4400),  # unknown message type
        (sync_update_frame(b"\x01\x02\x03"), 4400),  # a frame holding no Yjs update
        (sync_update_frame(b"\x00" * 5000), 4413),  # over TRIPSAGE_MAX_MESSAGE_SIZE
    ]
    for frame, code in cases:
        ws = await raw_peer(server, "alice")
        await ws.send(frame)
        _, close_code = await frames_until_close(ws)
        assert close_code == code, frame[:8]
    # A stock peer writing outside the schema (a new Y.Text) is told, then closed for good.
    alice = await NodePeer.start(server, "trip-1", "alice")
    try:
        await alice.synced()
        await alice.send({"cmd": "newText", "key": "notes"})
        assert "notes" in (await alice.wait_event("denied"))["reason"]
        assert (await alice.wait_event("terminal"))["code"] == 4422
    finally:
        await alice.close()
    after = await get_trip(server, "carol")
    assert (after["version"], after["fields"]) == (before["version"], before["fields"])
    # The document is intact and the JSON client noticed nothing: its first event is this.
    bob = await NodePeer.start(server, "trip-1", "alice")
    try:
        await bob.synced()
        await bob.send({"cmd": "set", "key": "destination", "value": "Lima"})
        first = await carol.recv_type("trip_update_broadcast")
        assert first["payload"]["changes"]["destination"]["newValue"] == "Lima"
    finally:
        await bob.close()
        await carol.close()


async def test_burst_over_the_rate_limit_closes_with_3001(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(rate_limit_yjs_frames_per_min=5)
    await create_trip(server, fields=FIELDS)
    ws = await raw_peer(server, "alice")
    frame = awareness_frame([])
    for _ in range(6):
        await ws.send(frame)
    frames, close_code = await frames_until_close(ws)
    assert close_code == 3001
    assert auth_denied_frame("rate limited") in frames


async def test_concurrent_yjs_write_of_a_manual_field_needs_resolution(
    server: ServerProcess,
) -> None:
    await create_trip(
        server, fields=FIELDS, manual=["budget"], collaborators={"bob": "editor", "carol": "editor"}
    )
    carol, _ = await join(server, "carol")
    alice = await NodePeer.start(server, "trip-1", "alice")
    bob = await NodePeer.start(server, "trip-1", "bob")
    try:
        await alice.synced()
        await bob.synced()
        mark = alice.mark()
        await alice.send({"cmd": "disconnect"})
        await alice.wait_event("status", status="disconnected", after=mark)
        await bob.send({"cmd": "set", "key": "budget", "value": 3000})  # saw 2000: no conflict
        await carol.recv_matching("trip_update_broadcast", lambda p: "budget" in p["changes"])
        await alice.send({"cmd": "set", "key": "budget", "value": 2500})  # had not seen 3000
        await alice.send({"cmd": "connect"})
        required = await carol.recv_type("conflict_resolution_required")
        options = {o["value"]: o for o in required["payload"]["options"]}
        assert {2500, 3000} <= set(options)
        assert options[2500]["source"] == "alice"
        detected = await carol.recv_type("trip_conflict_detected")
        assert detected["payload"]["resolutionStrategy"] == "manual"
        await carol.send(
            {
                "type": "conflict_resolution_submit",
                "payload": {
                    "conflictId": required["payload"]["conflictId"],
                    "chosenOptionId": options[2500]["id"],
                },
            }
        )
        await carol.recv_type("conflict_resolved")
        seen = [await alice.trip(has(budget=2500)), await bob.trip(has(budget=2500))]
        assert seen[0] == seen[1] == (await get_trip(server, "carol"))["fields"]
    finally:
        await alice.close()
        await bob.close()
        await carol.close()


async def test_bearer_header_is_accepted(server: ServerProcess) -> None:
    await create_trip(server, fields=FIELDS)
    ws = await connect(
        f"{server.ws}/ws/yjs/trip-1",
        open_timeout=TIMEOUT_S,
        additional_headers=auth(server, "alice"),
    )
    first = await ws.recv()
    assert isinstance(first, bytes)
    assert first[:2] == b"\x00\x00"
    await ws.close()


async def test_shutdown_closes_yjs_peers_with_1001(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # y-websocket reconnects on 1001; uvicorn's own close of a leftover socket is 1012.
    server = server_factory(shutdown_grace_s=2)
    await create_trip(server, fields=FIELDS)
    ws = await raw_peer(server, "alice")
    assert (await ws.recv())[:2] == b"\x00\x00"  # the server's sync step 1
    await ws.send(sync_step1_frame(b"\x00"))  # ours: an empty state vector
    assert (await ws.recv())[:2] == b"\x00\x01"  # answered with sync step 2
    stopping = asyncio.create_task(asyncio.to_thread(server.stop))
    _, close_code = await frames_until_close(ws)
    assert close_code == 1001
    assert ws.close_reason == "Server shutting down"
    assert await stopping in (0, -15)


async def test_yjs_keys_the_json_api_refuses_are_refused(server: ServerProcess) -> None:
    """One field-name rule: a Yjs peer cannot create ``__proto__``, ``../`` or ``trip.x.y``."""
    await create_trip(server, fields=FIELDS, collaborators={"carol": "editor"})
    carol, _ = await join(server, "carol")
    before = await get_trip(server, "carol")
    for key in ("__proto__", "trip.x.y"):  # pycrdt-made updates over the real socket
        peer = Doc[Any]()
        ws = await raw_peer(server, "alice")
        await ws.send(sync_step1_frame(b"\x00"))
        while not isinstance(reply := parse_frame(await ws.recv()), SyncStep2):
            pass
        peer.apply_update(reply.update)
        state = peer.get_state()
        peer.get("trip", type=Map)[key] = 1
        await ws.send(sync_update_frame(peer.get_update(state)))
        frames, code = await frames_until_close(ws)
        assert code == 4422, key
        assert any(f[:2] == b"\x02\x00" and b"Field names" in f for f in frames)
    alice = await NodePeer.start(server, "trip-1", "alice")  # and a stock y-websocket peer
    try:
        await alice.synced()
        await alice.send({"cmd": "set", "key": "../", "value": "x"})
        assert "Field names must be" in (await alice.wait_event("denied"))["reason"]
        assert (await alice.wait_event("terminal"))["code"] == 4422
    finally:
        await alice.close()
    after = await get_trip(server, "carol")
    assert (after["version"], after["fields"]) == (before["version"], before["fields"])
    # The same rule over HTTP and JSON.
    async with httpx.AsyncClient(base_url=server.http) as http:
        created = await http.post(
            "/api/trips", json={"fields": {"__proto__": 1}}, headers=auth(server, "alice")
        )
    assert created.status_code == 400
    await carol.send(update("c1", "__proto__", 1, after["version"]))
    rejected = await carol.recv_type("optimistic_update_rejected")
    assert rejected["payload"]["rejectionReason"] == "invalid_message"
    # Never applied nor broadcast: the JSON client's next event is a valid peer's edit.
    bob = await NodePeer.start(server, "trip-1", "alice")
    try:
        await bob.synced()
        await bob.send({"cmd": "set", "key": "destination", "value": "Lima"})
        first_broadcast = await carol.recv_type("trip_update_broadcast")
        assert set(first_broadcast["payload"]["changes"]) == {"destination"}
    finally:
        await bob.close()
        await carol.close()
