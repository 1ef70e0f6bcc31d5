"""TripSage Sync: the I/O shell (server, CLI, client) of ``tripsage_sync``.

``__version__`` is the one version string: the distribution's (pyproject.toml
reads it), ``tripsage-sync --version``, ``GET /health`` ``version`` and
``connection_established`` ``serverVersion``. The protocol version is another field.
"""

__version__ = "1.0.0"

__all__ = ["__version__"]
