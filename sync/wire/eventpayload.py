"""The base of every server event payload: the model names its event type.

``websocket-api.md`` "Base Message Structure": an event's ``type`` and its
``payload`` belong together, so the type is a class attribute of the payload
model (:attr:`EventPayload.EVENT_TYPE`) and :func:`sync.wire.make_event` takes
it from there; a payload of one type cannot be sent as another. Each event type
has exactly one model, registered when its class is made
(:data:`EVENT_PAYLOADS`; a second model for a type is refused).

How a payload goes on the wire is the model's own decision (:meth:`EventPayload.wire`):
every field, ``null`` included (the spec shows ``null`` values in payloads), unless
the model sets :attr:`EventPayload.OMIT_UNSET` for keys sent only when there is
something to say (``replayed``, ``retryAfter``, ``catchUp``). This module imports no
other wire module, so client payloads (:mod:`sync.wire.payload`, relayed as sent)
and the envelope (:mod:`sync.wire.event`) both build on it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

__all__ = ["EVENT_PAYLOADS", "EventPayload"]

# Event type -> its one payload model (filled as the models are defined).
EVENT_PAYLOADS: dict[str, type[EventPayload]] = {}


class EventPayload(BaseModel):
    """A server event payload; a concrete model sets ``EVENT_TYPE``."""

    model_config = ConfigDict(frozen=True)

    EVENT_TYPE: ClassVar[str]
    # Leave out the fields the builder did not set (absent keys stay absent).
    OMIT_UNSET: ClassVar[bool] = False

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        event_type = cls.__dict__.get("EVENT_TYPE")
        if event_type is None:
            return  # an intermediate base
        other = EVENT_PAYLOADS.setdefault(event_type, cls)
        if other is not cls:
            raise TypeError(f"{event_type!r} has a payload model already: {other.__qualname__}")

    def wire(self) -> dict[str, Any]:
        """The JSON object of this payload."""
        return self.model_dump(mode="json", exclude_unset=self.OMIT_UNSET)
