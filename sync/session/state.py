"""The states of a JSON connection and the rules that move between them.

One transition function, :meth:`sync.session.Session.transition`, looks the
move up in :data:`TRANSITIONS`; it raises on an illegal move and leaves the
state unchanged (h11's ``_state.py``)::

    AWAITING_AUTH --authenticated--> OPEN --close--> CLOSING --closed--> CLOSED
          |                                              ^
          +-------------------close----------------------+

- Rule 1: the first client frame is the authentication request; only
  AWAITING_AUTH accepts it, and nothing else is read before it succeeds.
- Rule 2: only OPEN processes client messages and sends events.
- Rule 3: CLOSING sends nothing but ``connection_close``/``error`` and the
  close frame; CLOSED is terminal. Any state may jump to CLOSED when the
  transport is lost.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["TRANSITIONS", "State"]


class State(enum.Enum):
    AWAITING_AUTH = "awaiting_auth"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


TRANSITIONS: Final[dict[tuple[State, str], State]] = {
    (State.AWAITING_AUTH, "authenticated"): State.OPEN,
    (State.AWAITING_AUTH, "close"): State.CLOSING,
    (State.OPEN, "close"): State.CLOSING,
    (State.AWAITING_AUTH, "closed"): State.CLOSED,
    (State.OPEN, "closed"): State.CLOSED,
    (State.CLOSING, "closed"): State.CLOSED,
}
