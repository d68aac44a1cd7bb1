"""SNMP poller: names, speeds and octet counters of the flow exporters' interfaces.

Reads SNMPv2-MIB `system` (RFC 3418) and IF-MIB `ifTable`/`ifXTable` (RFC 2863) with GETBULK
(RFC 3416 §4.2.3) over SNMPv2c or SNMPv3 USM (targets: `collector.snmp.config`). All
OIDs are numeric: agents' hosts and ours ship no MIB files.

Each target is polled by its own asyncio task; a poll never blocks the flow path, is bounded
by a deadline, and after failures the next one waits longer (exponential backoff with a cap).
What is known stays known: a failing agent keeps its last interfaces (negative caching: no
re-poll until its backoff expires). Counters come from ifHCInOctets/ifHCOutOctets, or from
the 32-bit ifInOctets/ifOutOctets, unwrapped into a monotonic total across polls (a decrease
is a wrap, mod 2^32, unless sysUpTime went back too: then the agent restarted and the total
starts over from what it reports, as a 64-bit counter's would).

This is the only module that imports pysnmp, and it imports it lazily in a worker thread
(importing and loading pysnmp's base MIB modules takes about a second of CPU), so loading a
config does not pay for it and the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from collector.snmp.config import Target
from collector.text import printable

log = logging.getLogger(__name__)

ERROR_REASONS = ("timeout", "auth", "decryption", "other")

MAX_VARBINDS = 60  # per GETBULK response; snmpsim stops at 64, small routers like less
MAX_REQUESTS = 500  # per poll: beyond that the agent is looping or absurdly large

# SNMPv2-MIB system scalars, asked with GETNEXT semantics (non-repeaters): x -> x.0
SYSTEM = {"descr": (1, 3, 6, 1, 2, 1, 1, 1), "uptime": (1, 3, 6, 1, 2, 1, 1, 3),
          "name": (1, 3, 6, 1, 2, 1, 1, 5)}
_IF = (1, 3, 6, 1, 2, 1, 2, 2, 1)  # ifTable.ifEntry
_IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)  # ifXTable.ifXEntry
COLUMNS = {
    "descr": _IF + (2,), "speed": _IF + (5,), "oper": _IF + (8,),
    "in32": _IF + (10,), "out32": _IF + (16,),
    "name": _IFX + (1,), "in64": _IFX + (6,), "out64": _IFX + (10,),
    "high_speed": _IFX + (15,), "alias": _IFX + (18,),
}
_WRAP32 = 1 << 32
_TICKS = 100  # TimeTicks per second


# --- state ---------------------------------------------------------------------------------

@dataclass
class Interface:
    index: int
    name: str  # ifName, or ifDescr when the agent has no ifName
    descr: str
    alias: str
    speed_bits: int  # bits/s: ifHighSpeed x 10^6, or ifSpeed when more precise or alone
    oper_up: bool
    in_octets: int  # cumulative; 32-bit counters unwrapped into a monotonic total
    out_octets: int
    counter_bits: int = 64  # 64: ifHC*Octets, 32: ifIn/OutOctets, 0: no counters


@dataclass
class AgentState:
    exporter: str
    up: bool = False
    sys_name: str = ""
    sys_descr: str = ""
    uptime: float = 0.0  # seconds, sysUpTime
    last_poll: float = 0.0  # clock() when the last poll (success or not) ended
    last_duration: float = 0.0  # seconds the last poll took
    counters_64: bool = False  # some interface has ifHC* counters
    interfaces: dict[int, Interface] = field(default_factory=dict)
    errors: Counter = field(default_factory=Counter)  # reason (ERROR_REASONS) -> count
    polls: int = 0
    restarts: int = 0  # agent restarts seen (sysUpTime went back)
    last_success: float = 0.0
    last_error: str = ""  # the last failure, for people; never contains secrets


class PollError(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class _TooBig(Exception):
    """The agent would rather answer fewer repetitions (most truncate instead, RFC 3416 §4.2.3)."""


@dataclass
class _Track:  # one interface's last raw counters and unwrapped totals
    bits: int
    raw_in: int
    raw_out: int
    total_in: int
    total_out: int


# --- pysnmp, loaded once off the event loop ------------------------------------------------

class _Library:
    def __init__(self) -> None:
        from pysnmp.hlapi.v3arch import asyncio as hl
        from pysnmp.proto import errind, rfc1905
        from pysnmp.smi import builder, view

        self.hl, self.errind, self.rfc1905 = hl, errind, rfc1905
        # every SnmpEngine would build and load its own MIB view on its first request (about a
        # second of CPU on the loop); share one, loaded here by resolving an OID once
        self.mib_view = view.MibViewController(builder.MibBuilder())
        hl.ObjectType(hl.ObjectIdentity(SYSTEM["name"])).resolve_with_mib(self.mib_view)
        self.auth = {
            "md5": hl.usmHMACMD5AuthProtocol, "sha": hl.usmHMACSHAAuthProtocol,
            "sha224": hl.usmHMAC128SHA224AuthProtocol, "sha256": hl.usmHMAC192SHA256AuthProtocol,
            "sha384": hl.usmHMAC256SHA384AuthProtocol, "sha512": hl.usmHMAC384SHA512AuthProtocol,
        }
        self.priv = {
            "des": hl.usmDESPrivProtocol, "3des": hl.usm3DESEDEPrivProtocol,
            "aes": hl.usmAesCfb128Protocol,
            "aes192": hl.usmAesBlumenthalCfb192Protocol, "aes256": hl.usmAesBlumenthalCfb256Protocol,
            "aes192c": hl.usmAesCfb192Protocol, "aes256c": hl.usmAesCfb256Protocol,
        }
        self.auth_errors = (errind.WrongDigest, errind.UnknownUserName, errind.AuthenticationFailure,
                            errind.AuthenticationError, errind.UnknownSecurityName,
                            errind.UnsupportedSecurityLevel, errind.NotInTimeWindow)


_library: _Library | None = None
_library_lock = threading.Lock()


def _load_library() -> _Library:
    global _library
    with _library_lock:
        if _library is None:
            _library = _Library()
        return _library


async def _get_library() -> _Library:
    if _library is not None:
        return _library
    return await asyncio.get_running_loop().run_in_executor(None, _load_library)


class _Session:
    """One target's SnmpEngine (own USM state and socket), transport and credentials."""

    def __init__(self, target: Target, lib: _Library, engine: Any, transport: Any):
        hl = lib.hl
        self.target, self.lib, self.engine, self.transport = target, lib, engine, transport
        if target.version == "2c":
            self.auth = hl.CommunityData(target.community.reveal(), mpModel=1)
        else:
            self.auth = hl.UsmUserData(
                target.user,
                authKey=target.auth_key.reveal() if target.auth_key else None,
                privKey=target.priv_key.reveal() if target.priv_key else None,
                authProtocol=lib.auth[target.auth_protocol] if target.auth_protocol else hl.usmNoAuthProtocol,
                privProtocol=lib.priv[target.priv_protocol] if target.priv_protocol else hl.usmNoPrivProtocol,
            )
        self.context = hl.ContextData(contextName=target.context.encode())

    @classmethod
    async def open(cls, target: Target) -> _Session:
        lib = await _get_library()
        hl = lib.hl
        # building an engine loads its own MIB instrumentation: ~0.2 s of CPU, off the loop
        engine = await asyncio.get_running_loop().run_in_executor(None, hl.SnmpEngine)
        engine.cache["mibViewController"] = lib.mib_view
        # pysnmp resolves names for IPv4 only: an IPv6 agent needs an address literal
        kind = hl.Udp6TransportTarget if ":" in target.host else hl.UdpTransportTarget
        try:
            transport = await kind.create((target.host, target.port), timeout=target.timeout,
                                          retries=target.retries)
        except Exception:
            raise PollError("other", f"cannot resolve {target.host}") from None
        except BaseException:
            engine.close_dispatcher()
            raise
        return cls(target, lib, engine, transport)

    def close(self) -> None:
        try:
            self.engine.close_dispatcher()
        except Exception:  # never opened, or already closed
            pass

    async def bulk(self, non_repeaters: list[tuple], repeaters: list[tuple],
                   repetitions: int) -> list[tuple[tuple, Any]]:
        hl = self.lib.hl
        oids = [hl.ObjectType(hl.ObjectIdentity(o)) for o in non_repeaters + repeaters]
        indication, status, _, varbinds = await hl.bulk_cmd(
            self.engine, self.auth, self.transport, self.context, len(non_repeaters), repetitions,
            *oids, lookupMib=False)
        if indication:
            raise self._error(indication)
        if status:
            name = status.prettyPrint() if hasattr(status, "prettyPrint") else str(status)
            if name == "tooBig":
                raise _TooBig(repetitions)
            reason = "auth" if name in ("authorizationError", "noAccess") else "other"
            raise PollError(reason, f"agent answered {name}")
        return [(tuple(oid), value) for oid, value in varbinds]

    def _error(self, indication: Any) -> PollError:
        t, errind = self.target, self.lib.errind
        if isinstance(indication, errind.RequestTimedOut):
            return PollError("timeout", f"no answer from {t.address} within {t.timeout:g} s x "
                             f"{t.retries + 1} tries (agent down or unreachable, or wrong "
                             f"{'community' if t.version == '2c' else 'privacy key'})")
        if isinstance(indication, self.lib.auth_errors):
            return PollError("auth", f"SNMPv3 user {t.user!r} refused: {_scrub(str(indication), t)} "
                             "(wrong user, authentication key or protocol)")
        if isinstance(indication, errind.DecryptionError):
            return PollError("decryption", f"SNMPv3 decryption error: {_scrub(str(indication), t)} "
                             "(wrong privacy key or protocol)")
        return PollError("other", f"{type(indication).__name__}: {_scrub(str(indication), t)}")


