"""The drivers' plain-text tables: columns padded to their widest cell, the last one left free (it
holds notes and problems of any length), trailing spaces trimmed."""
from __future__ import annotations

from collections.abc import Sequence


def columns(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    return "\n".join(("  ".join(v.ljust(w) for v, w in zip(r[:-1], widths)) + "  " + r[-1]).rstrip()
                     for r in [head, *rows])
