"""Server settings: defaults, a TOML file, ``TRIPSAGE_<NAME>`` environment variables,
CLI flags.

Theory of operation
-------------------
Every setting is a field of :class:`Settings`, a ``pydantic-settings`` model:
its environment variable is ``TRIPSAGE_`` + the field name in upper case, its
key in the config file the field name (``port = 9000``; lists as TOML arrays,
or comma-separated in the environment). Precedence: explicit keyword
overrides (CLI flags) > environment > config file > defaults. The config file
is ``TRIPSAGE_CONFIG`` (or the commands' ``--config``); a key it has that is
no setting is refused, as is every value that does not validate, in one
line naming the variable (:class:`SettingsError`). A ``TRIPSAGE_*``
variable that is no setting is only warned about (:func:`unknown_variables`):
the environment is shared with other programs.

The README's settings table is generated from :data:`DOCS`
(``tests/api/test_settings.py`` keeps them in step).
"""

from __future__ import annotations

import contextvars
import difflib
import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

__all__ = [
    "CONFIG_VARIABLE",
    "DOCS",
    "ENV_PREFIX",
    "LOG_LEVELS",
    "Settings",
    "SettingsError",
    "markdown_table",
    "unknown_variables",
]

ENV_PREFIX: Final = "TRIPSAGE_"
#: The config file's path, when one is used (``--config`` says the same).
CONFIG_VARIABLE: Final = "TRIPSAGE_CONFIG"
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
#: ``TRIPSAGE_*`` variables that are not settings: read by the command line.
OTHER_VARIABLES: Final = frozenset({"TRIPSAGE_DEMO_AGENT", CONFIG_VARIABLE})
_PG_SCHEMES: Final = ("postgresql://", "postgres://")
_REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")
_NODE_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Values never repeated in an error line (they may hold a password).
_SECRET_FIELDS: Final = frozenset({"jwt_secret", "database_url", "redis_url"})
MIN_SECRET_BYTES: Final = 32


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


#: Where :meth:`Settings.from_env` reads: (the environment, the config file's path).
_SOURCES: contextvars.ContextVar[tuple[Mapping[str, str], str | None]] = contextvars.ContextVar(
    "tripsage_settings_sources"
)

Csv = Annotated[tuple[str, ...], NoDecode]


class _Environment(EnvSettingsSource):
    """The ``TRIPSAGE_*`` variables of a given mapping (``os.environ`` by default)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._given = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._given, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class _ConfigFile(PydanticBaseSettingsSource):
    """The settings of a TOML file: top-level keys, each a field name."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self._values: dict[str, Any] = {}
        if path is not None:
            try:
                with open(path, "rb") as file:
                    self._values = tomllib.load(file)
            except FileNotFoundError:
                where = Path(path).absolute()
                raise SettingsError(f"the config file {where} does not exist") from None
            except OSError as exc:
                raise SettingsError(f"cannot read the config file {path}: {exc.strerror}") from None
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"the config file {path} is not valid TOML: {exc}") from None
            known = set(settings_cls.model_fields)
            for key in self._values:
                if key not in known:
                    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    raise SettingsError(f"the config file {path}: {key!r} is not a setting{hint}")

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env, config = _SOURCES.get((os.environ, os.environ.get(CONFIG_VARIABLE) or None))
        return (init_settings, _Environment(settings_cls, env), _ConfigFile(settings_cls, config))

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
        token = _SOURCES.set((env, config or env.get(CONFIG_VARIABLE) or None))
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise SettingsError(_one_line(exc)) from None
        finally:
            _SOURCES.reset(token)

    @field_validator("trusted_proxies", "allowed_origins", "manual_fields", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _csv(value) if isinstance(value, str) else value

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
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must not be negative")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"{ENV_PREFIX}PORT must be 0 to 65535")
        for name in (
            "field_lock_ttl_s",
            "presence_idle_s",
            "shutdown_grace_s",
            "reconnect_after_s",
            "history_retention_days",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must not be negative")
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


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """A warning for each ``TRIPSAGE_*`` variable that is no setting (a typo is otherwise
    silently ignored), with the setting it most resembles."""
    env = os.environ if env is None else env
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | OTHER_VARIABLES
    lines = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known:
            bare = [k.removeprefix(ENV_PREFIX) for k in sorted(known)]
            close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), bare, n=1, cutoff=0.75)
            hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
            lines.append(f"{name} is not a setting and is ignored{hint}")
    return lines


def _one_line(exc: ValidationError) -> str:
    """A validation error as one line: the variable, what is wrong, the value given."""
    error = exc.errors()[0]
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # a rule of the whole model (validate_values)
        return message
    name = str(error["loc"][0])
    if error["type"] == "extra_forbidden":
        return f"{name!r} is not a setting"
    given = "" if name in _SECRET_FIELDS else f" (got {error.get('input')!r})"
    return f"{ENV_PREFIX}{name.upper()}: {message}{given}"


