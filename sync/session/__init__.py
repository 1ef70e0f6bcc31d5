"""The per-connection protocol of the JSON endpoints, sans I/O (``websocket-api.md``).

One module a concern, each with its part of the theory:

* :mod:`.state`: the states and the table of their transitions;
* :mod:`.core`: :class:`Session`, the state machine and its inputs (frames,
  time, the outcomes of intents that waited);
* :mod:`.handshake`: the authentication rules, :class:`Policy` (the limits);
* :mod:`.inbound`: binary refusal, batch unwrapping, the rate-limited rollback;
* :mod:`.facts`: :class:`Facts`, the port through which the rules ask the shell;
* :mod:`.intent`: what the session asks the shell to do;
* :mod:`.token`: a live token's lifetime (warning, expiry).

Callers import from here: ``from tripsage_sync.sync.session import Session``.
"""

from __future__ import annotations

from tripsage_sync.sync.session.core import ABUSIVE_REFUSALS, IDLE_INTERVALS, Session
from tripsage_sync.sync.session.facts import Facts, Ownership, Verified
from tripsage_sync.sync.session.handshake import FEATURES, Policy
from tripsage_sync.sync.session.intent import (
    BindUser,
    ClaimSession,
    Close,
    DispatchMessage,
    Immediate,
    Intent,
    Received,
    RefuseAuth,
    Send,
    SendError,
    SendHeartbeat,
    SendOutcome,
    SetDeadline,
    Subscribe,
    SubscribeImplicit,
    Welcome,
    error_close_frames,
)
from tripsage_sync.sync.session.state import State
from tripsage_sync.sync.session.token import (
    REFRESH_MARGIN_S,
    TOKEN_WARNING_S,
    CloseExpired,
    TokenLifetime,
    WarnExpiring,
)

__all__ = [
    "ABUSIVE_REFUSALS",
    "FEATURES",
    "IDLE_INTERVALS",
    "REFRESH_MARGIN_S",
    "TOKEN_WARNING_S",
    "BindUser",
    "ClaimSession",
    "Close",
    "CloseExpired",
    "DispatchMessage",
    "Facts",
    "Immediate",
    "Intent",
    "Ownership",
    "Policy",
    "Received",
    "RefuseAuth",
    "Send",
    "SendError",
    "SendHeartbeat",
    "SendOutcome",
    "Session",
    "SetDeadline",
    "State",
    "Subscribe",
    "SubscribeImplicit",
    "TokenLifetime",
    "Verified",
    "WarnExpiring",
    "Welcome",
    "error_close_frames",
]
