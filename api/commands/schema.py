"""``tripsage-sync schema``: write or check the protocol documents under ``docs/``.

``schema`` writes ``asyncapi.json`` and ``openapi.json`` (what the server
serves at ``/asyncapi.json`` and ``/openapi.json``) into ``--out`` (default
``docs``); ``schema --check`` writes nothing and exits 1, naming the file, when
a committed copy differs from what the models generate (CI runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tripsage_sync.api.commands.preflight import Refused
from tripsage_sync.api.protocol import DOCUMENTS, document_text, write_documents

__all__ = ["schema"]


def schema(args: argparse.Namespace) -> int:
    folder = Path(args.out)
    if not folder.is_dir():
        raise Refused(f"{folder}: no such directory (make it, or pass --out DIR)")
    if not args.check:
        for path in write_documents(folder):
            print(f"wrote {path}")  # noqa: T201
        return 0
    stale = [
        name
        for name in DOCUMENTS
        if not (folder / name).is_file()
        or (folder / name).read_text(encoding="utf-8") != document_text(name)
    ]
    for name in stale:
        print(  # noqa: T201
            f"tripsage-sync: {folder / name} is not what the models generate: "
            f"run `tripsage-sync schema --out {folder}` and commit it",
            file=sys.stderr,
        )
    return 1 if stale else 0
