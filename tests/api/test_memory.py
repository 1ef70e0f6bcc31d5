"""Memory given back after an idle sweep (``api.transport.memory``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tripsage_sync.api.transport.memory import give_back
from tripsage_sync.storage.sqlite import Storage


def test_give_back_shrinks_a_real_store(tmp_path: Path) -> None:
    with Storage(tmp_path / "m.db") as store:
        calls: list[None] = []

        def shrink() -> None:
            store.shrink_memory()
            calls.append(None)

        give_back(shrink)
        assert calls == [None]


def test_a_failing_shrink_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise OSError("closed")

    with caplog.at_level(logging.ERROR):
        give_back(broken)
    assert "could not shrink" in caplog.text
