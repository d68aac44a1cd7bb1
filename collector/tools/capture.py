"""Read the UDP datagrams out of a packet capture, for `imflow decode CAPTURE`.

Formats: classic pcap (the tcpdump format: 24-byte file header, 16-byte record headers,
either byte order, micro- or nanosecond magic), pcapng (draft-ietf-opsawg-pcapng: section
header in either byte order, interface description with `if_tsresol` / `if_tsoffset`,
enhanced, simple and obsolete packet blocks; other blocks skipped), either of them gzipped.

Link types: Ethernet (1, with 802.1Q / 802.1ad / QinQ tags), Linux cooked SLL (113) and
SLL2 (276), raw IP (101, 12, 14; 228 IPv4 and 229 IPv6), BSD loopback (0, family in the
capturing host's byte order; 108, family in network order).

Network layer: IPv4 (RFC 791, header options) and IPv6 (RFC 8200 §4: hop-by-hop, routing,
destination options, AH, fragment headers). Fragmented UDP is reassembled (RFC 791 §3.2,
RFC 8200 §4.5) within a bounded buffer: fragments whose datagram never completes, overlaps
or ages out are counted as skipped "fragment".

Everything is streamed: the file is read one record at a time.

    with Capture(path) as capture:
        for datagram in capture:
            ...
        capture.stats   # counters so far

`read_capture(path)` is the same as a pair (iterator, stats). A file that is not a capture,
or is corrupt or cut short, raises `CaptureError` naming the file and the byte offset;
datagrams before the damage have been yielded by then.
"""

from __future__ import annotations

import gzip
import os
import socket
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Capture", "CaptureError", "CaptureStats", "Datagram", "read_capture"]

MAX_FRAME = 16 << 20  # larger records or blocks mean a corrupt file, not a packet
FRAG_TIMEOUT = 30.0  # seconds of capture time a datagram may take to complete
FRAG_PENDING = 1024  # datagrams being reassembled at once

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_SHB = b"\x0a\x0d\x0d\x0a"
_BOM = 0x1A2B3C4D

_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
_ETHERTYPES = {0x0800: 4, 0x86DD: 6}
_BSD_FAMILIES = {2: 4, 10: 6, 24: 6, 28: 6, 30: 6}  # AF_INET; AF_INET6 on Linux/BSDs/macOS
_IPV6_EXT = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
_AH, _FRAGMENT, _UDP = 51, 44, 17


class CaptureError(Exception):
    """The file cannot be read as a capture; the message names it and says why."""


@dataclass(slots=True, frozen=True)
class Datagram:
    time: float  # capture timestamp, UNIX seconds
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes  # the UDP payload, min(UDP length, what was captured)


