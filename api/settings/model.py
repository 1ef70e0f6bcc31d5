"""The settings of the server, one validated field each (:mod:`api.settings`)."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from typing import Any, Final

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tripsage_sync.api.settings.sources import (
    CONFIG_VARIABLE,
    ENV_PREFIX,
    SOURCES,
    Csv,
    SettingsError,
    csv,
    one_line,
    sources_of,
)

__all__ = ["LOG_LEVELS", "MIN_SECRET_BYTES", "MIN_WEBHOOK_SECRET", "Settings"]

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
_PG_SCHEMES: Final = ("postgresql://", "postgres://")
_REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")
_NODE_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIN_SECRET_BYTES: Final = 32
MIN_WEBHOOK_SECRET: Final = 16


class Settings(BaseSettings):
    """Every setting of the server (module doc); build it with :meth:`from_env`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", env_ignore_empty=True
    )

    host: str = "127.0.0.1"
    port: int = 8000
    db: str = "./tripsage.db"
    database_url: str | None = Field(default=None, repr=False)
    redis_url: str | None = Field(default=None, repr=False)
    node_id: str | None = None
    jwt_secret: str | None = Field(default=None, repr=False)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    rate_limit_connections_per_min: int = 10
    rate_limit_auth_per_min: int = 5
    rate_limit_messages_per_min: int = 100
    rate_limit_subscriptions_per_min: int = 20
    rate_limit_yjs_frames_per_min: int = 3000
    max_message_size: int = 1_048_576
    ws_compression: bool = False
    max_connections: int = 1000
    max_connections_per_user: int = 20
    max_unauthenticated_connections: int = 200
    auth_timeout_s: float = 10.0
    heartbeat_interval_s: float = 25.0
    header_timeout_s: float = 10.0
    ping_interval_s: float = 8.0
    peer_timeout_s: float = 13.0
    trusted_proxies: Csv = ()
    allowed_origins: Csv = ()
    outbound_queue_size: int = 1024
    send_timeout_s: float = 10.0
    typing_timeout_s: float = 6.0
    chat_replay_max_messages: int = 200
    chat_stream_idle_timeout_s: float = 300.0
    chat_chunk_reorder_window_s: float = 2.0
    chat_chunk_gather_s: float = 0.025
    yjs_peer_frames_per_s: int = 10_000
    shutdown_grace_s: float = 5.0
    reconnect_after_s: float = 5.0
    manual_fields: Csv = ("budget",)
    conflict_auto_resolve_ms: int = 30_000
    field_lock_ttl_s: float = 30.0
    presence_idle_s: float = 60.0
    room_idle_unload_s: float = 300.0
    history_retention_days: float = 30.0
    compact_every_updates: int = 500
    history_window_updates: int = 256
    storage_retry_initial_ms: int = 1000
    storage_retry_max_ms: int = 30_000
    log_level: str = "info"
    log_format: str = "text"
    dev_mode: bool = False
    dev_sign_in_anywhere: bool = False
    hooks: str | None = None
    webhook_url: str | None = Field(default=None, repr=False)
    webhook_secret: str | None = Field(default=None, repr=False)
    webhook_attempts: int = 6
    webhook_timeout_s: float = 5.0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, *sources_of(settings_cls))

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        config: str | None = None,
        **overrides: Any,
    ) -> Settings:
        """The settings of ``env`` (default ``os.environ``), the config file (``config``,
        else ``TRIPSAGE_CONFIG``) and ``overrides`` (``None`` values are ignored)."""
        env = os.environ if env is None else env
        token = SOURCES.set((env, config or env.get(CONFIG_VARIABLE) or None))
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise SettingsError(one_line(exc)) from None
        finally:
            SOURCES.reset(token)

    @field_validator("trusted_proxies", "allowed_origins", "manual_fields", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return csv(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        self.validate_values()
        return self

    def validate_values(self) -> None:
        """Refuse values of the right type that cannot be used (:class:`SettingsError`)."""
        for name in (
            "rate_limit_connections_per_min",
            "rate_limit_auth_per_min",
            "rate_limit_messages_per_min",
            "rate_limit_subscriptions_per_min",
            "rate_limit_yjs_frames_per_min",
            "compact_every_updates",
            "conflict_auto_resolve_ms",
            "field_lock_ttl_s",
            "presence_idle_s",
            "shutdown_grace_s",
            "reconnect_after_s",
            "history_retention_days",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must not be negative")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"{ENV_PREFIX}PORT must be 0 to 65535")
        if self.webhook_url is not None:
            if not self.webhook_url.startswith(("http://", "https://")):
                raise SettingsError(f"{ENV_PREFIX}WEBHOOK_URL must be an http:// or https:// URL")
            if not self.webhook_secret or len(self.webhook_secret.encode()) < MIN_WEBHOOK_SECRET:
                raise SettingsError(
                    f"{ENV_PREFIX}WEBHOOK_URL needs {ENV_PREFIX}WEBHOOK_SECRET, at least"
                    f" {MIN_WEBHOOK_SECRET} bytes: the receiver checks each delivery's signature"
                )
        if self.webhook_attempts < 1 or self.webhook_timeout_s <= 0:
            raise SettingsError(
                f"{ENV_PREFIX}WEBHOOK_ATTEMPTS must be at least 1 and"
                f" {ENV_PREFIX}WEBHOOK_TIMEOUT_S positive"
            )
        if self.hooks is not None and not re.fullmatch(r"[\w.]+:[\w.]+", self.hooks):
            raise SettingsError(f"{ENV_PREFIX}HOOKS must be package.module:attribute")
        if self.log_level.lower() not in LOG_LEVELS:
            raise SettingsError(
                f"{ENV_PREFIX}LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not"
                f" {self.log_level!r}"
            )
        if self.dev_mode and not self.dev_sign_in_anywhere and not _loopback(self.host):
            raise SettingsError(
                f"demo sign-in (--demo-agent, {ENV_PREFIX}DEV_MODE) lets anyone sign in as"
                f" anyone; refused on {self.host}, which is not a loopback address: listen on"
                " 127.0.0.1, or pass --dev-sign-in-anywhere if every network that reaches"
                " it is yours"
            )
        for name in (
            "max_message_size",
            "max_connections",
            "max_connections_per_user",
            "max_unauthenticated_connections",
            "outbound_queue_size",
            "chat_replay_max_messages",
            "storage_retry_initial_ms",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be at least 1")
        if self.history_window_updates < 0:
            raise SettingsError(f"{ENV_PREFIX}HISTORY_WINDOW_UPDATES must not be negative")
        if self.storage_retry_max_ms < self.storage_retry_initial_ms:
            raise SettingsError(
                "TRIPSAGE_STORAGE_RETRY_MAX_MS must be at least TRIPSAGE_STORAGE_RETRY_INITIAL_MS"
            )
        for name in (
            "auth_timeout_s",
            "heartbeat_interval_s",
            "header_timeout_s",
            "ping_interval_s",
            "peer_timeout_s",
            "send_timeout_s",
            "typing_timeout_s",
            "chat_stream_idle_timeout_s",
            "room_idle_unload_s",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be positive")
        if not 0 <= self.chat_chunk_reorder_window_s <= 60:
            raise SettingsError(f"{ENV_PREFIX}CHAT_CHUNK_REORDER_WINDOW_S must be 0 to 60")
        if not 0 <= self.chat_chunk_gather_s <= 60:
            raise SettingsError(f"{ENV_PREFIX}CHAT_CHUNK_GATHER_S must be 0 to 60")
        if self.yjs_peer_frames_per_s < 0:
            raise SettingsError(f"{ENV_PREFIX}YJS_PEER_FRAMES_PER_S must be 0 or more")
        if self.peer_timeout_s <= self.ping_interval_s:
            raise SettingsError(
                "TRIPSAGE_PEER_TIMEOUT_S must be longer than TRIPSAGE_PING_INTERVAL_S"
            )
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
            raise SettingsError(
                f"TRIPSAGE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (RFC 7518 3.2)"
            )
        if self.database_url is not None and not self.database_url.startswith(_PG_SCHEMES):
            raise SettingsError("TRIPSAGE_DATABASE_URL must be a postgresql:// URL")
        if self.redis_url is not None and not self.redis_url.startswith(_REDIS_SCHEMES):
            raise SettingsError("TRIPSAGE_REDIS_URL must be a redis://, rediss:// or unix:// URL")
        if self.node_id is not None and not _NODE_ID.fullmatch(self.node_id):
            raise SettingsError("TRIPSAGE_NODE_ID must be 1-64 letters, digits, '.', '_' or '-'")
        if self.log_format not in ("text", "json"):
            raise SettingsError("TRIPSAGE_LOG_FORMAT must be 'text' or 'json'")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise SettingsError(f"TRIPSAGE_TRUSTED_PROXIES: bad address {proxy!r}") from exc

    def require_cluster_pair(self) -> None:
        """A cluster needs both engines: PostgreSQL without Redis (or the reverse) is refused."""
        if (self.database_url is None) != (self.redis_url is None):
            given, missing = (
                ("TRIPSAGE_DATABASE_URL", "TRIPSAGE_REDIS_URL")
                if self.redis_url is None
                else ("TRIPSAGE_REDIS_URL", "TRIPSAGE_DATABASE_URL")
            )
            raise SettingsError(
                f"{given} is set but {missing} is not: cluster mode needs PostgreSQL and Redis"
                " together (docs/cluster.md); unset both for one node on SQLite"
            )

    def warnings(self) -> list[str]:
        """What the operator must hear at start, though it is allowed."""
        if self.dev_mode and self.dev_sign_in_anywhere and not _loopback(self.host):
            return [
                f"DEMO SIGN-IN IS OPEN ON {self.host}: anyone who reaches this server can"
                " sign in as any user (--dev-sign-in-anywhere); never run it like this on a"
                " network you do not control"
            ]
        return []

    @property
    def node(self) -> str:
        """This process's name in logs, metrics and ``server_health``: ``node_id`` or host-pid."""
        return self.node_id or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def store_location(self) -> str:
        """What the store opens: the PostgreSQL URL of a cluster, else the SQLite file."""
        return self.database_url or self.db

    def limits_summary(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in (
                "max_message_size",
                "max_connections",
                "rate_limit_messages_per_min",
                "heartbeat_interval_s",
            )
        }


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
