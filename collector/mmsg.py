"""recvmmsg(2) for UDP sockets, through ctypes: many datagrams per system call.

asyncio (and uvloop) receive one datagram per `recvfrom` and one Python callback per datagram;
at NetFlow rates that is most of a core. `Receiver.receive` takes up to `slots` datagrams in
one call into a fixed anonymous mapping (pages are only touched as datagrams land in them) and
appends them to the intake's batch as `(payload, (address, port), receive time)`. Each slot holds 64 KiB, the largest UDP
payload, so nothing is ever truncated. Linux only; `available()` says whether it can be used,
and the intake falls back to the event loop's own datagram transport when it cannot.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import socket
import sys

import numpy as np

SLOT = 1 << 16  # a whole UDP payload (65,507 octets over IPv4) always fits
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


class Receiver:
    """One set of receive slots; not thread-safe (one per event loop is enough)."""

    def __init__(self, slots: int = 64, addr_memo: int = 65536):
        if _RECVMMSG is None:
            raise OSError(errno.ENOSYS, "recvmmsg is not available on this platform")
        self.slots = slots
        self.data = mmap.mmap(-1, slots * SLOT)
        self.names = mmap.mmap(-1, slots * NAME)
        self._anchors = (ctypes.c_char.from_buffer(self.data), ctypes.c_char.from_buffer(self.names))
        base, names = (ctypes.addressof(a) for a in self._anchors)
        self.iov = (_IoVec * slots)()
        self.msgs = (_MMsgHdr * slots)()
        for i in range(slots):
            self.iov[i].base, self.iov[i].len = base + i * SLOT, SLOT
            h = self.msgs[i].hdr
            h.name, h.namelen = names + i * NAME, NAME
            h.iov, h.iovlen = ctypes.addressof(self.iov[i]), 1
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

    def receive(self, fd: int, now: float, batch: list, allow=None) -> tuple[int, int]:
        """Append the datagrams waiting on `fd` (non-blocking, up to `slots`) to `batch` as
        `(payload, (address, port), now)`; sources that `allow(address)` refuses are counted
        instead. -> (datagrams read, datagrams refused). Raises OSError for errors other than
        'nothing to read'."""
        self._namelen[:] = NAME
        k = _RECVMMSG(fd, self._addr, self.slots, MSG_DONTWAIT, None)
        if k <= 0:
            if k < 0:
                err = ctypes.get_errno()
                if err not in _AGAIN:
                    raise OSError(err, f"recvmmsg: {errno.errorcode.get(err, err)}")
            return 0, 0
        if allow is not self._memo_allow:  # a reloaded filter: decisions made with the old one go
            self._memo.clear()
            self._memo_allow = allow
        data, names = self.data, self.names
        lens, namelens = self._len[:k].tolist(), self._namelen[:k].tolist()
        nl = namelens[0]
        if k == 1 or (namelens.count(nl) == k and bool((self._names[1:k, :nl] == self._names[0, :nl]).all())):
            # the usual case: one exporter sent them all
            source, allowed = self._source(names[:nl], allow)
            if not allowed:
                return k, k
            batch += [(data[i * SLOT:i * SLOT + n], source, now) for i, n in enumerate(lens)]
            return k, 0
        append = batch.append
        refused = 0
        for i, (n, nl) in enumerate(zip(lens, namelens)):
            source, allowed = self._source(names[i * NAME:i * NAME + nl], allow)
            if allowed:
                append((data[i * SLOT:i * SLOT + n], source, now))
            else:
                refused += 1
        return k, refused

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
        self._anchors = ()
        self.msgs = self.iov = None
        self._len = self._namelen = self._names = None
        self.data.close()
        self.names.close()


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
