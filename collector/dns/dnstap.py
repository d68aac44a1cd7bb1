"""The dnstap listener: a resolver's answers, over Frame Streams, into the learned-address table.

Frame Streams (the `fstrm` protocol, farsightsec.github.io/fstrm): each frame is a 32-bit big-
endian length and that many octets; length 0 starts a control frame (its own length, a type,
fields). A bidirectional sender (Unbound, Knot Resolver, PowerDNS with `dnstap` over a socket)
sends READY with the content types it offers; we answer ACCEPT with `protobuf:dnstap.Dnstap`;
it sends START, data frames, and STOP, which we answer with FINISH. A unidirectional sender
(BIND's `dnstap-output unix`, `fstrm_capture`-style writers) starts with START: taken as well.
The frame codec is the `fstrm` package's; the socket server is ours, on asyncio.

Each data frame is a `dnstap.Dnstap` protobuf (`dnstap-pb`); of its messages only
CLIENT_RESPONSE (what a client was answered; Unbound's `dnstap-log-client-response-messages`)
and FORWARDER_RESPONSE / RESOLVER_RESPONSE (the resolver's own upstream answers, which BIND and
Knot log) are read. The DNS message is read with `dnspython`'s wire parser; first the
question's name alone, and only when the name matches a service's domain pattern the answer: every A and
AAAA record of it then maps its address to the service for its TTL (+ grace). Names of no
service are never kept; the client address is counted per service, bounded.

Hostile input: frames longer than MAX_FRAME, control frames longer than MAX_CONTROL, protobuf
or DNS that does not parse, are counted and skipped (a bad frame length closes the connection:
the stream cannot be resynchronised). At most MAX_CONNECTIONS senders at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import stat
import struct
import time
from collections import Counter
from collections.abc import Callable

import fstrm

from collector.classify.domains import DomainMatcher
from collector.dns.table import LearnedAddresses, keep_view_current

log = logging.getLogger(__name__)

CONTENT_TYPE = b"protobuf:dnstap.Dnstap"
MAX_FRAME = 96 << 10  # a DNS message is at most 65,535 octets; the rest is the protobuf around it
MAX_CONTROL = 512
MAX_CONNECTIONS = 16
YIELD_EVERY = 256  # data frames between turns given back to the event loop (flows come first)
SOCKET_MODE = 0o660  # the resolver's user needs to be in imflow's group (docs/dns.md)


class DnstapError(Exception):
    pass


class DnstapListener:
    """A component (start/stop): listens on `endpoint` ("unix:/path" or "127.0.0.1:PORT"),
    feeds `table`. `catalogue()` returns the catalogue in use (it changes on reload)."""

    def __init__(self, endpoint: str, table: LearnedAddresses, catalogue, clock=time.time):
        self.endpoint, self.table, self.catalogue, self.clock = endpoint, table, catalogue, clock
        self._matcher: tuple[object, DomainMatcher] | None = None
        self.server: asyncio.AbstractServer | None = None
        self.address: str | None = None  # what we listen on, once started
        self.connections = 0
        self.connected_total = 0
        self.frames = Counter()  # data frames by outcome: matched, unmatched, other_type, bad_*
        self.refused = 0  # connections over MAX_CONNECTIONS
        self._tasks: set[asyncio.Task] = set()
        self._dnspb = None
        self._updater: asyncio.Task | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        from dnstap_pb import dnstap_pb2  # protobuf costs ~100 ms to import: only when dnstap is on

        self._dnspb = dnstap_pb2
        if self.endpoint.startswith("unix:"):
            path = self.endpoint[5:]
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)  # a stale socket of ours; anything else is left alone (bind fails)
            self.server = await asyncio.start_unix_server(self._serve, path=path)
            os.chmod(path, SOCKET_MODE)
            self.address = f"unix:{path}"
        else:
            host, _, port = self.endpoint.rpartition(":")
            host = host.strip("[]")
            self.server = await asyncio.start_server(self._serve, host=host, port=int(port))
            sock = self.server.sockets[0].getsockname()
            self.address = f"[{sock[0]}]:{sock[1]}" if ":" in sock[0] else f"{sock[0]}:{sock[1]}"
        log.info("dnstap: listening on %s", self.address)
        self._updater = asyncio.create_task(keep_view_current(self.table, self.catalogue, self.clock))

    async def stop(self) -> None:
        if self._updater is not None:
            self._updater.cancel()
            self._updater = None
        if self.server is not None:
            self.server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
            if self.endpoint.startswith("unix:"):
                with contextlib.suppress(OSError):
                    os.unlink(self.endpoint[5:])
            self.server = None

    def figures(self) -> dict:
        """The listener's and the table's counters as metric families in plain data
        (collector.metrics.Snapshot.figures); read on the event loop."""
        t, c = self.table, self.table.counters
        return {
            "imflow_dns_learned_addresses": ("gauge", "Addresses learned from DNS answers, in the table", [],
                                             {(): len(t)}),
            "imflow_dns_answers": ("counter", "A/AAAA records of catalogue names taken from dnstap, per service",
                                   ["service"], {(k,): v for k, v in c.by_service.items()}),
            "imflow_dns_table_events": ("counter", "Learned-address table: new, refreshed, evicted by the "
                                        "ceiling (dns.max_addresses), expired after TTL + grace",
                                        ["event"], {("learned",): c.learned, ("refreshed",): c.refreshed,
                                                    ("evicted",): c.evicted, ("expired",): c.expired}),
            "imflow_dns_frames": ("counter", "dnstap data frames by outcome (matched, unmatched: no catalogue "
                                  "name; other_type; bad_*)", ["outcome"], {(k,): v for k, v in self.frames.items()}),
            "imflow_dns_connections": ("gauge", "Resolvers connected over dnstap now", [], {(): self.connections}),
            "imflow_dns_client_pairs": ("gauge", "(client, service) pairs counted: who resolved which service "
                                        "(dns.max_clients; the rest counted as dropped)", [],
                                        {(): len(t.clients)}),
            "imflow_dns_resolving_clients": ("gauge", "Distinct clients whose answers for the service's names "
                                             "were counted (of the dns.max_clients pairs kept)", ["service"],
                                             {(k,): v for k, v in Counter(sid for _, sid in t.clients).items()}),
            "imflow_dns_client_answers": ("counter", "Answers for the service's names per client that asked: "
                                          "who resolved WhatsApp, Signal ... (at most dns.max_clients "
                                          "pairs; 0 turns it off)", ["client", "service"],
                                          {k: v for k, v in t.clients.items()}),
            "imflow_dns_clients_dropped": ("counter", "Answers whose (client, service) pair was not counted: "
                                           "dns.max_clients reached", [], {(): c.clients_dropped}),
        }

    # --- one sender --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self.connections >= MAX_CONNECTIONS:
            self.refused += 1
            writer.close()
            return
        self._tasks.add(task)
        self.connections += 1
        self.connected_total += 1
        try:
            await self._session(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the sender went away
        except DnstapError as e:
            self.frames["bad_stream"] += 1
            log.warning("dnstap: closing a connection: %s", e)
        finally:
            self.connections -= 1
            self._tasks.discard(task)
            writer.close()

    async def _session(self, reader, writer) -> None:
        codec = fstrm.FstrmCodec()
        started = False
        n = 0
        while True:
            (length,) = struct.unpack("!I", await reader.readexactly(4))
            if length:
                if length > MAX_FRAME:
                    raise DnstapError(f"data frame of {length} octets (ceiling {MAX_FRAME})")
                frame = await reader.readexactly(length)
                if started:
                    self.take(frame)
                else:
                    self.frames["before_start"] += 1
                n += 1
                if n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                continue
            (clen,) = struct.unpack("!I", await reader.readexactly(4))
            if not 4 <= clen <= MAX_CONTROL:
                raise DnstapError(f"control frame of {clen} octets")
            body = await reader.readexactly(clen)
            try:
                ctrl, types, _ = _control(codec, body)
            except Exception as e:  # the codec raises plain Exceptions on bad fields
                raise DnstapError(f"bad control frame: {str(e)[:80]}") from None
            if ctrl == fstrm.FSTRM_CONTROL_READY:
                if types and CONTENT_TYPE not in types:
                    raise DnstapError("sender offers no protobuf:dnstap.Dnstap content type")
                writer.write(codec.encode_ctrlaccept(CONTENT_TYPE))
                await writer.drain()
            elif ctrl == fstrm.FSTRM_CONTROL_START:
                if types and CONTENT_TYPE not in types:
                    raise DnstapError("stream content type is not protobuf:dnstap.Dnstap")
                started = True
            elif ctrl == fstrm.FSTRM_CONTROL_STOP:
                writer.write(codec.encode(ctrl=fstrm.FSTRM_CONTROL_FINISH))
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                return
            else:
                raise DnstapError(f"unexpected control frame type {ctrl}")

    # --- one dnstap message ------------------------------------------------------------------

    def matcher(self) -> DomainMatcher:
        catalogue = self.catalogue()
        if self._matcher is None or self._matcher[0] is not catalogue:
            self._matcher = (catalogue, DomainMatcher(catalogue.services))
        return self._matcher[1]

    def take(self, frame: bytes) -> None:
        """One data frame; never raises (bad input is counted)."""
        pb = self._dnspb
        msg = pb.Dnstap()
        try:
            msg.ParseFromString(frame)
        except Exception:  # google.protobuf.message.DecodeError and friends
            self.frames["bad_protobuf"] += 1
            return
        m = msg.message
        if msg.type != pb.Dnstap.MESSAGE or m.type not in _RESPONSES or not m.response_message:
            self.frames["other_type"] += 1
            return
        matcher = self.matcher()
        outcome = learn_answer(m.response_message, matcher, self.table, self.clock(),
                               (lambda: _client(m)) if m.type == _CLIENT_RESPONSE else None)
        self.frames[outcome] += 1


def learn_answer(wire: bytes, matcher: DomainMatcher, table: LearnedAddresses, now: float,
                 client: str | None | Callable[[], str | None]) -> str:
    """A DNS response in wire format -> learned addresses; returns the outcome counted.
    `client`: the address that asked, or a function giving it (called only for a matched name).

    Read with dnspython's wire parser (`dns.wire.Parser`: names, compression pointers and
    bounds are its), not into a `dns.message.Message`: first the question's name alone, since
    most answers a resolver gives name no service; for a matched name then the answer
    section's records, of which A and AAAA (class IN) are taken, each with its own TTL. With the
    Message built, a frame cost twice as much CPU unmatched and 3.4 times matched."""
    import dns.exception
    import dns.wire

    try:
        if len(wire) < 12:
            return "bad_dns"
        qdcount, ancount = struct.unpack_from("!HH", wire, 4)
        if not qdcount:
            return "unmatched"
        parser = dns.wire.Parser(wire, 12)
        name = parser.get_name(decompress=True)
        parser.get_struct("!HH")  # its type and class
        service = matcher.match(name.to_text(omit_final_dot=True))
        if not service:
            return "unmatched"
        for _ in range(qdcount - 1):
            parser.get_name(decompress=True)
            parser.get_struct("!HH")
        records = []
        for _ in range(ancount):
            parser.get_name(decompress=True)  # the owner: after CNAMEs, every A/AAAA of the answer counts
            rdtype, rdclass, ttl, rdlength = parser.get_struct("!HHIH")
            rdata = parser.get_bytes(rdlength)
            if rdclass != 1 or rdtype not in (1, 28):
                continue
            if rdlength != (4 if rdtype == 1 else 16):
                return "bad_dns"
            records.append((rdata, ttl))
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError, struct.error):
        return "bad_dns"
    sid = matcher.ids[service]
    if callable(client):
        client = client()
    for rdata, ttl in records:
        value = int.from_bytes(rdata, "big")
        if len(rdata) == 4:
            table.learn(0, value | 0xFFFF_0000_0000, sid, ttl, now, client)
        else:
            table.learn(value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF, sid, ttl, now, client)
    return "matched" if records else "matched_no_address"


def _control(codec: fstrm.FstrmCodec, body: bytes):
    codec.reset()
    codec.buf = b""
    codec.append_and_process(struct.pack("!II", 0, len(body)) + body)
    return codec.decode()


def _client(m) -> str | None:
    raw = bytes(m.query_address)
    if len(raw) in (4, 16):
        return str(ipaddress.ip_address(raw))
    return None


_CLIENT_RESPONSE = 6
_RESPONSES = (6, 4, 8)  # CLIENT_RESPONSE, RESOLVER_RESPONSE, FORWARDER_RESPONSE (dnstap.proto)
