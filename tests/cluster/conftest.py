"""Fixtures for the cluster tests: server processes sharing one PostgreSQL and one Redis,
and a TCP proxy in front of them (``tests/cluster/proxy.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from tests.cluster.proxy import Proxy
from tests.conftest import ServerProcess
from tests.services import fresh_postgres_url

Cluster = Callable[..., list[ServerProcess]]
Balancer = Callable[[Sequence[ServerProcess]], Awaitable[Proxy]]


@pytest.fixture
def cluster(
    server_factory: Callable[..., ServerProcess], postgres_url: str, redis_url: str
) -> Cluster:
    """``cluster(n, **settings)``: ``n`` nodes on a fresh database of this test's own
    (``settings`` may name another ``redis_url``, and a ``name`` for the node ids)."""
    database_url = fresh_postgres_url(postgres_url)

    def start(nodes: int = 2, *, name: str = "node", **settings: Any) -> list[ServerProcess]:
        settings = {"redis_url": redis_url, "log_level": "debug", **settings}
        return [
            server_factory(database_url=database_url, node_id=f"{name}-{index}", **settings)
            for index in range(nodes)
        ]

    return start


@pytest.fixture
async def balancer() -> AsyncIterator[Balancer]:
    """``await balancer(nodes)``: a :class:`Proxy` in front of ``nodes``, closed at the end."""
    proxies: list[Proxy] = []

    async def start(nodes: Sequence[ServerProcess]) -> Proxy:
        proxies.append(await Proxy.start([node.port for node in nodes]))
        return proxies[-1]

    yield start
    for proxy in proxies:
        await proxy.close()


def through(proxy: Proxy, node: ServerProcess) -> ServerProcess:
    """What clients use to reach the cluster behind ``proxy``: ``node`` with the proxy's port
    (``.ws``, ``.http``, ``.token`` as the helpers expect) and no process, so nothing can
    stop it; every node has the same token secret."""
    return dataclasses.replace(node, port=proxy.port, process=None)
