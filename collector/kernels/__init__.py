"""The one switch for the compiled kernels (one extension module from the C files beside this
one: `_kernels.c`, grouped sums, the set walk, field reads, IPv4 range lookups, learned-address
lookups, the audit log's rows; `_classify.c`, the classifier's common case; `_aggregate.c`, the
aggregator's reduction of a batch and its running totals; `_audit.c`, the audit log's selection
and chunk encoding). `compiled` is the extension module when it was built at install time and
not turned off, else None, and the hot path then does the same work in NumPy with the same
results. `IMFLOW_KERNELS=0` in the environment turns them off (to compare, or to rule them
out); tests switch them with `use(False)`. Callers read `kernels.compiled` at call time, never
at import."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

# what the hot path calls; a module without one of them (built from an older tree and left in
# place) counts as not built, so no caller needs to check for each function itself
FUNCTIONS = ("audit_fill", "audit_pack", "audit_select", "audit_spans", "bins", "classify", "fields", "group_sums",
             "headers", "learned", "lookup4", "totals", "walk")

try:
    from collector.kernels import _kernels as built
except ImportError:  # installed without a C compiler
    built = None
_STALE = built is not None and not all(hasattr(built, f) for f in FUNCTIONS)
if _STALE:
    built = None

_OFF = os.environ.get("IMFLOW_KERNELS", "1") == "0"
compiled = None if _OFF else built


def available() -> bool:
    """Whether the extension was built (whatever the switch says)."""
    return built is not None


@contextmanager
def use(on: bool) -> Iterator[bool]:
    """Run a block with the kernels on (where built) or off; yields whether they are on."""
    global compiled
    before = compiled
    compiled = built if on else None
    try:
        yield compiled is not None
    finally:
        compiled = before


def status() -> str:
    """For `--version` and the start-up log line."""
    if compiled is not None:
        return "compiled kernels"
    if _OFF:
        return "NumPy only: IMFLOW_KERNELS=0"
    if built is not None:
        return "NumPy only: kernels switched off"
    if _STALE:
        return "NumPy only: the built kernels are older than this tree (reinstall to rebuild them)"
    return "NumPy only: kernels not built, no C compiler at install time?"
