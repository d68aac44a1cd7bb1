"""Intake: UDP sockets -> batches of (payload, source, receive time). Nothing is parsed here.

On Linux the sockets are read with recvmmsg(2) (`collector.intake.mmsg`): one system call and one
Python call per readable event take up to 512 datagrams, straight into the batch's arena (no
copy per datagram), several times cheaper per datagram than the event loop's own datagram
transport (one `recvfrom` and one callback each); elsewhere that transport is used and the
batch is a list. Either way the batch is handed on when it is full or `delay` seconds old, and
decoded before anything else is received. Sources outside `exporters.allow` are dropped and
counted before any state exists for them, and logged by address, rate-limited
(`collector.intake.refused`). Kernel drops and queue depth come from
/proc/net/udp[6] (the `drops` and `rx_queue` columns of each socket's inode), which counts what
SO_RXQ_OVFL would report without a recvmsg per datagram.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import sys
import time
from typing import Callable

from collector.intake import mmsg
from collector.intake.refused import Refusals
from collector.config import parse_endpoint

log = logging.getLogger(__name__)


READS_PER_WAKEUP = 64  # recvmmsg calls per readable event at most
# A socket read dry is left to fill this long before it is read again (`Intake._readable`,
# `Intake._poll`): at 80,000 datagrams/s a wakeup otherwise found 37 datagrams on average, and
# each wakeup's fixed cost (the loop's callback, the recvmmsg call, a dozen small NumPy steps)
# was over a third of the receive's samples even at 122 a call (py-spy). Only where the kernel
# granted REST_MIN_BUFFER or more of receive buffer, so a rest's arrivals fit with room to spare: a
# queued 1,400-octet datagram takes 2,304 octets of it on loopback (SO_MEMINFO), so 16 MiB hold
# 2 ms of 3.6 M datagrams/s, some eleven times imflow's loss-free rate on one core; at its own
# rate a read finds a full call's worth and never rests.
REST = 0.002
REST_MIN_BUFFER = 16 << 20
SO_MEMINFO, MEMINFO_VARS, MEMINFO_DROPS = 55, 9, 8  # Linux: getsockopt(SOL_SOCKET, SO_MEMINFO), u32 each


class Allow:
    """Source address filter with a bounded memo (sources are sender-controlled)."""

    def __init__(self, networks: list[str], memo_size: int = 65536):
        self.networks = [ipaddress.ip_network(n) for n in networks]
        self.memo: dict[str, bool] = {}
        self.memo_size = memo_size

    def __call__(self, addr: str) -> bool:
        ok = self.memo.get(addr)
        if ok is None:
            ip = ipaddress.ip_address(addr.split("%", 1)[0])
            if ip.version == 6 and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            ok = any(ip in n for n in self.networks)
            if len(self.memo) >= self.memo_size:
                self.memo.clear()
            self.memo[addr] = ok
        return ok


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, intake: Intake, label: str):
        self.intake = intake
        self.label = label

    def datagram_received(self, data: bytes, addr) -> None:
        intake = self.intake
        if intake.allow is not None and not intake.allow(addr[0]):
            intake.denied += 1
            intake.refused(addr[0], 1)
            return
        intake.batch.append((data, addr, time.time()))
        if len(intake.batch) >= intake.batch_size:
            intake.hand_on()
        elif intake.timer is None:
            intake.timer = intake.loop.call_later(intake.delay, intake.hand_on)

    def error_received(self, exc: Exception) -> None:
        self.intake.socket_errors += 1


class Intake:
    def __init__(self, listen: list[str], on_batch: Callable[[list], None], allow: list[str] | None = None,
                 rcvbuf: int = 32 << 20, batch_size: int = 2048, delay: float = 0.1,
                 reuse_port: bool = False, use_mmsg: bool | None = None):
        self.listen = listen
        self.on_batch = on_batch
        self.allow = Allow(allow) if allow else None
        self.rcvbuf = rcvbuf
        self.batch_size = batch_size
        self.delay = delay
        self.batch: list = []
        self.timer: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sockets: list[tuple[str, socket.socket]] = []
        self.transports: list[asyncio.DatagramTransport] = []
        self.denied = 0
        self.refusals = Refusals()  # who was refused, in the log
        self._refusal_timer: asyncio.TimerHandle | None = None
        self.socket_errors = 0
        self.reuse_port = reuse_port  # SO_REUSEPORT: worker processes share the ports
        self.use_mmsg = mmsg.available() if use_mmsg is None else use_mmsg
        self.receiver: mmsg.Receiver | None = None
        self.readers: list[int] = []
        self.restful: set[int] = set()  # sockets with the buffer to rest (REST)
        self._resting: dict[int, asyncio.TimerHandle] = {}
        self._last_queue_stats: dict[str, tuple[int, int]] = {}

    async def start(self) -> list[str]:
        """Bind every listener; returns their actual addresses (port 0 gets one)."""
        self.loop = asyncio.get_running_loop()
        bound = []
        for spec in self.listen:
            host, port = parse_endpoint(spec)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
                if self.reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((host, port))
            except OSError as exc:
                sock.close()
                raise OSError(exc.errno, f"cannot listen on {spec}: {exc.strerror}") from None
            got = sock.getsockname()
            label = f"[{got[0]}]:{got[1]}" if family == socket.AF_INET6 else f"{got[0]}:{got[1]}"
            self.sockets.append((label, sock))
            if self.use_mmsg:
                if self.receiver is None:
                    self.receiver = mmsg.Receiver(capacity=self.batch_size + mmsg.Receiver.OVERSHOOT)
                    self.batch = self.receiver.new_batch()
                sock.setblocking(False)
                self.loop.add_reader(sock.fileno(), self._readable, sock.fileno())
                self.readers.append(sock.fileno())
            else:
                transport, _ = await self.loop.create_datagram_endpoint(lambda lb=label: _Protocol(self, lb),
                                                                        sock=sock)
                self.transports.append(transport)
            bound.append(label)
            granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
            if granted < self.rcvbuf:
                log.warning("%s: receive buffer %d bytes, asked %d (raise net.core.rmem_max)",
                            label, granted, self.rcvbuf)
            if self.use_mmsg and granted >= REST_MIN_BUFFER:
                self.restful.add(sock.fileno())
        return bound

    def _readable(self, fd: int) -> None:
        """A socket has datagrams: take them (bounded per wakeup, so timers still run). Read
        dry, a socket with the buffer for it rests (REST): it is no longer watched, and read
        again when the rest is over."""
        dry, _ = self._take(fd)
        if dry and fd in self.restful and fd not in self._resting:
            self.loop.remove_reader(fd)
            self._resting[fd] = self.loop.call_later(REST, self._poll, fd)

    def _poll(self, fd: int) -> None:
        """The end of a socket's rest: read it. While every rest brings datagrams the socket
        stays unwatched and rests again (watching it anew every 2 ms cost more than the read:
        two epoll_ctl calls each time); a rest that brought none hands it
        back to the event loop's watch."""
        if self._resting.pop(fd, None) is None or fd not in self.readers:
            return
        dry, got = self._take(fd)
        if not got:
            self.loop.add_reader(fd, self._readable, fd)
        else:  # read dry: rest again; still more waiting: go on after other callbacks
            self._resting[fd] = self.loop.call_later(REST, self._poll, fd) if dry else \
                self.loop.call_soon(self._poll, fd)

    def _take(self, fd: int) -> tuple[bool, int]:
        """Receive what `fd` holds, up to READS_PER_WAKEUP calls; -> (read dry, datagrams)."""
        receiver = self.receiver
        now = time.time()
        dry, total = False, 0
        for _ in range(READS_PER_WAKEUP):
            try:
                got, refused = receiver.receive(fd, now, self.batch, self.allow, self.refused)
            except OSError:
                self.socket_errors += 1
                dry = True
                break
            total += got
            self.denied += refused
            if self.batch.used >= self.batch_size:
                self.hand_on()
                now = time.time()
            if got < receiver.slots:
                dry = True
                break
        if self.batch and self.timer is None:
            self.timer = self.loop.call_later(self.delay, self.hand_on)
        return dry, total

    def refused(self, address: str, n: int) -> None:
        """`n` datagrams from `address` refused: logged now or in the next summary."""
        self.refusals.note(address, n)
        if self._refusal_timer is None and self.loop is not None and self.refusals.waiting():
            self._refusal_timer = self.loop.call_later(self.refusals.interval, self._summarise_refusals)

    def _summarise_refusals(self) -> None:
        self._refusal_timer = None
        self.refusals.summarise()

    def hand_on(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.batch:
            batch, self.batch = self.batch, []
            try:
                self.on_batch(batch)  # decoded now: the arena is reused by the next receive
            finally:
                if self.receiver is not None:
                    self.batch = self.receiver.new_batch()
        elif self.receiver is not None and self.batch.used:
            self.batch = self.receiver.new_batch()  # only refused datagrams in it: the slots are free

    async def drain(self, timeout: float = 2.0) -> None:
        """Keep receiving until the sockets' queues are empty (bounded), then hand on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(q == 0 for q, _ in self.queue_stats().values()):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        self.hand_on()

    def close(self) -> None:
        self.queue_stats()  # keep the final kernel figures for the last status line
        for t in self.transports:
            t.close()
        self.transports.clear()
        for fd in self.readers:
            self.loop.remove_reader(fd)
        self.readers.clear()
        for timer in self._resting.values():
            timer.cancel()
        self._resting.clear()
        self.hand_on()  # before the arena it lives in goes
        if self._refusal_timer is not None:
            self._refusal_timer.cancel()
            self._refusal_timer = None
        self.refusals.summarise()
        if self.use_mmsg:  # transports close their own sockets
            for _, sock in self.sockets:
                sock.close()
        if self.receiver is not None:
            self.receiver.close()
            self.receiver = None
        self.batch = []

    def drops(self) -> dict[str, int]:
        """listener -> datagrams dropped by the kernel, read from each socket (SO_MEMINFO's
        drop count, the `drops` column of /proc/net/udp), not by reading /proc/net/udp: that
        file has a line for every UDP socket of the machine (10,000 sockets made reading it at
        every flush 44 % of an idle imflow's CPU samples). Falls back to `queue_stats`."""
        out: dict[str, int] = {}
        for label, sock in self.sockets:
            if sock.fileno() < 0:
                return {k: d for k, (_, d) in self.queue_stats().items()}
            try:
                info = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, MEMINFO_VARS * 4)
            except OSError:
                return {k: d for k, (_, d) in self.queue_stats().items()}
            if len(info) < MEMINFO_VARS * 4:
                return {k: d for k, (_, d) in self.queue_stats().items()}
            out[label] = int.from_bytes(info[MEMINFO_DROPS * 4:MEMINFO_DROPS * 4 + 4], sys.byteorder)
        return out

    def queue_stats(self) -> dict[str, tuple[int, int]]:
        """listener -> (bytes queued in the kernel, datagrams dropped by the kernel); after
        close, the last figures read while the sockets were open."""
        inodes = {os.fstat(s.fileno()).st_ino: label for label, s in self.sockets if s.fileno() >= 0}
        if not inodes:
            return dict(self._last_queue_stats)
        out: dict[str, tuple[int, int]] = {}
        for path in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                with open(path, encoding="ascii") as fh:
                    next(fh)
                    for line in fh:
                        cols = line.split()
                        inode = int(cols[9])
                        if inode in inodes:
                            rx = int(cols[4].split(":")[1], 16)
                            out[inodes[inode]] = (rx, int(cols[-1]))
            except OSError:
                continue
        self._last_queue_stats = out
        return out
