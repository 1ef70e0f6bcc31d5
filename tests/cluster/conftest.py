"""Fixtures for the cluster tests: server processes sharing one PostgreSQL and one Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ServerProcess
from tests.services import fresh_postgres_url

Cluster = Callable[..., list[ServerProcess]]


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
