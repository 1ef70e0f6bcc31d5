"""Settings: environment variables, validation, and the README table."""

from __future__ import annotations

from dataclasses import fields

import pytest

from tests.conftest import ROOT
from tripsage_sync.api.settings import DOCS, Settings, SettingsError, markdown_table


def test_defaults_are_the_specs() -> None:
    s = Settings()
    assert s.rate_limit_connections_per_min == 10
    assert s.rate_limit_auth_per_min == 5
    assert s.rate_limit_messages_per_min == 100
    assert s.rate_limit_subscriptions_per_min == 20
    assert s.max_message_size == 1_048_576
    assert s.max_connections == 1000
    assert s.auth_timeout_s == 10
    assert s.heartbeat_interval_s == 25


def test_environment_and_overrides() -> None:
    env = {
        "TRIPSAGE_PORT": "9001",
        "TRIPSAGE_HEARTBEAT_INTERVAL_S": "1.5",
        "TRIPSAGE_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
        "TRIPSAGE_JWT_SECRET": "s" * 32,
        "UNRELATED": "x",
    }
    s = Settings.from_env(env, port=None, db="/tmp/x.db")
    assert s.port == 9001
    assert s.heartbeat_interval_s == 1.5
    assert s.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert s.db == "/tmp/x.db"
    assert "s" * 32 not in repr(s)  # the secret never shows in a repr or a log line


@pytest.mark.parametrize(
    "env",
    [
        {"TRIPSAGE_PORT": "eighty"},
        {"TRIPSAGE_MAX_CONNECTIONS": "0"},
        {"TRIPSAGE_JWT_SECRET": "short"},
        {"TRIPSAGE_TRUSTED_PROXIES": "not-an-ip"},
        {"TRIPSAGE_LOG_FORMAT": "xml"},
        {"TRIPSAGE_CHAT_CHUNK_REORDER_WINDOW_S": "-1"},
        {"TRIPSAGE_STORAGE_RETRY_INITIAL_MS": "0"},
        {"TRIPSAGE_STORAGE_RETRY_INITIAL_MS": "2000", "TRIPSAGE_STORAGE_RETRY_MAX_MS": "1000"},
    ],
)
def test_bad_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_every_setting_is_documented_in_the_readme() -> None:
    assert set(DOCS) == {f.name for f in fields(Settings)}
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "regenerate the README table: api.settings.markdown_table()"
