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

from tripsage_sync.api.settings.catalog import DOCS, markdown_table, unknown_variables
from tripsage_sync.api.settings.model import LOG_LEVELS, MIN_SECRET_BYTES, Settings
from tripsage_sync.api.settings.sources import CONFIG_VARIABLE, ENV_PREFIX, SettingsError

__all__ = [
    "CONFIG_VARIABLE",
    "DOCS",
    "ENV_PREFIX",
    "LOG_LEVELS",
    "MIN_SECRET_BYTES",
    "Settings",
    "SettingsError",
    "markdown_table",
    "unknown_variables",
]
