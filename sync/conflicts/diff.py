"""Diffs for the text and list merge.

:func:`diff_ops` turns ``previousValue -> optimisticValue`` into replace
operations in base coordinates, returned last-first so applying them in
order never shifts a later one. Common prefix and suffix are trimmed
first; a middle larger than :data:`MAX_DIFF_CELLS` is one replacement, so
the work stays bounded.
"""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Sequence
from typing import Final

__all__ = ["MAX_DIFF_CELLS", "diff_ops"]

MAX_DIFF_CELLS: Final = 4_000_000  # len(a) * len(b) of a trimmed middle before giving up


def diff_ops(old: Sequence[Hashable], new: Sequence[Hashable]) -> list[tuple[int, int, int, int]]:
    """Replace ops ``old[i1:i2] -> new[j1:j2]``, last first, that turn ``old`` into ``new``."""
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    a, b = old[prefix : len(old) - suffix], new[prefix : len(new) - suffix]
    if not a and not b:
        return []
    if not a or not b or len(a) * len(b) > MAX_DIFF_CELLS:
        ops = [(0, len(a), 0, len(b))]
    else:
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        ops = [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]
    return [
        (i1 + prefix, i2 + prefix, j1 + prefix, j2 + prefix) for i1, i2, j1, j2 in reversed(ops)
    ]