DOCS: Final[dict[str, str]] = {
    "host": "Address to listen on",
    "port": "TCP port",
    "db": "SQLite database file (created if missing); unused when `TRIPSAGE_DATABASE_URL` is set",
    "database_url": "`postgresql://` URL of the shared store of a cluster (docs/cluster.md);"
    " needs `TRIPSAGE_REDIS_URL` too. Unset: one node on the SQLite file `TRIPSAGE_DB`",
    "redis_url": "`redis://` URL of the cluster's bus (fan-out, presence, limits); needs"
    " `TRIPSAGE_DATABASE_URL` too. Unset: a single node",
    "node_id": "This node's name in logs, metrics and `server_health` (unset: host-pid)",
    "jwt_secret": "HS256 secret; unset: a random secret is created once and kept in the database",
    "jwt_issuer": "Required `iss` claim, when set",
    "jwt_audience": "Required `aud` claim, when set",
    "rate_limit_connections_per_min": "New WebSocket connections per minute per IP (0 = off)",
    "rate_limit_auth_per_min": "Authentication attempts per minute per IP (0 = off)",
    "rate_limit_messages_per_min": "Client messages per minute per user (0 = off)",
    "rate_limit_subscriptions_per_min": "Channel subscriptions per minute per user (0 = off)",
    "rate_limit_yjs_frames_per_min": "y-websocket frames per minute per user (over: close 3001)",
    "max_message_size": "Largest client message in bytes (larger: MESSAGE_TOO_LARGE, close 1009)",
    "ws_compression": "Accept permessage-deflate when a client offers it (costs about 46 KB of"
    " memory per connection and CPU per frame; off: frames go uncompressed)",
    "max_connections": "Authenticated connections the server accepts at once (all endpoints)",
    "max_connections_per_user": "Connections one user may hold at once",
    "max_unauthenticated_connections": "JSON sockets still awaiting their auth frame, at once"
    " (not counted in `TRIPSAGE_MAX_CONNECTIONS`); when full, a new one displaces the oldest"
    " of the address holding the most",
    "auth_timeout_s": "Seconds a new connection has to authenticate (then close 3000)",
    "heartbeat_interval_s": "Seconds between server heartbeats; silent for two: closed",
    "header_timeout_s": "Seconds a TCP connection has to send a complete HTTP request head",
    "ping_interval_s": "Seconds a WebSocket may be silent before the server pings it",
    "peer_timeout_s": "Seconds a WebSocket may be silent (no frame of any kind) before it is"
    " closed as dead (1011)",
    "trusted_proxies": "Comma-separated proxy addresses/CIDRs whose X-Forwarded-For is honoured",
    "allowed_origins": "Comma-separated browser origins allowed besides the server's own host",
    "outbound_queue_size": "Events queued per connection before it counts as a slow consumer",
    "send_timeout_s": "Seconds a send may stall before the connection is aborted",
    "typing_timeout_s": "Seconds a typing indicator lasts without a chat_typing_stop",
    "chat_replay_max_messages": "Missed chat messages replayed on reconnect (older: over HTTP)",
    "chat_stream_idle_timeout_s": "Seconds a streamed reply may stall before it is dropped",
    "chat_chunk_reorder_window_s": "Seconds a streamed chunk may wait for a missing earlier one"
    " (then the gap is skipped; 0 = never wait)",
    "chat_chunk_gather_s": "Seconds a streamed chunk may wait for the next ones, so that a"
    " subscriber gets several in one batch frame (the first after a pause goes at once;"
    " 0 = each at once)",
    "yjs_peer_frames_per_s": "Update frames a trip room may send its Yjs peers per second,"
    " counted once per peer: a room of N peers merges the changes committed meanwhile into"
    " one frame at most every N / this many seconds (the first after a pause goes at once;"
    " 0 = one frame per loop iteration)",
    "shutdown_grace_s": "Seconds clients get to drain on shutdown (sent as gracePeriod)",
    "reconnect_after_s": "reconnectAfter sent in connection_close on shutdown",
    "manual_fields": "Trip fields that need manual conflict resolution by default",
    "conflict_auto_resolve_ms": "autoResolveAfter for manual conflicts",
    "field_lock_ttl_s": "Seconds an advisory field lock lasts without a renewal",
    "presence_idle_s": "Seconds without activity before a collaborator shows as not active",
    "room_idle_unload_s": "Seconds a trip room may stay loaded with no connection and no"
    " pending work before it is unloaded from memory (loaded again on next use)",
    "history_retention_days": "Days of update history kept for clients that were offline",
    "compact_every_updates": "Updates between snapshots of a trip",
    "history_window_updates": "Updates of a loaded trip's history kept in memory (up to twice"
    " as many); older ones are read from storage when a client needs them. 0: keep them all",
    "storage_retry_initial_ms": "While storage fails (disk full): first retryAfter of refused"
    " edits, doubled by every failed retry",
    "storage_retry_max_ms": "Largest retryAfter while storage fails",
    "log_level": "Logging level: debug, info, warning, error or critical",
    "log_format": "`text` or `json` log lines",
    "dev_mode": "Demo sign-in: `POST /api/dev/token` mints user tokens, only while"
    " `TRIPSAGE_JWT_SECRET` is unset (`serve --demo-agent` turns it on); refused on an"
    " address that is not loopback unless `TRIPSAGE_DEV_SIGN_IN_ANYWHERE` is set",
    "dev_sign_in_anywhere": "Allow demo sign-in on a non-loopback address (anyone who reaches"
    " the server can sign in as anyone; `serve --dev-sign-in-anywhere`)",
}


def markdown_table() -> str:
    """The README's settings table (``tests/api/test_settings.py`` keeps it current)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, f in Settings.model_fields.items():
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(default) or "(empty)"
        elif default is None:
            default = "(unset)"
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | `{default}` | {DOCS[name]} |")
    return "\n".join(rows)
