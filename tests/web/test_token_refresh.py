"""The browser client's live tokens in Chromium (``api/web/client.js`` ``tokenProvider``).

A ``WebSocketManager`` built as an app would build it, with a token that
expires in a few seconds and a ``tokenProvider`` callback: it refreshes on
``auth_expiring`` and stays connected past the first token's exp, or, when
the callback fails the first time, reconnects with a fresh token after the
server closed it at exp (3000) instead of giving up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt

from tests.web.conftest import Web

SHORT_TTL_S = 5  # exp is a whole second: 4-5 s left

# Resolves once a server heartbeat stamped 0.5 s after the first token's exp
# arrived on a socket that has refreshed (or reconnected); rejects after 20 s.
SCRIPT = """async ([short, fresh, expMs, failFirst]) => {
  const { WebSocketManager } = await import('/static/client.js');
  const seen = [];
  let calls = 0;
  const manager = new WebSocketManager({
    url: `ws://${location.host}/ws/chat/s-web`,
    token: short,
    sessionId: 's-web',
    tokenProvider: async () => {
      calls += 1;
      if (failFirst && calls === 1) throw new Error('auth server unavailable');
      return fresh;
    },
  });
  manager.on('open', () => seen.push('open'));
  manager.on('message', (event) => seen.push(event.type));
  manager.on('close', ({ code }) => seen.push(`close ${code}`));
  manager.on('fatal', ({ code }) => seen.push(`fatal ${code}`));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timeout: ' + seen.join(','))), 20000);
    manager.on('connection_heartbeat', (event) => {
      if (Date.parse(event.payload.serverTime) > expMs + 500) {
        clearTimeout(timer);
        resolve();
      }
    });
    manager.start();
  });
  const state = manager.state;
  manager.stop();
  return { seen, calls, state };
}"""


def run(web: Web, *, fail_first: bool) -> dict[str, Any]:
    server = web.server
    page = web.watch(web.context().new_page())
    page.goto("/health")  # any page of the server's origin can import the module
    short = server.token("alice", ttl_s=SHORT_TTL_S)  # minted last: its seconds are for the test
    exp_ms = int(jwt.decode(short, options={"verify_signature": False})["exp"]) * 1000
    result: dict[str, Any] = page.evaluate(
        SCRIPT, [short, server.token("alice"), exp_ms, fail_first]
    )
    assert time.time() * 1000 > exp_ms
    return result


def test_the_browser_client_refreshes_through_its_callback(
    web_factory: Callable[..., Web],
) -> None:
    result = run(web_factory(heartbeat_interval_s=1), fail_first=False)
    seen = result["seen"]
    assert "auth_expiring" in seen
    assert "auth_refreshed" in seen
    assert seen.count("open") == 1, seen
    assert not [s for s in seen if s.startswith(("close", "fatal"))], seen
    assert (result["calls"], result["state"]) == (1, "open")


def test_the_browser_client_reconnects_with_a_fresh_token_after_expiry(
    web_factory: Callable[..., Web],
) -> None:
    result = run(web_factory(heartbeat_interval_s=1), fail_first=True)
    seen = result["seen"]
    assert "connection_error" in seen
    assert "close 3000" in seen
    assert seen.count("open") == 2, seen
    assert not [s for s in seen if s.startswith("fatal")], seen
    assert (result["calls"], result["state"]) == (2, "open")
