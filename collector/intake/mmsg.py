"""recvmmsg(2) for UDP sockets, through ctypes: many datagrams per system call, no copies.

asyncio's datagram transport receives one datagram per `recvfrom` and one Python callback per
datagram; at NetFlow rates that is most of a core. `Receiver.receive` takes up to `slots` datagrams
in one call, straight into the next free slots of an anonymous mapping (the arena) that holds a
whole batch; pages are only touched as datagrams land in them. The intake's batch is a `Batch`: a
sequence of `(payload, (address, port), receive time)` like a list of them (a payload is copied out
when asked for), whose `layout()` gives the decoder's bulk path the arena itself with every
datagram's offset and length, so the usual datagrams are never copied in Python.

The arena is dense: a slot is PITCH (1,472) octets, the largest UDP payload of a 1,500-octet
MTU over IPv4 (1,452 over IPv6): the daemon's 2,304 slots (a 2,048-datagram batch and one call
more) keep 3.2 MiB resident at most, where 64 KiB slots (a page or two touched per datagram)
kept 11.5 MiB and slots of 2,112 octets 4.6. Nothing is ever truncated: each message
is received into two pieces, its slot and then a 64 KiB overflow area of its own (one per
message of a call, reused by the next call); a datagram longer than its slot (rare: jumbo
frames, IPv6 fragments) is copied whole, at once, into the arena's large region (dense too,
room for every slot's datagram at its largest, touched only as large datagrams land there).
Linux only;
`available()` says whether it can be used, and the intake falls back to the event loop's own
datagram transport when it cannot.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import socket
import sys

import numpy as np

SLOT = 1 << 16  # a whole UDP payload (65,507 octets over IPv4) always fits slot + overflow
# Slots start PITCH octets apart: enough for the usual export datagram (1,472 octets: a
# 1,500-octet MTU less the IPv4 and UDP headers), and not a power of two: at a power-of-two
# stride every datagram's header (and its records at equal offsets) would fall in the same
# cache sets, and the decoder's gathers across a batch would miss the cache each time. Longer
# datagrams go to the large region (see the module's text).
PITCH = 23 * 64
ALIGN = 64  # large datagrams start at multiples of this in the large region
TAIL = 1 << 12  # slack after the last octet the arena can hold: reads past a datagram's end stay inside
NAME = 32  # room for a sockaddr_in6 (28 octets)
MSG_DONTWAIT = 0x40
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.c_void_p),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


def _libc_recvmmsg():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).recvmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p)
    fn.restype = ctypes.c_int
    return fn


_RECVMMSG = _libc_recvmmsg()


def available() -> bool:
    return _RECVMMSG is not None


class Batch:
    """Datagrams received into a `Receiver`'s arena, in arrival order.

    Valid until the receiver starts its next batch (the intake hands a batch on and has it
    decoded before it receives again); reading a stale one raises RuntimeError."""

    __slots__ = ("receiver", "generation", "used", "_offsets", "_lens", "sources", "_runs", "_layout", "_distinct")

    def __init__(self, receiver: Receiver, generation: int):
        self.receiver = receiver
        self.generation = generation
        self.used = 0  # arena slots used (refused datagrams use one too)
        self._offsets: list[np.ndarray] = []  # int64 arena offsets, per receive call
        self._lens: list[np.ndarray] = []
        self.sources: list[tuple] = []
        self._runs: list[tuple[int, float]] = []  # (datagrams, receive time) per receive call
        self._layout = None
        self._distinct: dict | None = {}  # the sources met, while every call said its own; else None

    def __len__(self) -> int:
        return len(self.sources)

    def _add(self, offsets: np.ndarray, lens: np.ndarray, sources: list, now: float, one=None) -> None:
        """One receive call's datagrams; `one`: the source of them all, when the caller knows."""
        self._offsets.append(offsets)
        self._lens.append(lens)
        self.sources += sources
        self._runs.append((len(sources), now))
        self._layout = None
        if one is None:
            self._distinct = None
        elif self._distinct is not None:
            self._distinct[one] = None

    def distinct_sources(self) -> list:
        """The batch's sources, each once, in order of first arrival (without a pass over the
        datagrams when every receive call came from one source, the usual batch)."""
        return list(self._distinct if self._distinct is not None else dict.fromkeys(self.sources))

    def layout(self) -> tuple:
        """-> (arena, offsets, lengths, sources, receive times), the arrays int64/float64."""
        if self.generation != self.receiver.generation:
            raise RuntimeError("a received batch read after its receiver moved on")
        if self._layout is None:
            cat = np.concatenate
            offsets = cat(self._offsets) if self._offsets else np.zeros(0, np.int64)
            lens = cat(self._lens).astype(np.int64) if self._lens else np.zeros(0, np.int64)
            times = np.repeat(np.array([t for _, t in self._runs], np.float64), [k for k, _ in self._runs])
            self._layout = (self.receiver.arena, offsets, lens, self.sources, times)
        return self._layout

    def __getitem__(self, i: int) -> tuple[bytes, tuple, float]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        arena, offsets, lens, sources, times = self.layout()
        at = int(offsets[i])
        return arena[at:at + int(lens[i])], sources[i], float(times[i])

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class Receiver:
    """An arena of `capacity` receive slots (and the large region behind them), filled
    `slots` at a time; not thread-safe (one per event loop is enough)."""

    # datagrams per system call at most (64: 0.6 ms more per 2,048 datagrams in Python; 512: 4 %
    # less CPU a v5 flow than 256 in the daemon at 200,000 datagrams/s, a call's fixed cost
    # paid half as often)
    SLOTS = 512
    OVERSHOOT = 256  # slots past a full batch: the last call's datagrams beyond it (fewer read then)

    def __init__(self, slots: int = SLOTS, capacity: int = 2048 + OVERSHOOT, addr_memo: int = 65536):
        if _RECVMMSG is None:
            raise OSError(errno.ENOSYS, "recvmmsg is not available on this platform")
        self.slots = slots
        self.capacity = max(capacity, slots)
        # slots, then the large region: a datagram longer than a slot at most per slot
        self.large_start = self.capacity * PITCH
        self.arena = mmap.mmap(-1, self.large_start + self.capacity * (SLOT + ALIGN) + TAIL)
        self.names = mmap.mmap(-1, slots * NAME)
        self.overflow = mmap.mmap(-1, slots * SLOT)
        self._anchors = (ctypes.c_char.from_buffer(self.arena), ctypes.c_char.from_buffer(self.names),
                         ctypes.c_char.from_buffer(self.overflow))
        self._base, names, over = (ctypes.addressof(a) for a in self._anchors)
        self._over = over
        self.iov = (_IoVec * (2 * slots))()
        self.msgs = (_MMsgHdr * slots)()
        for i in range(slots):
            self.iov[2 * i].len = PITCH
            self.iov[2 * i + 1].base, self.iov[2 * i + 1].len = over + i * SLOT, SLOT - PITCH
            h = self.msgs[i].hdr
            h.name, h.namelen = names + i * NAME, NAME
            h.iov, h.iovlen = ctypes.addressof(self.iov[2 * i]), 2
        # where each message's first piece lands: those iovec bases, rewritten per call as one column
        self._iov_base = np.frombuffer(self.iov, np.uint64).reshape(slots, 4)[:, 0]
        self._steps = np.arange(slots, dtype=np.uint64) * np.uint64(PITCH)
        self._slot_offsets = self._steps.astype(np.int64)  # a call's slots from its first, in octets
        self._large_used = 0  # octets of the large region taken by the current batch
        # the kernel writes each message's length and address length: read them as columns
        size = ctypes.sizeof(_MMsgHdr)
        raw = np.frombuffer(self.msgs, np.uint8).reshape(slots, size)
        hdr = _MMsgHdr.hdr.offset
        self._len = raw[:, _MMsgHdr.len.offset:_MMsgHdr.len.offset + 4].view(np.uint32)[:, 0]
        at = hdr + _MsgHdr.namelen.offset
        self._namelen = raw[:, at:at + 4].view(np.uint32)[:, 0]
        self._addr = ctypes.addressof(self.msgs)
        self._names = np.frombuffer(self.names, np.uint8).reshape(slots, NAME)  # to compare sources at once
        self._memo: dict[bytes, tuple[tuple[str, int], bool]] = {}  # sockaddr -> (source, allowed)
        self._memo_allow = None
        self._memo_size = addr_memo
        self.generation = 0

    def new_batch(self) -> Batch:
        """An empty batch at the start of the arena; earlier batches become stale."""
        self.generation += 1
        self._large_used = 0
        return Batch(self, self.generation)

    def receive(self, fd: int, now: float, batch: Batch, allow=None, refused=None) -> tuple[int, int]:
        """Receive the datagrams waiting on `fd` (non-blocking, up to `slots`, fewer when the
        arena is nearly full) into `batch`, stamped `now`; sources that `allow(address)`
        refuses are counted instead, and told to `refused(address, datagrams)` when given.
        -> (datagrams read, datagrams refused). Raises OSError for errors other than 'nothing
        to read'."""
        if batch.generation != self.generation:
            raise RuntimeError("receiving into a stale batch")
        start = batch.used
        room = min(self.slots, self.capacity - start)
        if room <= 0:
            return 0, 0
        np.add(self._steps[:room], np.uint64(self._base + start * PITCH), out=self._iov_base[:room])
        self._namelen[:room] = NAME
        k = _RECVMMSG(fd, self._addr, room, MSG_DONTWAIT, None)
        if k <= 0:
            if k < 0:
                err = ctypes.get_errno()
                if err not in _AGAIN:
                    raise OSError(err, f"recvmmsg: {errno.errorcode.get(err, err)}")
            return 0, 0
        if allow is not self._memo_allow:  # a reloaded filter: decisions made with the old one go
            self._memo.clear()
            self._memo_allow = allow
        batch.used = start + k
        names = self.names
        lens = self._len[:k].copy()
        offsets = self._slot_offsets[:k] + start * PITCH
        if int(lens.max()) > PITCH:
            self._gather_large(start, lens, offsets)
        nl = int(self._namelen[0])
        # one socket, one address family: each name `nl` octets. Every slot's name area the
        # same as the one before it (one comparison of two copies: 0.4 us against NumPy's 5.5) means one
        # source; the areas' ends past `nl` may differ (left by an earlier call of the other
        # family's socket), so the names alone are compared before giving up on that
        if k == 1 or names[NAME:k * NAME] == names[:(k - 1) * NAME] or (
                bool((self._namelen[:k] == nl).all()) and bool((self._names[1:k, :nl] == self._names[0, :nl]).all())):
            # the usual case: one exporter sent them all
            source, allowed = self._source(names[:nl], allow)
            if not allowed:
                if refused is not None:
                    refused(source[0], k)
                return k, k
            batch._add(offsets, lens, [source] * k, now, source)
            return k, 0
        keep, sources, refusals = [], [], {}
        for i, nl in enumerate(self._namelen[:k].tolist()):
            source, allowed = self._source(names[i * NAME:i * NAME + nl], allow)
            if allowed:
                keep.append(i)
                sources.append(source)
            else:
                refusals[source[0]] = refusals.get(source[0], 0) + 1
        if refused is not None:
            for address, n in refusals.items():
                refused(address, n)
        if sources:
            batch._add(offsets[keep], lens[keep], sources, now)
        return k, k - len(sources)

    def _gather_large(self, start: int, lens: np.ndarray, offsets: np.ndarray) -> None:
        """Datagrams of this call longer than a slot: their two pieces (the slot, then the
        message's overflow area) copied whole into the large region; `offsets` updated."""
        base = self._base
        for i in np.flatnonzero(lens > PITCH).tolist():
            n = int(lens[i])
            at = self.large_start + self._large_used
            ctypes.memmove(base + at, base + (start + i) * PITCH, PITCH)
            ctypes.memmove(base + at + PITCH, self._over + i * SLOT, n - PITCH)
            offsets[i] = at
            self._large_used += -(-n // ALIGN) * ALIGN

    def _source(self, raw: bytes, allow) -> tuple[tuple[str, int], bool]:
        """A sockaddr -> ((address, port), allowed), memoised."""
        memo = self._memo
        known = memo.get(raw)
        if known is None:
            source = _sockaddr(raw)
            known = (source, allow is None or allow(source[0]))
            if len(memo) >= self._memo_size:
                memo.clear()
            memo[raw] = known
        return known

    def close(self) -> None:
        self.generation += 1  # every batch is stale now
        self._anchors = ()
        self.msgs = self.iov = None
        self._len = self._namelen = self._names = self._iov_base = None
        for area in (self.arena, self.names, self.overflow):
            try:
                area.close()
            except BufferError:  # a view of it is still alive somewhere: the GC frees it later
                pass


def _sockaddr(raw: bytes) -> tuple:
    """A sockaddr_in / sockaddr_in6 -> the (address, port) the socket module would give."""
    family = int.from_bytes(raw[:2], sys.byteorder)
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    if family == socket.AF_INET6:
        host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        scope = int.from_bytes(raw[24:28], sys.byteorder) if len(raw) >= 28 else 0
        if scope:
            try:
                host = f"{host}%{socket.if_indextoname(scope)}"
            except OSError:
                host = f"{host}%{scope}"
        return host, port
    return f"family-{family}", port
