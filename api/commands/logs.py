"""Log lines of the CLI and the server: token masking, the JSON format.

Logs never carry tokens: a filter masks ``token=`` query values in uvicorn's
lines, and our own code never logs them. The database and Redis drivers log at
INFO and above only, also when ours log at DEBUG (their debug lines, one per
connection made, are about them, not the server).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any, Final

__all__ = ["JsonFormatter", "TokenMask", "configure_logging"]

logger = logging.getLogger(__name__)

#: Libraries whose DEBUG lines stay out of the server's debug log.
_DRIVERS: Final = ("redis", "psycopg")

_TOKEN: Final = re.compile(r"((?:access_)?token=)[^&\s\"']+", re.IGNORECASE)


class TokenMask(logging.Filter):
    """Mask ``token=...`` in every log record (URLs in uvicorn's lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message.lower():
            record.msg = _TOKEN.sub(r"\1***", message)
            record.args = None
        return True


# Attributes every LogRecord has; anything else was passed as ``extra``.
_RECORD_FIELDS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a record's ``extra`` fields (``conn``, ``user``,
    ``trip``, ``code``...) become keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in data:
                plain = value is None or isinstance(value, str | int | float | bool)
                data[key] = value if plain else str(value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TokenMask())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _DRIVERS:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers[:] = []
        uv.propagate = True
