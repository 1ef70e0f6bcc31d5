"""Tests for sync/document/desk.py: the optimistic-update path, facts in, intents out.

h11-style and without sockets: a :class:`FakeClient` builds ``optimistic_update_start``
requests and keeps what it was sent; :class:`Server` is the real core
(:func:`receive_update`, a real :class:`TripDocument` and :class:`StorageBackoff`)
behind a shell that keeps its storage in memory and writes down, in order, what it
carried out.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import assert_never

import pytest

from tripsage_sync.sync.backoff import StorageBackoff
from tripsage_sync.sync.conflicts import JSON, PendingConflict
from tripsage_sync.sync.document import (
    AwaitInFlightOutcome,
    Broadcast,
    Compact,
    Confirmed,
    Intent,
    LogEntry,
    NoteOwnVersion,
    Outcome,
    Persist,
    Refused,
    Rejected,
    Rolledback,
    ScheduleConflictDeadline,
    SendError,
    SendOutcome,
    SendRollback,
    SendStoredOutcome,
    TripDocument,
    UpdateFacts,
    UpdateStart,
    persist_failed,
    receive_update,
)
from tripsage_sync.sync.errors import InvalidMessage, InvalidState, PermissionDenied
from tripsage_sync.sync.wire import InvalidUpdate

TRIP = "trip-1"
MANUAL = frozenset({"budget"})
AUTO_RESOLVE_MS = 60_000
INITIAL: dict[str, JSON] = {"destination": "Paris", "budget": 2000, "notes": "Pack light."}


class _Absent(Enum):
    ABSENT = "absent"  # no previousValue sent


ABSENT = _Absent.ABSENT


@dataclass
class FakeClient:
    """One connection: builds requests, keeps what it is sent and the version it saw."""

    user_id: str
    seen_version: int = 1  # it joined the trip at creation
    received: list[object] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def edit(
        self,
        field_name: str,
        value: JSON,
        *,
        previous: JSON | _Absent = ABSENT,
        expected: int | None = None,
        client_timestamp: str | None = None,
        update_id: str | None = None,
    ) -> UpdateStart:
        return UpdateStart.of(
            update_id=update_id or f"{self.user_id}-{next(self._ids)}",
            trip_id=TRIP,
            field_name=field_name,
            field_path=None,
            optimistic_value=value,
            previous_value=None if isinstance(previous, _Absent) else previous,
            has_previous_value=not isinstance(previous, _Absent),
            expected_version=expected,
            client_timestamp=client_timestamp,
        )

    def outcomes(self) -> list[object]:
        return [r for r in self.received if not isinstance(r, Exception)]


@dataclass
class Held:
    """A :class:`Persist` whose commit has not finished: the update is in flight."""

    client: FakeClient
    update: UpdateStart
    persist: Persist
    rest: list[Intent]


class Server:
    """The real core behind an in-memory shell that writes down what it carries out."""

    def __init__(self, permissions: dict[str, str], *, now_ms: int = 10_000) -> None:
        self.doc, created = TripDocument.create(
            TRIP,
            INITIAL,
            MANUAL,
            created_by="owner",
            now_ms=1_000,
            auto_resolve_after_ms=AUTO_RESOLVE_MS,
        )
        self.permissions = permissions
        self.now_ms = now_ms
        self.backoff = StorageBackoff()
        self.log = [LogEntry(created.version, created.update, created.meta)]
        self.outcomes: dict[str, str] = {}
        self.conflicts: dict[str, PendingConflict] = {}
        self.in_flight: set[str] = set()
        self.trace: list[str] = []
        self.fail_commits = False
        self.compactions = 0
        self.deadlines: list[int] = []

    # -- the shell: gather facts, one call ---------------------------------------------

    def facts(self, client: FakeClient, update: UpdateStart) -> UpdateFacts:
        permission: str | PermissionDenied | None = self.permissions.get(client.user_id)
        if permission is None or update.trip_id != TRIP:
            permission = PermissionDenied("Not a collaborator of this trip")
        known = not isinstance(permission, PermissionDenied)
        return UpdateFacts(
            user_id=client.user_id,
            doc=self.doc if known else None,
            permission=permission,
            stored_outcome=self.outcomes.get(update.update_id) if known else None,
            in_flight=update.update_id in self.in_flight,
            backoff=self.backoff,
            seen_version=client.seen_version,
            received_ms=self.now_ms,
        )

    def receive(self, client: FakeClient, update: UpdateStart) -> list[Intent]:
        return receive_update(update, self.facts(client, update))

    def send(self, client: FakeClient, update: UpdateStart) -> list[Intent]:
        """Receive ``update`` and carry out every intent; returns the intents."""
        intents = self.receive(client, update)
        self.carry_out(client, update, intents)
        return intents

    def hold(self, client: FakeClient, update: UpdateStart) -> Held:
        """Receive ``update`` and start its commit, but do not finish it yet."""
        persist, *rest = self.receive(client, update)
        assert isinstance(persist, Persist)
        self.in_flight.add(update.update_id)
        return Held(client, update, persist, rest)

    def finish(self, held: Held) -> None:
        self.in_flight.discard(held.update.update_id)
        self.carry_out(held.client, held.update, [held.persist, *held.rest])

    # -- the shell: carry out intents -----------------------------------------------------

    def carry_out(self, client: FakeClient, update: UpdateStart, intents: list[Intent]) -> None:
        for intent in intents:
            match intent:
                case SendError(error):
                    self.trace.append(f"error {error.code}")
                    client.received.append(error)
                case SendRollback():
                    self.trace.append(f"rollback {intent.reason}")
                    client.received.append(intent)
                case SendStoredOutcome(stored):
                    self.trace.append("stored outcome")
                    client.received.append(json.loads(stored))
                case AwaitInFlightOutcome():
                    self.trace.append("await in flight")
                case Persist():
                    self._persist(client, update, intent)
                case Compact():
                    self.trace.append("compact")
                    self.compactions += 1
                case ScheduleConflictDeadline(deadline_ms):
                    self.trace.append("schedule")
                    self.deadlines.append(deadline_ms)
                case _:
                    assert_never(intent)

    def _persist(self, client: FakeClient, update: UpdateStart, persist: Persist) -> None:
        result = persist.result
        self.trace.append("persist")
        if self.fail_commits:
            retry_after_ms = self.backoff.failed(self.now_ms)
            self.doc = TripDocument.restore(  # back to what storage holds
                TRIP,
                MANUAL,
                None,
                self.log,
                [c.to_json() for c in self.conflicts.values()],
                auto_resolve_after_ms=AUTO_RESOLVE_MS,
            )
            self.carry_out(client, update, persist_failed(update, self.doc, retry_after_ms))
            return
        self.backoff.succeeded()
        if result.change is not None:
            change = result.change
            self.log.append(LogEntry(change.version, change.update, change.meta))
        if result.conflict_raised is not None:
            self.conflicts[result.conflict_raised.conflict_id] = result.conflict_raised
        self.outcomes[update.update_id] = json.dumps(_stored(result.outcome))
        for follow_up in persist.then:
            match follow_up:
                case Broadcast():
                    self.trace.append("broadcast")
                case SendError(error):
                    self.trace.append(f"error {error.code}")
                    client.received.append(error)
                case NoteOwnVersion(version):
                    self.trace.append(f"saw {version}")
                    client.seen_version = max(client.seen_version, version)
                case SendOutcome(answered):
                    self.trace.append(f"outcome {type(answered.outcome).__name__}")
                    client.received.append(answered.outcome)
                case _:
                    assert_never(follow_up)


def _stored(outcome: Outcome) -> dict[str, JSON]:
    """What the fake shell stores of an outcome (the real one stores the event)."""
    return {"type": type(outcome).__name__, "updateId": outcome.update_id}


def make() -> Server:
    return Server({"alice": "editor", "bob": "editor", "vera": "viewer"})


def test_confirmed_persists_then_broadcasts_then_answers() -> None:
    server, alice = make(), FakeClient("alice")
    intents = server.send(alice, alice.edit("destination", "Rome", previous="Paris"))
    assert [type(i) for i in intents] == [Persist, Compact]
    assert server.trace == ["persist", "broadcast", "saw 2", "outcome Confirmed", "compact"]
    (outcome,) = alice.outcomes()
    assert isinstance(outcome, Confirmed)
    assert (outcome.confirmed_value, outcome.server_version) == ("Rome", 2)
    assert alice.seen_version == 2
    assert server.doc.fields()["destination"] == "Rome"
    assert [e.version for e in server.log] == [1, 2]


def test_without_expected_version_the_update_is_based_on_the_version_seen() -> None:
    server, alice, bob = make(), FakeClient("alice"), FakeClient("bob")
    server.send(alice, alice.edit("destination", "Rome"))
    bob.seen_version = 2  # the broadcast of version 2 reached bob
    server.send(bob, bob.edit("destination", "Oslo", previous="Rome"))
    assert isinstance(bob.outcomes()[-1], Confirmed)  # not stale: based on version 2
    behind = FakeClient("alice", seen_version=1)  # alice on a connection that saw only v1
    server.send(behind, behind.edit("destination", "Nice", previous="Rome", update_id="u9"))
    (stale,) = behind.outcomes()
    assert isinstance(stale, Rolledback)  # "Rome" was not the value at version 1
    assert stale.rollback_reason == "stale_previous_value"


def test_an_unreadable_client_timestamp_is_taken_as_the_receive_time() -> None:
    server, alice, bob = make(), FakeClient("alice"), FakeClient("bob")
    server.send(alice, alice.edit("destination", "Rome", expected=1, client_timestamp="soon"))
    earlier = "1970-01-01T00:00:09Z"  # before the receive time (10 s): loses to alice
    server.send(bob, bob.edit("destination", "Oslo", expected=1, client_timestamp=earlier))
    assert isinstance(alice.outcomes()[-1], Confirmed)
    assert isinstance(bob.outcomes()[-1], Rejected)
    assert server.doc.fields()["destination"] == "Rome"


def test_rejected_last_write_wins_loss_is_persisted_and_broadcast() -> None:
    server, alice, bob = make(), FakeClient("alice"), FakeClient("bob")
    late = "1970-01-01T00:00:09Z"
    server.send(alice, alice.edit("destination", "Rome", expected=1, client_timestamp=late))
    server.trace.clear()
    early = "1970-01-01T00:00:05Z"  # concurrent (base 1) and older: loses
    intents = server.send(bob, bob.edit("destination", "Oslo", expected=1, client_timestamp=early))
    assert [type(i) for i in intents] == [Persist]  # no change: nothing to compact
    assert server.trace == ["persist", "broadcast", "outcome Rejected"]  # trip_conflict_detected
    (outcome,) = bob.outcomes()
    assert isinstance(outcome, Rejected)
    assert outcome.suggested_resolution == "accept_server_value"
    assert server.doc.fields()["destination"] == "Rome"


def test_a_refused_value_gets_the_error_then_its_rejection() -> None:
    server, alice = make(), FakeClient("alice")
    intents = server.send(alice, alice.edit("notes", 5))
    (persist,) = intents
    assert isinstance(persist, Persist)
    assert server.trace == ["persist", "error INVALID_MESSAGE_FORMAT", "outcome Refused"]
    error, outcome = alice.received
    assert isinstance(error, InvalidMessage)
    assert isinstance(outcome, Refused)
    assert error.details == outcome.details
    assert server.doc.version == 1


def test_manual_conflict_is_persisted_and_schedules_its_deadline() -> None:
    server, alice, bob = make(), FakeClient("alice"), FakeClient("bob")
    server.send(alice, alice.edit("budget", 2500, expected=1))
    server.trace.clear()
    intents = server.send(bob, bob.edit("budget", 1800, expected=1))  # concurrent, manual field
    assert [type(i) for i in intents] == [Persist, ScheduleConflictDeadline]
    assert server.trace == ["persist", "broadcast", "outcome Rejected", "schedule"]
    (outcome,) = bob.outcomes()
    assert isinstance(outcome, Rejected)
    assert outcome.suggested_resolution == "merge_required"
    (conflict,) = server.conflicts.values()
    assert conflict.conflict_id == outcome.conflict_id
    assert server.deadlines == [server.now_ms + AUTO_RESOLVE_MS] == [conflict.deadline_ms]


def test_a_stranger_gets_permission_denied_and_a_rollback_to_its_previous_value() -> None:
    server, mallory = make(), FakeClient("mallory")
    intents = server.send(mallory, mallory.edit("destination", "Rome", previous="Pariss"))
    assert server.trace == ["error PERMISSION_DENIED", "rollback permission_denied"]
    error, rollback = (intents[0], intents[1])
    assert isinstance(error, SendError)
    assert isinstance(error.error, PermissionDenied)
    assert isinstance(rollback, SendRollback)
    assert (rollback.value, rollback.can_retry, rollback.retry_after_ms) == ("Pariss", False, None)
    assert rollback.message == "you are not a collaborator on this trip."
    assert server.doc.version == 1


def test_a_viewer_gets_permission_denied_and_a_rollback_to_the_current_value() -> None:
    server, vera = make(), FakeClient("vera")
    server.backoff.failed(0)  # a refused edit must not take the backoff's trial
    server.now_ms = 100_000
    server.send(vera, vera.edit("trip.destination", "Rome", previous="Pariss"))
    error, rollback = vera.received
    assert isinstance(error, PermissionDenied)
    assert error.details == {"tripId": TRIP, "updateId": "vera-0"}
    assert isinstance(rollback, SendRollback)
    assert (rollback.field_name, rollback.value) == ("trip.destination", "Paris")
    assert rollback.message == "you can view this trip but not edit it."
    assert server.doc.version == 1
    assert server.backoff.admit(server.now_ms) is None  # the trial is still there


def test_a_resend_gets_the_stored_outcome_and_is_not_applied_twice() -> None:
    server, alice = make(), FakeClient("alice")
    update = alice.edit("budget", 2500)
    server.send(alice, update)
    server.trace.clear()
    assert server.send(alice, update) == [SendStoredOutcome(server.outcomes[update.update_id])]
    assert alice.outcomes()[-1] == {"type": "Confirmed", "updateId": update.update_id}
    assert server.trace == ["stored outcome"]
    assert server.doc.version == 2


def test_a_resend_while_in_flight_waits_for_that_outcome() -> None:
    server, alice = make(), FakeClient("alice")
    update = alice.edit("budget", 2500)
    held = server.hold(alice, update)
    assert server.receive(alice, update) == [AwaitInFlightOutcome()]
    assert server.doc.version == 2  # applied once
    server.finish(held)
    assert server.trace == ["persist", "broadcast", "saw 2", "outcome Confirmed", "compact"]


def test_storage_backoff_rolls_back_without_applying() -> None:
    server, alice = make(), FakeClient("alice")
    server.backoff.failed(server.now_ms)
    intents = server.send(alice, alice.edit("budget", 2500))
    (rollback,) = intents
    assert isinstance(rollback, SendRollback)
    assert rollback.reason == "server_error"
    assert (rollback.value, rollback.can_retry, rollback.retry_after_ms) == (2000, True, 1_000)
    assert rollback.message == "the server cannot store changes right now; try again in 1 s."
    assert server.doc.version == 1
    assert not server.outcomes


def test_persist_failure_rolls_back_to_what_storage_holds_with_retry_after() -> None:
    server, alice = make(), FakeClient("alice")
    server.fail_commits = True
    intents = server.send(alice, alice.edit("destination", "Rome"))
    assert [type(i) for i in intents] == [Persist, Compact]
    assert server.trace == ["persist", "rollback server_error", "compact"]
    (rollback,) = alice.outcomes()
    assert isinstance(rollback, SendRollback)
    assert rollback.reason == "server_error"
    # Back to what storage holds: the shell reloaded the document it had applied to.
    assert (rollback.value, rollback.retry_after_ms, rollback.can_retry) == ("Paris", 1_000, True)
    assert server.doc.version == 1
    assert not server.outcomes
    assert alice.seen_version == 1
    server.now_ms += 1_000  # the backoff's trial fails too: the wait doubles
    server.send(alice, alice.edit("destination", "Rome"))
    assert alice.outcomes()[-1] == replace(
        rollback,
        update_id="alice-1",
        retry_after_ms=2_000,
        message="the server cannot store changes right now; try again in 2 s.",
    )


def test_an_update_naming_no_field_is_invalid() -> None:
    with pytest.raises(InvalidUpdate) as caught:
        UpdateStart.of(
            update_id="u1",
            trip_id=TRIP,
            field_name=None,
            field_path=None,
            optimistic_value=1,
        )
    assert caught.value.details == {
        "field": "payload.fieldName",
        "expected": "string",
        "received": "undefined",
    }
    by_path = UpdateStart.of(
        update_id="u2", trip_id=TRIP, field_name=None, field_path="trip.budget", optimistic_value=1
    )
    assert by_path.field_name == "trip.budget"


def test_a_permission_without_a_document_is_misuse() -> None:
    server, alice = make(), FakeClient("alice")
    update = alice.edit("budget", 1)
    facts = server.facts(alice, update)
    with pytest.raises(InvalidState):
        receive_update(update, replace(facts, doc=None))
