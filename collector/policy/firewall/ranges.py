"""Port ranges and networks as the rule formats need them: merged, subtracted, collapsed per
address family, and written the way the tools read them."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from collector.classify.catalogue import Network, PortRange

Ranges = tuple[tuple[int, int], ...]


def merge(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sorted, with overlapping and adjacent ranges merged."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def subtract(ranges: Ranges, minus: Ranges) -> Ranges:
    out = []
    for lo, hi in ranges:
        for mlo, mhi in minus:
            if mhi < lo or mlo > hi:
                continue
            if mlo > lo:
                out.append((lo, mlo - 1))
            lo = mhi + 1
            if lo > hi:
                break
        if lo <= hi:
            out.append((lo, hi))
    return merge(out)


def range_text(lo: int, hi: int, sep: str) -> str:
    return str(lo) if lo == hi else f"{lo}{sep}{hi}"


def port_text(proto: int, ports: Ranges) -> str:
    return ", ".join(str(PortRange(proto, lo, hi)) for lo, hi in ports)


def collapse(nets: Iterable[Network]) -> tuple[Network, ...]:
    return tuple(ipaddress.collapse_addresses(nets))


def collapse_all(nets: Iterable[Network]) -> tuple[Network, ...]:
    nets = list(nets)
    return tuple(n for fam in (4, 6) for n in collapse(x for x in nets if x.version == fam))


def net_text(net: Network) -> str:
    """A single address without its /32 or /128."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
