"""Client ids and state vectors: which Yjs client wrote what, as plain numbers.

Every replica of a trip's document gets a client id of its own (pycrdt drops
the edits of a merged doc that reuses one): :func:`derive_client_id` makes it
from the trip and a key (``live``, an update id), so that the same edit gets
the same id on every server and arrival order does not change the merge.
:func:`state_vector` decodes a v1 state vector without a Doc.
"""

from __future__ import annotations

import hashlib

__all__ = ["derive_client_id", "state_vector"]


def derive_client_id(trip_id: str, key: str, taken: set[int]) -> int:
    """A 32-bit non-zero client id from (trip, key), re-salted until not ``taken``."""
    salt = 0
    while True:
        material = f"{trip_id}\x1f{key}\x1f{salt}".encode()
        client_id = int.from_bytes(hashlib.blake2b(material, digest_size=4).digest(), "big")
        if client_id != 0 and client_id not in taken:
            return client_id
        salt += 1


def state_vector(state: bytes) -> dict[int, int]:
    """Decode a Yjs v1 state vector: varuint count, then (client, clock) varuint pairs."""
    numbers: list[int] = []
    value = shift = 0
    for byte in state:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            numbers.append(value)
            value = shift = 0
    count = numbers[0] if numbers else 0
    pairs = numbers[1 : 1 + 2 * count]
    return dict(zip(pairs[0::2], pairs[1::2], strict=True))