# --- walking and decoding ------------------------------------------------------------------

def _text_value(value: Any) -> str:
    raw = value.asOctets() if hasattr(value, "asOctets") else bytes(str(value), "utf-8")
    return raw.rstrip(b"\0").decode("utf-8", "replace")


async def _walk(session: _Session) -> tuple[dict[str, Any], dict[str, dict[int, Any]]]:
    """The system scalars and every IF-MIB column, in as few GETBULKs as fit."""
    end_of_view = (session.lib.rfc1905.EndOfMibView, session.lib.rfc1905.NoSuchObject,
                   session.lib.rfc1905.NoSuchInstance)
    active = dict(COLUMNS)  # column -> last OID seen
    columns: dict[str, dict[int, Any]] = {name: {} for name in COLUMNS}
    system: dict[str, Any] = {}
    budget, first = MAX_VARBINDS, True
    for _ in range(MAX_REQUESTS):
        if not active:
            return system, columns
        names = list(active)
        scalars = list(SYSTEM.values()) if first else []
        reps = max(1, (budget - len(scalars)) // len(names))
        try:
            varbinds = await session.bulk(scalars, [active[n] for n in names], reps)
        except _TooBig:
            if reps == 1:
                raise PollError("other", "agent answered tooBig to one repetition") from None
            budget = max(len(scalars) + len(names), budget // 2)
            continue
        first = False
        for (oid, value), (key, base) in zip(varbinds[:len(scalars)], SYSTEM.items()):
            if oid == base + (0,) and not isinstance(value, end_of_view):
                system[key] = value
        progress = False
        for i, (oid, value) in enumerate(varbinds[len(scalars):]):
            name = names[i % len(names)]
            if name not in active:
                continue
            column = COLUMNS[name]
            if isinstance(value, end_of_view) or len(oid) != len(column) + 1 or oid[:-1] != column:
                del active[name]  # walked off the column
                continue
            if oid <= active[name]:
                raise PollError("other", f"agent returned OIDs out of order ({'.'.join(map(str, oid))})")
            columns[name][oid[-1]] = value
            active[name] = oid
            progress = True
        if not progress and not any(n not in active for n in names):
            raise PollError("other", "agent answered GETBULK with nothing")
    raise PollError("other", f"more than {MAX_REQUESTS} requests: agent too large or looping")


def _speed(columns: dict[str, dict[int, Any]], index: int) -> int:
    speed = columns["speed"].get(index)
    high = columns["high_speed"].get(index)
    speed = int(speed) if speed is not None else None
    if high is not None and int(high) > 0:
        high_bits = int(high) * 1_000_000
        # ifSpeed is exact below its 2^32-1 ceiling; ifHighSpeed is rounded to a Mbit/s
        if speed is not None and 0 < speed < _WRAP32 - 1 and abs(speed - high_bits) < 1_000_000:
            return speed
        return high_bits
    return speed or 0


class Poller:
    """Polls every target in its own task; `state()` and `interface_name()` read the last
    results without waiting. The first poll of the process also loads pysnmp in a worker
    thread (1-2 s); then a poll takes one GETBULK per ~6 interfaces (tens of milliseconds on
    a LAN) and about 0.2 s of worker-thread CPU whenever a target's SNMP engine is (re)built:
    at the first poll and after each failure."""

    def __init__(self, targets: list[Target], clock=time.time):
        self._targets = list(targets)
        self._clock = clock
        self._states: dict[str, AgentState] = {t.exporter: AgentState(t.exporter) for t in self._targets}
        self._sessions: dict[str, _Session] = {}
        self._tracks: dict[str, dict[int, _Track]] = {}
        self._uptime: dict[str, tuple[int, float]] = {}  # exporter -> (sysUpTime ticks, clock())
        self._failures: dict[str, int] = {}
        self._tasks: list[asyncio.Task] = []

    # --- lifecycle

    async def start(self) -> None:
        """One task per target; each polls at once, then every interval (longer after failures)."""
        for target in self._targets:
            self._tasks.append(asyncio.create_task(self._run(target), name=f"snmp {target.exporter}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()
        await asyncio.sleep(0)  # let pysnmp's timer tasks, just cancelled, finish

    async def _run(self, target: Target) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.poll_once(target)
            # polls start every interval, however long each took
            await asyncio.sleep(max(0.0, self.next_delay(target) - (loop.time() - started)))

    def next_delay(self, target: Target) -> float:
        """The interval, or after n failures in a row interval x 2^(n-1), up to backoff_max."""
        failures = self._failures.get(target.exporter, 0)
        if not failures:
            return target.interval
        return min(target.interval * 2 ** min(failures - 1, 30), max(target.interval, target.backoff_max))

    # --- reading

    def state(self) -> dict[str, AgentState]:
        return dict(self._states)

    def interface_name(self, exporter: str, if_index: int) -> str | None:
        state = self._state_of(exporter)
        interface = state.interfaces.get(if_index) if state is not None else None
        return interface.name if interface else None

    def interface_names(self, exporter: str) -> dict[int, str]:
        """ifIndex -> ifName of every interface the last good walk of `exporter` found."""
        state = self._state_of(exporter)
        return {i: iface.name for i, iface in state.interfaces.items()} if state is not None else {}

    def _state_of(self, exporter: str) -> AgentState | None:
        state = self._states.get(exporter)
        if state is None:
            try:
                address = ipaddress.ip_address(exporter)
            except ValueError:
                return None
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            state = self._states.get(str(address))
        return state

    # --- polling

    async def poll_once(self, target: Target) -> AgentState:
        loop = asyncio.get_running_loop()
        previous = self._states.get(target.exporter) or AgentState(target.exporter)
        started = loop.time()
        try:
            await _get_library()  # once per process, off the loop; not part of the poll's time
            started = loop.time()
            async with asyncio.timeout(max(target.interval, target.timeout * (target.retries + 1) * 3)):
                session = self._sessions.get(target.exporter)
                if session is None or session.target != target:
                    if session is not None:
                        session.close()
                    self._sessions.pop(target.exporter, None)
                    session = self._sessions[target.exporter] = await _Session.open(target)
                system, columns = await _walk(session)
        except asyncio.CancelledError:
            raise
        except PollError as e:
            failure = e
        except TimeoutError:
            failure = PollError("timeout", f"poll of {target.address} took longer than its deadline")
        except Exception as e:  # a pysnmp bug or an agent quirk it trips on: counted, not fatal
            failure = PollError("other", f"{type(e).__name__}: {_scrub(str(e), target)}")
        else:
            state = self._success(target, previous, system, columns, loop.time() - started)
            self._failures[target.exporter] = 0
            self._states[target.exporter] = state
            return state
        state = self._failure(target, previous, failure, loop.time() - started)
        self._states[target.exporter] = state
        return state

    def _failure(self, target: Target, previous: AgentState, error: PollError,
                 duration: float) -> AgentState:
        message = str(error)  # built from our words; foreign text in it was scrubbed
        failures = self._failures[target.exporter] = self._failures.get(target.exporter, 0) + 1
        session = self._sessions.pop(target.exporter, None)
        if session is not None:  # start afresh next time (engine ids, USM timers, DNS)
            session.close()
        if previous.up or failures == 1 or message != previous.last_error:
            # pysnmp's and the agent's text may be in the message: escaped (collector.text)
            log.warning("snmp %s at %s: %s (%s); next try in %gs", target.exporter,
                        target.address, printable(message), error.reason, self.next_delay(target))
        errors = Counter(previous.errors)
        errors[error.reason] += 1
        return replace(previous, up=False, last_poll=self._clock(), last_duration=duration,
                       errors=errors, polls=previous.polls + 1, last_error=message,
                       interfaces=dict(previous.interfaces))

    def _success(self, target: Target, previous: AgentState, system: dict[str, Any],
                 columns: dict[str, dict[int, Any]], duration: float) -> AgentState:
        now = self._clock()
        ticks = int(system["uptime"]) if "uptime" in system else None
        restarted = False
        if ticks is not None:
            last = self._uptime.get(target.exporter)
            if last is not None and ticks < last[0]:
                # sysUpTime itself wraps after 497 days: that is not a restart
                expected = last[0] + (now - last[1]) * _TICKS
                restarted = expected < _WRAP32 - 60 * _TICKS
            self._uptime[target.exporter] = (ticks, now)
        if restarted:
            log.info("snmp %s: agent restarted (sysUpTime went back)", target.exporter)
        if not previous.up and previous.polls:
            log.info("snmp %s at %s: answering again", target.exporter, target.address)
        tracks = self._tracks.get(target.exporter, {})
        new_tracks: dict[int, _Track] = {}
        interfaces: dict[int, Interface] = {}
        indexes = sorted(set(columns["descr"]) | set(columns["name"]) | set(columns["in64"])
                         | set(columns["in32"]))
        for index in indexes:
            track = _unwrap(columns, index, tracks.get(index), restarted)
            new_tracks[index] = track
            descr = _text_value(columns["descr"][index]) if index in columns["descr"] else ""
            name = _text_value(columns["name"][index]) if index in columns["name"] else ""
            alias = _text_value(columns["alias"][index]) if index in columns["alias"] else ""
            oper = columns["oper"].get(index)
            interfaces[index] = Interface(
                index=index, name=name or descr, descr=descr, alias=alias,
                speed_bits=_speed(columns, index), oper_up=oper is not None and int(oper) == 1,
                in_octets=track.total_in, out_octets=track.total_out, counter_bits=track.bits)
        self._tracks[target.exporter] = new_tracks
        return AgentState(
            exporter=target.exporter, up=True,
            sys_name=_text_value(system["name"]) if "name" in system else "",
            sys_descr=_text_value(system["descr"]) if "descr" in system else "",
            uptime=ticks / _TICKS if ticks is not None else 0.0,
            last_poll=now, last_duration=duration,
            counters_64=any(i.counter_bits == 64 for i in interfaces.values()),
            interfaces=interfaces, errors=Counter(previous.errors), polls=previous.polls + 1,
            restarts=previous.restarts + restarted, last_success=now, last_error=previous.last_error)


def _unwrap(columns: dict[str, dict[int, Any]], index: int, track: _Track | None,
            restarted: bool) -> _Track:
    if index in columns["in64"] and index in columns["out64"]:
        raw_in, raw_out = int(columns["in64"][index]), int(columns["out64"][index])
        return _Track(64, raw_in, raw_out, raw_in, raw_out)
    if index not in columns["in32"] or index not in columns["out32"]:
        return _Track(0, 0, 0, 0, 0)
    raw_in, raw_out = int(columns["in32"][index]), int(columns["out32"][index])
    if track is None or track.bits != 32:
        return _Track(32, raw_in, raw_out, raw_in, raw_out)
    return _Track(32, raw_in, raw_out, _widen(raw_in, track.raw_in, track.total_in, restarted),
                  _widen(raw_out, track.raw_out, track.total_out, restarted))


def _widen(raw: int, last: int, total: int, restarted: bool) -> int:
    """The next 64-bit total of a 32-bit counter. Going down is a wrap (just one: polls must
    come faster than a wrap), unless sysUpTime went down too: then the agent restarted and the
    total starts over. A counter that kept growing across an agent restart (snmpd restarted,
    the kernel's counters did not) just keeps counting."""
    if raw >= last:
        return total + raw - last
    if restarted:
        return raw
    return total + raw + _WRAP32 - last


def _scrub(message: str, target: Target) -> str:
    """Text from pysnmp or an exception, with any secret of the target masked."""
    for secret in sorted(target.secrets(), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message
