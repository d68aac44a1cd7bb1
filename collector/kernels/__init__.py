"""The compiled kernels (collector/kernels/_kernels.c: grouped sums, the set walk, field reads, IPv4
range lookups) when they were built at install time, else None, and the hot path does the
same work in NumPy with the same results. `IMFLOW_KERNELS=0` in the environment turns them off
(to compare, or to rule them out). Read `kernels.compiled` at call time: tests switch it."""

from __future__ import annotations

import os

try:
    from collector.kernels import _kernels as compiled
except ImportError:  # installed without a C compiler
    compiled = None

if os.environ.get("IMFLOW_KERNELS", "1") == "0":
    compiled = None


def status() -> str:
    """For `--version` and the start-up log line."""
    if compiled is not None:
        return "compiled kernels"
    if os.environ.get("IMFLOW_KERNELS", "1") == "0":
        return "NumPy only: IMFLOW_KERNELS=0"
    return "NumPy only: kernels not built, no C compiler at install time?"
