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
    """``cluster(n, **settings)``: ``n`` nodes on a fresh database of this test's own."""
    database_url = fresh_postgres_url(postgres_url)

    def start(nodes: int = 2, **settings: Any) -> list[ServerProcess]:
        return [
            server_factory(
                database_url=database_url,
                redis_url=redis_url,
                node_id=f"node-{index}",
                log_level="debug",
                **settings,
            )
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