@dataclass
class CaptureStats:
    """Every frame is counted once: as a datagram, as a fragment of a reassembled one, or
    under a skip reason, so frames == datagrams - reassembled + fragments + sum(skipped)."""

    frames: int = 0
    datagrams: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> frames
    truncated: int = 0  # datagrams yielded with a payload shorter than their UDP length
    reassembled: int = 0  # datagrams rebuilt from IP fragments (included in `datagrams`)
    fragments: int = 0  # frames that went into them

    def skip(self, reason: str, frames: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + frames


class _Skip(Exception):
    """A frame that yields no datagram; the argument is the reason counted."""


class _Reassembled(_Skip):
    """A skip that accounts for all the fragment frames of a rebuilt datagram."""

    def __init__(self, reason: str, frames: int) -> None:
        super().__init__(reason)
        self.frames = frames


# --- file formats ----------------------------------------------------------------------------


class _Reader:
    """Exact reads from a binary stream that track the offset for error messages."""

    def __init__(self, stream, name: str) -> None:
        self.stream = stream
        self.name = name
        self.offset = 0

    def read(self, n: int, what: str, *, eof_ok: bool = False) -> bytes:
        data = self.stream.read(n)
        if len(data) < n and not (eof_ok and not data):
            raise CaptureError(
                f"{self.name}: truncated: the file ends inside {what} at byte {self.offset}"
            )
        self.offset += len(data)
        return data

    def fail(self, why: str) -> CaptureError:
        return CaptureError(f"{self.name}: {why} at byte {self.offset}")


def _pcap_frames(r: _Reader) -> Iterator[tuple[float, int, bytes]]:
    bo, scale = _PCAP_MAGIC[r.read(4, "the pcap file header")]
    major, _minor, _zone, _sigfigs, snaplen, linktype = struct.unpack(
        bo + "HHiIII", r.read(20, "the pcap file header")
    )
    if major != 2:
        raise r.fail(f"unsupported pcap version {major}")
    linktype &= 0xFFFF  # the upper bits say whether frames carry an FCS
    while True:
        head = r.read(16, "a pcap record header", eof_ok=True)
        if not head:
            return
        sec, frac, caplen, _origlen = struct.unpack(bo + "IIII", head)
        if caplen > MAX_FRAME:
            raise r.fail(f"corrupt pcap record claiming {caplen} captured bytes")
        data = r.read(caplen, "a packet")
        yield sec + frac / scale, linktype, data


@dataclass(slots=True)
class _Interface:
    linktype: int
    snaplen: int
    units: int = 1_000_000  # timestamp ticks per second
    offset: int = 0  # if_tsoffset, seconds


def _idb(body: bytes, bo: str) -> _Interface:
    linktype, _reserved, snaplen = struct.unpack_from(bo + "HHI", body)
    iface = _Interface(linktype, snaplen)
    for code, value in _options(body, 8, bo):
        if code == 9 and len(value) >= 1:  # if_tsresol
            exp = value[0] & 0x7F
            iface.units = (2 if value[0] & 0x80 else 10) ** exp
        elif code == 14 and len(value) >= 8:  # if_tsoffset
            iface.offset = struct.unpack_from(bo + "q", value)[0]
    return iface


def _options(body: bytes, pos: int, bo: str) -> Iterator[tuple[int, bytes]]:
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(bo + "HH", body, pos)
        if code == 0:  # opt_endofopt
            return
        yield code, body[pos + 4 : pos + 4 + length]
        pos += 4 + length + (-length % 4)


def _pcapng_frames(r: _Reader) -> Iterator[tuple[float, int, bytes]]:
    bo = "<"
    interfaces: list[_Interface] = []
    last_time = 0.0
    while True:
        start = r.offset
        head = r.read(8, "a pcapng block header", eof_ok=True)
        if not head:
            return
        if head[:4] == _SHB:
            bom = r.read(4, "a section header block")
            if struct.unpack("<I", bom)[0] == _BOM:
                bo = "<"
            elif struct.unpack(">I", bom)[0] == _BOM:
                bo = ">"
            else:
                raise r.fail("pcapng section header with an unknown byte-order magic")
            length = struct.unpack(bo + "I", head[4:])[0]
            if length < 28 or length % 4 or length > MAX_FRAME:
                raise r.fail(f"corrupt pcapng section header length {length}")
            body = r.read(length - 12, "a section header block")
            major = struct.unpack_from(bo + "H", body)[0]
            if major != 1:
                raise r.fail(f"unsupported pcapng version {major}")
            interfaces = []  # interface ids are per section
            continue
        btype, length = struct.unpack(bo + "II", head)
        if length < 12 or length % 4 or length > MAX_FRAME:
            raise r.fail(f"corrupt pcapng block (type {btype:#x}, length {length}) starting")
        body = r.read(length - 8, f"a pcapng block of type {btype:#x}")
        if struct.unpack_from(bo + "I", body, len(body) - 4)[0] != length:
            raise CaptureError(
                f"{r.name}: corrupt pcapng block at byte {start}: trailing length does not match"
            )
        body = body[:-4]
        try:
            if btype == 1:  # interface description
                interfaces.append(_idb(body, bo))
            elif btype in (6, 2):  # enhanced packet, obsolete packet
                if btype == 6:
                    ifid, hi, lo, caplen, _orig = struct.unpack_from(bo + "IIIII", body)
                else:
                    ifid, _drops, hi, lo, caplen, _orig = struct.unpack_from(bo + "HHIIII", body)
                data_at = 20
                if ifid >= len(interfaces):
                    raise CaptureError(
                        f"{r.name}: packet block at byte {start} names interface {ifid}, "
                        f"but the section has described {len(interfaces)}"
                    )
                if data_at + caplen > len(body):
                    raise CaptureError(
                        f"{r.name}: corrupt packet block at byte {start}: "
                        f"{caplen} captured bytes do not fit in it"
                    )
                iface = interfaces[ifid]
                sec, frac = divmod(hi << 32 | lo, iface.units)
                last_time = iface.offset + sec + frac / iface.units
                yield last_time, iface.linktype, body[data_at : data_at + caplen]
            elif btype == 3:  # simple packet: interface 0, no timestamp
                if not interfaces:
                    raise CaptureError(
                        f"{r.name}: simple packet block at byte {start} "
                        "before any interface description"
                    )
                (orig,) = struct.unpack_from(bo + "I", body)
                caplen = min(orig, len(body) - 4)
                if interfaces[0].snaplen:
                    caplen = min(caplen, interfaces[0].snaplen)
                # No timestamp of its own: it gets the last one seen, so times stay monotonic.
                yield last_time, interfaces[0].linktype, body[4 : 4 + caplen]
        except struct.error:
            raise CaptureError(
                f"{r.name}: corrupt pcapng block of type {btype:#x} at byte {start}: "
                "too short for its fields"
            ) from None


# --- link, network and transport layers ------------------------------------------------------


def _link(linktype: int, data: bytes) -> tuple[int, int]:
    """(IP version, offset of the IP header) of a frame."""
    if linktype == 1:
        pos = 14
        if len(data) < 14:
            raise _Skip("truncated")
        (ethertype,) = struct.unpack_from("!H", data, 12)
        while ethertype in _VLAN_TPIDS:
            if len(data) < pos + 4:
                raise _Skip("truncated")
            (ethertype,) = struct.unpack_from("!H", data, pos + 2)
            pos += 4
        version = _ETHERTYPES.get(ethertype)
    elif linktype == 113:
        if len(data) < 16:
            raise _Skip("truncated")
        pos, version = 16, _ETHERTYPES.get(struct.unpack_from("!H", data, 14)[0])
    elif linktype == 276:
        if len(data) < 20:
            raise _Skip("truncated")
        pos, version = 20, _ETHERTYPES.get(struct.unpack_from("!H", data, 0)[0])
    elif linktype in (101, 12, 14, 228, 229):
        if not data:
            raise _Skip("truncated")
        pos, version = 0, data[0] >> 4
    elif linktype in (0, 108):
        if len(data) < 4:
            raise _Skip("truncated")
        if linktype == 108:
            (family,) = struct.unpack_from("!I", data)
        else:
            (family,) = struct.unpack_from("<I", data)
            if family > 0xFFFF:  # written by a big-endian host
                (family,) = struct.unpack_from(">I", data)
        pos, version = 4, _BSD_FAMILIES.get(family)
    else:
        raise _Skip("unknown-linktype")
    if version not in (4, 6):
        raise _Skip("not-ip")
    return version, pos


@dataclass(slots=True)
class _Pending:
    frames: int
    started: float
    pieces: dict[int, bytes]
    total: int | None = None  # payload length, known once the last fragment arrived
    next_header: int | None = None  # IPv6: from the first fragment's fragment header


class _Parser:
    """Frames to datagrams, with the fragment buffer that spans frames."""

    def __init__(self, stats: CaptureStats) -> None:
        self.stats = stats
        self.pending: dict[tuple, _Pending] = {}

    def frame(self, time: float, linktype: int, data: bytes) -> Datagram | None:
        version, pos = _link(linktype, data)
        if version == 4:
            return self._ipv4(time, data, pos)
        return self._ipv6(time, data, pos)

    def _ipv4(self, time: float, data: bytes, pos: int) -> Datagram | None:
        avail = len(data) - pos
        if avail < 20:
            raise _Skip("truncated")
        vihl, _tos, total, ident, frag, _ttl, proto = struct.unpack_from("!BBHHHBB", data, pos)
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20:
            raise _Skip("malformed")
        if total == 0:  # segmentation offload on the capturing host: trust the frame
            total = avail
        if total < ihl:
            raise _Skip("malformed")
        if avail < ihl:
            raise _Skip("truncated")
        snapped = total > avail
        end = pos + min(total, avail)
        if proto != _UDP:
            raise _Skip("not-udp")
        src = socket.inet_ntop(socket.AF_INET, data[pos + 12 : pos + 16])
        dst = socket.inet_ntop(socket.AF_INET, data[pos + 16 : pos + 20])
        more, offset = frag & 0x2000, (frag & 0x1FFF) * 8
        if more or offset:
            if snapped:
                raise _Skip("truncated")
            whole = self._fragment(
                (4, src, dst, proto, ident), time, offset, bool(more), data[pos + ihl : end]
            )
            if whole is None:
                return None
            frames, payload = whole
            return self._udp(time, src, dst, payload, 0, len(payload), False, frames)
        return self._udp(time, src, dst, data, pos + ihl, end, snapped)

    def _ipv6(self, time: float, data: bytes, pos: int) -> Datagram | None:
        avail = len(data) - pos
        if avail < 40:
            raise _Skip("truncated")
        if data[pos] >> 4 != 6:
            raise _Skip("malformed")
        plen, nh = struct.unpack_from("!HB", data, pos + 4)
        total = 40 + plen if plen or nh != 0 else avail  # 0 with hop-by-hop: a jumbogram
        snapped = total > avail
        end = pos + min(total, avail)
        src = socket.inet_ntop(socket.AF_INET6, data[pos + 8 : pos + 24])
        dst = socket.inet_ntop(socket.AF_INET6, data[pos + 24 : pos + 40])
        pos += 40
        while True:
            if nh == _UDP:
                return self._udp(time, src, dst, data, pos, end, snapped)
            if nh in _IPV6_EXT or nh == _AH:
                if pos + 2 > end:
                    raise _Skip("truncated" if snapped else "malformed")
                size = (data[pos + 1] + 2) * 4 if nh == _AH else (data[pos + 1] + 1) * 8
                nh, pos = data[pos], pos + size
                if pos > end:
                    raise _Skip("truncated" if snapped else "malformed")
                continue
            if nh != _FRAGMENT:
                raise _Skip("not-udp")
            if pos + 8 > end:
                raise _Skip("truncated" if snapped else "malformed")
            inner, _res, offflag, ident = struct.unpack_from("!BBHI", data, pos)
            pos += 8
            offset, more = offflag & 0xFFF8, offflag & 1
            if not offset and not more:  # an atomic fragment (RFC 6946): not fragmented
                nh = inner
                continue
            if inner != _UDP and inner not in _IPV6_EXT and inner != _AH:
                raise _Skip("not-udp")
            if snapped:
                raise _Skip("truncated")
            whole = self._fragment(
                (6, src, dst, ident), time, offset, bool(more), data[pos:end], inner
            )
            if whole is None:
                return None
            frames, data, nh = whole
            # The reassembled part may still start with extension headers before UDP.
            pos, end = 0, len(data)
            while nh != _UDP:
                if nh not in _IPV6_EXT and nh != _AH:
                    raise _Reassembled("not-udp", frames)
                if pos + 2 > end:
                    raise _Reassembled("malformed", frames)
                size = (data[pos + 1] + 2) * 4 if nh == _AH else (data[pos + 1] + 1) * 8
                nh, pos = data[pos], pos + size
            return self._udp(time, src, dst, data, pos, end, False, frames)

    def _udp(self, time, src, dst, data, pos, end, snapped, frames=0) -> Datagram:
        """The datagram at data[pos:end]; `frames` > 0 when it was rebuilt from that many."""
        if end - pos < 8:
            if frames:
                raise _Reassembled("malformed", frames)
            raise _Skip("truncated" if snapped else "malformed")
        sport, dport, length = struct.unpack_from("!HHH", data, pos)
        if length < 8:
            if length != 0:  # 0 is an IPv6 jumbogram (RFC 2675): the IP length rules
                if frames:
                    raise _Reassembled("malformed", frames)
                raise _Skip("malformed")
            length = end - pos
        stop = pos + length
        if stop > end:
            self.stats.truncated += 1
            stop = end
        if frames:
            self.stats.reassembled += 1
            self.stats.fragments += frames
        return Datagram(time, src, sport, dst, dport, bytes(data[pos + 8 : stop]))

    def _fragment(self, key, time, offset, more, piece, next_header=None):
        """Add a fragment; (frames, payload[, next header]) once its datagram is whole."""
        self.expire(time)
        entry = self.pending.get(key)
        if entry is None:
            if len(self.pending) >= FRAG_PENDING:
                oldest = next(iter(self.pending))
                self.stats.skip("fragment", self.pending.pop(oldest).frames)
            entry = self.pending[key] = _Pending(0, time, {})
        entry.frames += 1
        end = offset + len(piece)
        if (
            end > 0xFFFF
            or (more and len(piece) % 8)
            or (not more and entry.total not in (None, end))
        ):
            self._abandon(key)
            return None
        old = entry.pieces.get(offset)
        if old is not None and old != piece:
            self._abandon(key)
            return None
        entry.pieces[offset] = piece
        if not more:
            entry.total = end
        if offset == 0 and next_header is not None:
            entry.next_header = next_header
        if entry.total is None:
            return None
        at, parts = 0, []
        for start in sorted(entry.pieces):
            if start > at:
                return None  # a hole: wait for more
            if start < at:
                self._abandon(key)  # overlapping fragments (RFC 5722): drop them all
                return None
            parts.append(entry.pieces[start])
            at = start + len(entry.pieces[start])
        if at != entry.total:
            return None
        del self.pending[key]
        payload = b"".join(parts)
        if key[0] == 6:
            return entry.frames, payload, entry.next_header
        return entry.frames, payload

    def _abandon(self, key) -> None:
        self.stats.skip("fragment", self.pending.pop(key).frames)

    def expire(self, now: float | None = None) -> None:
        """Give up on datagrams older than FRAG_TIMEOUT, or on all of them when now is None."""
        while self.pending:
            key, entry = next(iter(self.pending.items()))
            if now is not None and now - entry.started <= FRAG_TIMEOUT:
                return
            self._abandon(key)


# --- the public reader -----------------------------------------------------------------------


class Capture:
    """A capture file opened for reading; iterate it once for its UDP datagrams. The file's
    format is checked when it is opened; `stats` fills in as the iteration goes."""

    def __init__(self, path) -> None:
        self.name = os.fspath(path)
        self.stats = CaptureStats()
        try:
            raw = open(self.name, "rb")
        except OSError as e:
            raise CaptureError(f"{self.name}: cannot open: {e.strerror or e}") from None
        self._file = raw
        try:
            magic = raw.peek(4)[:4]
            if magic[:2] == b"\x1f\x8b":
                self._file = gzip.GzipFile(fileobj=raw, mode="rb")
                magic = self._file.peek(4)[:4]
            self._reader = _Reader(self._file, self.name)
            if magic in _PCAP_MAGIC:
                self._frames = _pcap_frames(self._reader)
            elif magic == _SHB:
                self._frames = _pcapng_frames(self._reader)
            elif not magic:
                raise CaptureError(f"{self.name}: empty file, not a pcap or pcapng capture")
            elif len(magic) < 4 and any(m.startswith(magic) for m in (*_PCAP_MAGIC, _SHB)):
                raise CaptureError(
                    f"{self.name}: truncated: {len(magic)} bytes, less than a file header"
                )
            else:
                raise CaptureError(
                    f"{self.name}: not a pcap or pcapng capture (starts with {magic.hex(' ')})"
                )
        except (OSError, EOFError, zlib.error) as e:
            self._close_all(raw)
            raise CaptureError(f"{self.name}: cannot read: {e}") from None
        except CaptureError:
            self._close_all(raw)
            raise
        self._raw = raw
        self._iter = self._datagrams()

    def __iter__(self) -> Iterator[Datagram]:
        return self._iter

    def _datagrams(self) -> Iterator[Datagram]:
        parser, stats = _Parser(self.stats), self.stats
        try:
            for time, linktype, data in self._frames:
                stats.frames += 1
                try:
                    datagram = parser.frame(time, linktype, data)
                except _Reassembled as skip:
                    stats.skip(skip.args[0], skip.frames)
                    continue
                except _Skip as skip:
                    stats.skip(skip.args[0])
                    continue
                except (struct.error, IndexError, ValueError):
                    stats.skip("malformed")
                    continue
                if datagram is not None:
                    stats.datagrams += 1
                    yield datagram
            parser.expire()
        except (OSError, EOFError, zlib.error) as e:
            raise CaptureError(f"{self.name}: cannot read: {e}") from None
        finally:
            self.close()

    def close(self) -> None:
        self._close_all(self._raw)

    def _close_all(self, raw) -> None:
        if self._file is not raw:
            self._file.close()
        raw.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_capture(path) -> tuple[Iterator[Datagram], CaptureStats]:
    """(datagrams, stats): the datagrams of `path` as a one-pass iterator, and the counters
    that it fills in. Raises CaptureError at once if `path` is not a capture file."""
    capture = Capture(path)
    return iter(capture), capture.stats
