"""Addresses learned from DNS: a dnstap listener (Frame Streams over a unix socket or loopback
TCP) feeds the answers for the catalogue's domain patterns into a bounded table that the
classifier reads (docs/dns.md, docs/design.md §4)."""

from collector.dns.table import LearnedAddresses

__all__ = ["LearnedAddresses"]
