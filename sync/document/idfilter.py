"""Which update ids of a trip may have a stored outcome: a Bloom filter, no false negatives.

``websocket-api.md`` "Optimistic Updates": an ``optimistic_update_start`` is
idempotent by ``updateId``, so before an update is applied the shell must know
whether an outcome is stored for its id. Nearly every id is new, and asking
storage for each costs a read on the event loop for every update. An
:class:`IdFilter` answers "certainly not stored" for almost all of them from
memory; only a "maybe" (an id added before, or about one in a hundred new ids)
needs the read.

Theory of operation: a scalable Bloom filter. Each stage is a bit array of a
power of two bits, at least 10 a member, probed at :data:`PROBES` positions by
double hashing (Kirsch and Mitzenmacher) from Python's own ``hash`` of the id,
which is stable within one process, the filter's whole life (it is never stored).
When a stage holds its capacity, a new stage of twice the capacity takes the
next ids; a lookup asks every stage. So a trip's filter costs 512 bytes at first and
about 2-4 bytes per id it holds (10,000 ids: 32 KB), and the false-positive rate
stays under about 1 % whatever it holds.

The shell builds one per live trip room from the ids storage holds (about 4 us an
id, once; a trip holding more than it will load gets :meth:`IdFilter.everything`
and storage is asked every time, as before) and adds
every id whose outcome it is about to store; an id it adds too early (its commit
then failed) or that storage dropped since is only a "maybe", never a wrong "no".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["PROBES", "IdFilter"]

PROBES: Final = 7  # bit positions an id sets; 7 at ~10 bits a member is ~1 % false positives
BITS_PER_ID: Final = 10
MIN_CAPACITY: Final = 256  # ids in the first stage, at least (512 bytes)
_MASK_64: Final = (1 << 64) - 1


class _Stage:
    __slots__ = ("bits", "capacity", "count", "mask")

    def __init__(self, capacity: int) -> None:
        size = 1 << max(3, (capacity * BITS_PER_ID - 1).bit_length())  # bits, a power of two
        self.bits = bytearray(size // 8)
        self.mask = size - 1
        self.capacity = capacity
        self.count = 0


class IdFilter:
    """A set of ids that answers :meth:`may_hold` with no false negatives."""

    __slots__ = ("_everything", "_stages")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        held = list(ids)
        self._everything = False
        self._stages = [_Stage(max(MIN_CAPACITY, 2 * len(held)))]
        for id_ in held:
            self.add(id_)

    @classmethod
    def everything(cls) -> IdFilter:
        """A filter that answers "maybe" for every id (when building one would cost more
        than it saves: a trip with more ids than the shell loads)."""
        answer = cls()
        answer._everything = True
        return answer

    def add(self, id_: str) -> None:
        if self._everything:
            return
        stage = self._stages[-1]
        if stage.count >= stage.capacity:
            stage = _Stage(2 * stage.capacity)
            self._stages.append(stage)
        stage.count += 1
        bits, mask = stage.bits, stage.mask
        h = hash(id_) & _MASK_64
        first, step = h & 0xFFFFFFFF, (h >> 32) | 1  # odd: every probe differs in 2**n bits
        for i in range(PROBES):
            position = (first + i * step) & mask
            bits[position >> 3] |= 1 << (position & 7)

    def may_hold(self, id_: str) -> bool:
        """False only if ``id_`` was never added."""
        if self._everything:
            return True
        h = hash(id_) & _MASK_64
        first, step = h & 0xFFFFFFFF, (h >> 32) | 1
        for stage in self._stages:
            bits, mask = stage.bits, stage.mask
            for i in range(PROBES):  # most new ids miss at the first probe or two
                position = (first + i * step) & mask
                if not bits[position >> 3] & (1 << (position & 7)):
                    break
            else:
                return True
        return False

    @property
    def nbytes(self) -> int:
        """Memory of the bit arrays."""
        return sum(len(stage.bits) for stage in self._stages)
