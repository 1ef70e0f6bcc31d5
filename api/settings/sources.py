"""Where settings come from, for :class:`api.settings.model.Settings`: the environment
(a given mapping or ``os.environ``), a TOML config file, and the one-line refusal of a
value that does not validate.
"""

from __future__ import annotations

import contextvars
import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

__all__ = [
    "CONFIG_VARIABLE",
    "ENV_PREFIX",
    "SOURCES",
    "ConfigFile",
    "Csv",
    "Environment",
    "SettingsError",
    "csv",
    "one_line",
    "sources_of",
]

ENV_PREFIX: Final = "TRIPSAGE_"
#: The config file's path, when one is used (``--config`` says the same).
CONFIG_VARIABLE: Final = "TRIPSAGE_CONFIG"
#: Values never repeated in an error line (they may hold a password).
_SECRET_FIELDS: Final = frozenset(
    {"jwt_secret", "database_url", "redis_url", "webhook_url", "webhook_secret"}
)


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


#: Where :meth:`Settings.from_env` reads: (the environment, the config file's path).
SOURCES: contextvars.ContextVar[tuple[Mapping[str, str], str | None]] = contextvars.ContextVar(
    "tripsage_settings_sources"
)

Csv = Annotated[tuple[str, ...], NoDecode]


class Environment(EnvSettingsSource):
    """The ``TRIPSAGE_*`` variables of a given mapping (``os.environ`` by default)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._given = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._given, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class ConfigFile(PydanticBaseSettingsSource):
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


def sources_of(settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
    """The environment, then the config file, of the :data:`SOURCES` in effect."""
    env, config = SOURCES.get((os.environ, os.environ.get(CONFIG_VARIABLE) or None))
    return (Environment(settings_cls, env), ConfigFile(settings_cls, config))


def csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def one_line(exc: ValidationError) -> str:
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
