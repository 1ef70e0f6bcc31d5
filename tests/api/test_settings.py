"""Settings: environment variables, validation, and the README table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tripsage_sync.api.settings import (
    DOCS,
    Settings,
    SettingsError,
    markdown_table,
    unknown_variables,
)


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
        {"TRIPSAGE_RATE_LIMIT_MESSAGES_PER_MIN": "-5"},
        {"TRIPSAGE_RATE_LIMIT_AUTH_PER_MIN": "-1"},
        {"TRIPSAGE_PORT": "70000"},
        {"TRIPSAGE_LOG_LEVEL": "loud"},
        {"TRIPSAGE_WS_COMPRESSION": "maybe"},
        {"TRIPSAGE_FIELD_LOCK_TTL_S": "-1"},
        {"TRIPSAGE_DEV_MODE": "1", "TRIPSAGE_HOST": "0.0.0.0"},
    ],
)
def test_bad_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_every_setting_is_documented_in_the_readme() -> None:
    assert set(DOCS) == set(Settings.model_fields)
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "regenerate the README table: api.settings.markdown_table()"


def test_a_config_file_sits_below_the_environment_and_the_flags(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(
        'port = 9100\nallowed_origins = ["https://a.example", "https://b.example"]\n'
        "rate_limit_messages_per_min = 7\n"
    )
    s = Settings.from_env({}, config=str(config))
    assert (s.port, s.rate_limit_messages_per_min) == (9100, 7)
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert Settings.from_env({"TRIPSAGE_PORT": "9200"}, config=str(config)).port == 9200
    assert Settings.from_env({"TRIPSAGE_PORT": "9200"}, config=str(config), port=1).port == 1
    # TRIPSAGE_CONFIG names the file as --config does.
    assert Settings.from_env({"TRIPSAGE_CONFIG": str(config)}).port == 9100


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("prot = 9000\n", "'prot' is not a setting (did you mean port?)"),
        ("port = \n", "is not valid TOML"),
        ('port = "x"\n', "TRIPSAGE_PORT"),
        ("rate_limit_auth_per_min = -3\n", "TRIPSAGE_RATE_LIMIT_AUTH_PER_MIN must not be negative"),
    ],
)
def test_a_bad_config_file_is_refused_in_one_line(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(text)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({}, config=str(config))
    assert needle in str(refused.value)
    assert "\n" not in str(refused.value)
    with pytest.raises(SettingsError, match="does not exist"):
        Settings.from_env({}, config=str(tmp_path / "missing.toml"))


def test_secrets_are_never_repeated_in_an_error() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"TRIPSAGE_DATABASE_URL": "mysql://u:hunter2@db/x"})
    assert "hunter2" not in str(refused.value)


def test_unknown_variables_are_warned_about_with_the_closest_setting() -> None:
    env = {"TRIPSAGE_PROT": "9000", "TRIPSAGE_PORT": "1", "TRIPSAGE_ZZZ": "1", "OTHER": "x"}
    assert unknown_variables(env) == [
        "TRIPSAGE_PROT is not a setting and is ignored (did you mean TRIPSAGE_PORT?)",
        "TRIPSAGE_ZZZ is not a setting and is ignored",
    ]
