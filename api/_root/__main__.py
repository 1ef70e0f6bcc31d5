"""``python -m tripsage_sync``: the ``tripsage-sync`` command line (``api/cli.py``).

This folder is mapped onto the root of the ``tripsage_sync`` namespace package
(``package-dir`` in pyproject.toml); it holds only this module.
"""

import sys

from tripsage_sync.api.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
