"""Vectorized flow classification: service and internal host for every flow of a batch.

Implements docs/design.md §4. Per flow, in this order (a later step only where no earlier
one decided):

1. Exporter application id (IE 95): if `app_ids` (the operator's, or the exporter session's own
   names) maps it to a service, that service wins. Server names an exporter sends (TLS SNI,
   HTTP Host) come this way too, as ids of engine 0 (collector/netflow/templates.py).
2. An address learned from DNS (collector/dns/: a resolver's answer for one of the service's
   `domains`, within its TTL + grace), the external side first, then dst.
3. Prefix match: an address inside a service prefix makes that side the service side. When
   both sides match, the external side wins, then the side whose port is one of its service's
   ports (shared ports count here), then the non-ephemeral, then the lower port, then dst.
   A prefix match alone classifies the flow, whatever the ports.
4. ASN match (classify/asn.py): an address in the prefixes of a service's `asns`, together with
   a port, other than 80 and 443, that exactly one service of that AS lists (shared ports
   included); the external side first, then dst.
5. Port match on non-shared ("owned") ports, per protocol (tcp, udp, sctp; other protocols only
   match prefixes). When both ports are owned: the non-ephemeral (< 32768) side, then the
   external side, then the lower port, then dst.
6. Otherwise service 0, `other`.

How each flow was classified is `Classified.method` (METHODS: port, prefix, asn, dns, name,
app-id; 0 = none).

Shared ports (443, 80, 5222 for WhatsApp ...) never classify alone; they only break ties
between identical prefixes listed by several services (the first service, in catalogue order,
whose ports include the port on the prefix side; else the first) and between two matching sides.

The host is the internal endpoint; if both are internal, the client (the side that is not the
service side; if no side is known, the higher port, src on equal ports); if none, no host.

Everything is NumPy over the batch: two uint16 gathers per address (ranges.RangeTable), two per
port, and a dozen element-wise operations. Rare cases (prefixes longer than /24, both sides
matching, identical prefixes) run on the affected rows only. With the compiled kernels, one pass
(collector/kernels/_classify.c) does steps 3 and 5 and the host for every flow but those rare
cases, which take the NumPy steps on their rows; the results are the same.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from collector import kernels
from collector.classify import asn as asn_data
from collector.classify.catalogue import Catalogue, CatalogueError, Network, Service
from collector.classify.ranges import RangeTable, elementary
from collector.kernels.grouping import distinct
from collector.netflow.batch import FlowBatch

DEFAULT_INTERNAL: tuple[str, ...] = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
    "100.64.0.0/10",  # RFC 6598 shared address space (carrier-grade NAT)
    "fc00::/7",  # RFC 4193 unique local addresses
)
EPHEMERAL_MIN = 32768  # Linux ip_local_port_range starts here; IANA dynamic range at 49152
INTERNAL_BIT = 1 << 14  # in range-table values; the low 14 bits are the prefix group
GROUP_MASK = INTERNAL_BIT - 1
_INTERNAL = object()  # range tag of internal networks
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_PROTO_ROW = {6: 0, 17: 1, 132: 2}  # rows of the port tables; row 3 = any other protocol
_PORTS = 65536
# Classified.method: how a flow got its service. Stored per rollup row; keep the order.
METHODS = ("none", "port", "prefix", "asn", "dns", "name", "app-id")
M_PORT, M_PREFIX, M_ASN, M_DNS, M_NAME, M_APP = range(1, 7)
WEB_PORTS = (80, 443)  # never classify by ASN: every service of an AS serves the web on them


@dataclass(slots=True)
class Classified:
    """One row per flow. The category of a flow is `classifier.category[service]`."""

    service: np.ndarray  # uint16 index into catalogue.services (0 = other)
    host: np.ndarray  # ADDR: the internal host, zeros when there is none
    has_host: np.ndarray  # bool
    host_is_src: np.ndarray  # bool: the host is the flow's source (False when no host)
    method: np.ndarray | None = None  # uint8 index into METHODS

    def __len__(self) -> int:
        return len(self.service)


class Classifier:
    def __init__(self, catalogue: Catalogue, internal: Sequence[str] = DEFAULT_INTERNAL,
                 app_ids: dict[int, str] | None = None, asn: asn_data.AsnSnapshot | None = None):
        self.catalogue = catalogue
        self.internal = tuple(_parse_internal(internal))
        self.category = catalogue.category_index()  # service index -> index into categories
        self._n = n = len(catalogue.services)
        self._proto_offset = np.full(256, 3 * _PORTS, np.intp)
        for proto, row in _PROTO_ROW.items():
            self._proto_offset[proto] = row * _PORTS
        self._proto_offset64 = self._proto_offset.astype(np.int64)  # as the kernel takes it
        self._owned = _owned_table(catalogue.services)
        self._owned_blocks = _port_blocks(self._owned)  # as the kernel takes it
        self._portset, self._member = _membership(catalogue.services)
        self._groups: dict[tuple[int, ...], int] = {}
        self._asn_groups: dict[tuple[int, ...], int] = {}
        self.asn = asn if asn is not None else asn_data.shipped()
        self._v4, self._v6 = self._range_tables(catalogue.services, self.internal, self.asn)
        v4, v6 = self._v4, self._v6  # as collector/kernels/_classify.c takes them
        self._kernel_tables = ((v4.level1, v4.level2, v4.starts, v4.values, v4.s1, v4.s2),
                               (v6.level1, v6.level2, v6.starts_hi, v6.starts_lo, v6.values, v6.s1, v6.s2))
        # Prefix groups >= n are sets of services listing the same most-specific prefix.
        width = max((len(m) for m in self._groups), default=1)
        self._group_members = np.zeros((max(len(self._groups), 1), width), np.uint16)
        for m, g in self._groups.items():
            self._group_members[g - n, :len(m)] = m
        # ASN groups count down from GROUP_MASK: the services whose asns cover an address that no
        # prefix does; row GROUP_MASK - group + 1 of _asn_members (row 0: none).
        self._asn_floor = GROUP_MASK - len(self._asn_groups)
        if n + len(self._groups) > self._asn_floor:
            raise CatalogueError("asns", "too many distinct prefix and ASN service groups")
        width = max((len(m) for m in self._asn_groups), default=1)
        self._asn_members = np.zeros((len(self._asn_groups) + 1, width), np.uint16)
        for m, g in self._asn_groups.items():
            self._asn_members[GROUP_MASK - g + 1, :len(m)] = m
        self._learned: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.learned_addresses = None  # collector.dns.LearnedAddresses, set by the pipeline
        self.clock = None  # the pipeline's: learned addresses are judged at clock() unless `now` is given
        self.set_app_ids(app_ids or {})

    def set_app_ids(self, app_ids: dict[int, str]) -> None:
        """Application id (IE 95 as an integer) -> service id for flows of every exporter: the
        operator's `classify.app_ids`. These win over what an exporter names itself."""
        self._app_keys, self._app_values = self._table(app_ids)

    def set_learned(self, session: int, app_ids: dict[int, str]) -> None:
        """Application ids one exporter session named in its options data (IE 95 -> IE 96 name,
        matched to services by the catalogue): they classify that session's flows only, so one
        exporter cannot relabel another's traffic."""
        if app_ids:
            self._learned[session] = self._table(app_ids)
        else:
            self._learned.pop(session, None)

    def forget(self, sessions) -> None:
        """Sessions that are gone (evicted, expired)."""
        for sid in sessions:
            self._learned.pop(sid, None)

    def _table(self, app_ids: dict[int, str]) -> tuple[np.ndarray, np.ndarray]:
        keys, values = [], []
        for app, sid in sorted(app_ids.items()):
            service = self.catalogue.by_id.get(sid)
            if service is None:
                raise CatalogueError(f"app_ids[{app}]", f'"{sid}": no such service')
            if not 0 < int(app) < 1 << 64:
                raise CatalogueError(f"app_ids[{app}]", "application id out of range")
            keys.append(int(app))
            values.append(service.index)
        return np.array(keys, np.uint64), np.array(values, np.uint16)

    COLUMNS = frozenset(("src_addr", "dst_addr", "src_port", "dst_port", "proto", "app_id"))  # what it reads

    def classify_batch(self, batch: FlowBatch, now: float | None = None) -> Classified:
        return self.classify(batch.src_addr, batch.dst_addr, batch.src_port, batch.dst_port,
                             batch.proto, batch.app_id, batch.session, now=now)

    def classify(self, src_addr: np.ndarray, dst_addr: np.ndarray, src_port: np.ndarray,
                 dst_port: np.ndarray, proto: np.ndarray, app_id: np.ndarray | None = None,
                 session: np.ndarray | None = None, now: float | None = None) -> Classified:
        """`now`: the time learned addresses are judged at (their TTL + grace), else `clock()`;
        needed only when `learned_addresses` is set."""
        src_port = np.asarray(src_port, np.uint16)
        dst_port = np.asarray(dst_port, np.uint16)
        proto = np.asarray(proto, np.uint8)
        kernel = kernels.compiled
        if kernel is not None:
            state, host, has_host, host_is_src, fix = self._decide_compiled(kernel.classify, src_addr, dst_addr,
                                                                            src_port, dst_port, proto)
        else:
            state, fix = self._decide(src_addr, dst_addr, src_port, dst_port, proto), None
        service, service_is_src, side_known, method, src_int, dst_int = state
        table = self.learned_addresses
        if table is not None and len(table):
            if now is None:
                now = self.clock() if self.clock is not None else 0.0
            view = table.view(self.catalogue.by_id, now)
            if len(view):
                # learned addresses are servers outside: internal addresses are not looked up;
                # both sides in one pass, which also gives the rows either side matched
                s, d, hits = view.lookup_pair(src_addr, dst_addr, now, src_int, dst_int)
                if hits.size:
                    _patch_rows(hits, s[hits], d[hits], src_int, dst_int, service, service_is_src, side_known,
                                method, M_DNS)
                    if fix is not None:
                        fix.append(hits)

        if app_id is not None and (self._app_keys.size or self._learned):
            app_id = np.asarray(app_id, np.uint64)
            rows = np.flatnonzero(app_id)
            if rows.size:
                before = service[rows]
                if self._learned and session is not None:
                    self._apply_learned(app_id, np.asarray(session), rows, service)
                _apply(self._app_keys, self._app_values, app_id[rows], rows, service)
                changed = rows[service[rows] != before]
                # engine 0: a server name the exporter sent (netflow.fields.NAME_ENGINE), else an id
                method[changed] = np.where((app_id[changed] >> np.uint64(56)) == 0, M_NAME, M_APP)
                if fix is not None:
                    fix.append(changed)

        if fix is None:
            host, has_host, host_is_src = _hosts(src_addr, dst_addr, src_port, dst_port, src_int, dst_int,
                                                 service_is_src, side_known)
            method *= service != 0  # no method for other (a multiply: a boolean-mask store took 50x as long)
        elif fix:  # the kernel's hosts hold where no later step changed a row; redo the others
            rows = distinct(np.concatenate(fix)) if len(fix) > 1 else fix[0]
            if rows.size:
                h, hh, hs = _hosts(src_addr[rows], dst_addr[rows], src_port[rows], dst_port[rows], src_int[rows],
                                   dst_int[rows], service_is_src[rows], side_known[rows])
                host[rows], has_host[rows], host_is_src[rows] = h, hh, hs
                method[rows] *= service[rows] != 0
        return Classified(service, host, has_host, host_is_src, method)

    def _decide(self, src_addr, dst_addr, src_port, dst_port, proto) -> tuple:
        """Steps 3-5 (prefix, ASN, owned port) in NumPy: -> (service, service_is_src,
        side_known, method, src_int, dst_int), before learned addresses and application ids."""
        src_key = self._proto_offset[proto]  # flat port-table index
        dst_key = src_key + dst_port
        src_key += src_port
        src_val = self._lookup(src_addr)
        dst_val = self._lookup(dst_addr)
        src_int = (src_val & INTERNAL_BIT) != 0
        dst_int = (dst_val & INTERNAL_BIT) != 0
        src_pfx, src_asn = self._resolve(src_val & GROUP_MASK, src_key)
        dst_pfx, dst_asn = self._resolve(dst_val & GROUP_MASK, dst_key)
        src_own = self._owned[src_key]
        dst_own = self._owned[dst_key]

        # Prefix match: src side unless dst matches too (ties decided on those rows only).
        src_m, dst_m = src_pfx != 0, dst_pfx != 0
        pfx_src = src_m & ~dst_m
        both = np.flatnonzero(src_m & dst_m)
        if both.size:
            pfx_src[both] = self._prefix_tie(both, src_pfx, dst_pfx, src_int, dst_int,
                                             src_key, dst_key, src_port, dst_port)
        # Owned ports.
        src_o, dst_o = src_own != 0, dst_own != 0
        own_src = src_o & ~dst_o
        both = np.flatnonzero(src_o & dst_o)
        if both.size:
            own_src[both] = _prefer_src(src_port[both] < EPHEMERAL_MIN, dst_port[both] < EPHEMERAL_MIN,
                                        ~src_int[both], ~dst_int[both],
                                        src_port[both] < dst_port[both], dst_port[both] < src_port[both])
        service = np.where(own_src, src_own, dst_own)
        service_is_src = own_src
        side_known = src_o | dst_o
        method = side_known.astype(np.uint8)  # M_PORT where a port decided
        if src_asn is not None or dst_asn is not None:
            self._apply_asn(src_asn, dst_asn, src_key, dst_key, src_port, dst_port, src_int, dst_int,
                            service, service_is_src, side_known, method)
        pfx = np.flatnonzero(src_m | dst_m)  # a few percent of the rows: patch them
        if pfx.size:
            on_src = pfx_src[pfx]
            service[pfx] = np.where(on_src, src_pfx[pfx], dst_pfx[pfx])
            service_is_src[pfx] = on_src
            side_known[pfx] = True
            method[pfx] = M_PREFIX
        return service, service_is_src, side_known, method, src_int, dst_int

    def _decide_compiled(self, classify, src_addr, dst_addr, src_port, dst_port, proto) -> tuple:
        """`_decide` and the hosts by the kernel (collector/kernels/_classify.c) in one pass;
        the rows it leaves (several services or an ASN on a side, prefixes on both)
        by `_decide` on those rows only. -> (the state, host, has_host, host_is_src, [rows whose
        hosts are still to be made])."""
        n = len(src_port)
        src_addr, dst_addr = np.ascontiguousarray(src_addr), np.ascontiguousarray(dst_addr)
        service = np.empty(n, np.uint16)
        method = np.empty(n, np.uint8)
        flags = [np.empty(n, bool) for _ in range(6)]  # src_int, dst_int, service_is_src, side_known, host ...
        host = np.empty(n, src_addr.dtype)
        rare = np.empty(n, np.int32)  # rows listed: 4 octets a flow at the batch's peak of memory
        k = classify(src_addr, dst_addr, np.ascontiguousarray(src_port), np.ascontiguousarray(dst_port),
                     np.ascontiguousarray(proto), *self._kernel_tables, self._proto_offset64, self._owned_blocks, self._n,
                     service, method, *flags[:4], host, *flags[4:], rare)
        src_int, dst_int, service_is_src, side_known, has_host, host_is_src = flags
        fix = []
        if k:
            rows = rare[:k]
            s, si, sk, m, s_int, d_int = self._decide(src_addr[rows], dst_addr[rows], src_port[rows], dst_port[rows],
                                                      proto[rows])
            service[rows], service_is_src[rows], side_known[rows], method[rows] = s, si, sk, m
            src_int[rows], dst_int[rows] = s_int, d_int
            fix.append(rows)
        return (service, service_is_src, side_known, method, src_int, dst_int), host, has_host, host_is_src, fix

    # ------------------------------------------------------------ internals

    def _lookup(self, addr: np.ndarray) -> np.ndarray:
        """Range-table value of each address: IPv4 (mapped) rows on the 32-bit table, the rest
        on the IPv6 one."""
        out, v6 = self._v4.lookup_addr(addr)
        if v6.size:
            out[v6] = self._v6.lookup(addr["hi"][v6], addr["lo"][v6])
        return out

    def _resolve(self, group: np.ndarray, port_key: np.ndarray):
        """Prefix group -> service: groups of several services (identical prefixes) pick the first
        member whose ports include the port on that side, else the first member. ASN groups (the
        values above _asn_floor) become 0 here and come back as (rows, their _asn_members rows),
        else None: the pass that finds the groups finds them, so an ASN costs no pass of its own."""
        if not self._groups and not self._asn_groups:
            return group, None
        multi = np.flatnonzero(group >= self._n)
        if not multi.size:
            return group, None
        group = group.copy()
        g = group[multi]
        asn = None
        if self._asn_groups:
            is_asn = g > self._asn_floor
            if is_asn.any():
                asn = (multi[is_asn], (GROUP_MASK + 1) - g[is_asn])
                group[asn[0]] = 0
                multi, g = multi[~is_asn], g[~is_asn]
        if multi.size:
            members = self._group_members[g - self._n]
            portset = self._portset[port_key[multi]]
            chosen = members[:, 0].copy()
            for k in range(members.shape[1] - 1, -1, -1):  # last to first: the first match wins
                cand = members[:, k]
                hit = (cand != 0) & self._member[portset, cand]
                chosen[hit] = cand[hit]
            group[multi] = chosen
        return group, asn

    def _asn_service(self, row: np.ndarray, port_key: np.ndarray, port: np.ndarray) -> np.ndarray:
        """Per flow with an ASN group (its row of _asn_members, 0 for none): the one member whose
        ports list this port (0: none or several; web ports never)."""
        members = self._asn_members[row]
        portset = self._portset[port_key]
        hits = np.zeros(members.shape, bool)
        for k in range(members.shape[1]):
            cand = members[:, k]
            hits[:, k] = (cand != 0) & self._member[portset, cand]
        one = hits.sum(axis=1) == 1
        for web in WEB_PORTS:
            one &= port != web
        chosen = np.zeros(len(row), np.uint16)
        chosen[one] = members[one, hits[one].argmax(axis=1)]
        return chosen

    def _apply_asn(self, src_asn, dst_asn, src_key, dst_key, src_port, dst_port, src_int, dst_int,
                   service, service_is_src, side_known, method) -> None:
        """src_asn, dst_asn: (rows, _asn_members rows) or None, from _resolve."""
        empty = (np.zeros(0, np.intp), np.zeros(0, np.uint16))
        (s_rows, s_mem), (d_rows, d_mem) = src_asn or empty, dst_asn or empty
        rows = distinct(np.concatenate((s_rows, d_rows)))  # np.union1d, without numpy.ma
        s_full = np.zeros(len(rows), np.uint16)
        d_full = np.zeros(len(rows), np.uint16)
        if s_rows.size:
            s_full[np.searchsorted(rows, s_rows)] = self._asn_service(s_mem, src_key[s_rows], src_port[s_rows])
        if d_rows.size:
            d_full[np.searchsorted(rows, d_rows)] = self._asn_service(d_mem, dst_key[d_rows], dst_port[d_rows])
        _patch_rows(rows, s_full, d_full, src_int, dst_int, service, service_is_src, side_known, method, M_ASN)

    def _prefix_tie(self, rows, src_pfx, dst_pfx, src_int, dst_int, src_key, dst_key, src_port, dst_port):
        sp, dp = src_port[rows], dst_port[rows]
        src_member = self._member[self._portset[src_key[rows]], src_pfx[rows]]
        dst_member = self._member[self._portset[dst_key[rows]], dst_pfx[rows]]
        return _prefer_src(~src_int[rows], ~dst_int[rows], src_member, dst_member,
                           sp < EPHEMERAL_MIN, dp < EPHEMERAL_MIN, sp < dp, dp < sp)

    def _apply_learned(self, app_id: np.ndarray, session: np.ndarray, rows: np.ndarray,
                       service: np.ndarray) -> None:
        sessions = session[rows]
        for sid in distinct(sessions).tolist():
            table = self._learned.get(sid)
            if table is not None:
                mine = rows[sessions == sid]
                _apply(*table, app_id[mine], mine, service)

    def _range_tables(self, services: Sequence[Service], internal: Sequence[Network],
                      snapshot: asn_data.AsnSnapshot):
        v4: list[tuple[int, int, object]] = []
        v6: list[tuple[int, int, object]] = []
        for net in internal:
            _add_network(net, _INTERNAL, v4, v6)
        for s in services:
            for net in s.networks:
                _add_network(net, s.index, v4, v6)
            for number in s.asns:  # the same tables: an ASN costs no lookup of its own
                for net in snapshot.networks(number):
                    _add_network(net, s.index, v4, v6, asn=True)
        tables = []
        for items, width, strides in ((v4, 32, (16, 8)), (v6, 128, (16, 16))):
            starts, values = elementary(items, width, self._combine)
            tables.append(RangeTable(starts, values, width, strides))
        return tables

    def _combine(self, tags: list) -> int:
        internal = any(t is _INTERNAL for t in tags)
        prefixes = [t for t in tags if t is not _INTERNAL and not isinstance(t, _AsnTag)]
        asns = [t for t in tags if isinstance(t, _AsnTag)]
        group = 0
        if asns and not prefixes:  # a service prefix beats any ASN
            longest = max(plen for plen, _ in asns)
            members = tuple(sorted({s for plen, s in asns if plen == longest}))
            group = self._asn_groups.setdefault(members, GROUP_MASK - len(self._asn_groups))
        if prefixes:
            longest = max(plen for plen, _ in prefixes)
            members = tuple(sorted({s for plen, s in prefixes if plen == longest}))
            if len(members) == 1:
                group = members[0]
            else:
                group = self._groups.setdefault(members, len(self.catalogue.services) + len(self._groups))
                if group >= INTERNAL_BIT:
                    raise CatalogueError("prefixes", "too many distinct overlapping prefix groups")
        return group | (INTERNAL_BIT if internal else 0)


def _hosts(src_addr, dst_addr, src_port, dst_port, src_int, dst_int, service_is_src, side_known) -> tuple:
    """The internal side's address; if both sides are internal, the client side's (the one that
    is not the service side; if no side is known, the higher port, src on equal ports); zeros
    where no side is internal. -> (host, has_host, host_is_src)."""
    client_is_src = np.where(side_known, ~service_is_src, src_port >= dst_port)
    host_is_src = src_int & (~dst_int | client_is_src)
    has_host = src_int | dst_int
    host = np.where(host_is_src, src_addr, dst_addr)
    if not has_host.all():
        host[np.flatnonzero(~has_host)] = 0
    return host, has_host, host_is_src


def _patch(src_s: np.ndarray, dst_s: np.ndarray, src_int, dst_int, service, service_is_src, side_known,
           method, code: int) -> None:
    """Where either side names a service (non-zero), that service wins the row: the external
    side when both do, else dst."""
    hit = np.flatnonzero((src_s | dst_s) != 0)
    if hit.size:
        _patch_rows(hit, src_s[hit], dst_s[hit], src_int, dst_int, service, service_is_src, side_known, method,
                    code)


def _patch_rows(rows, s, d, src_int, dst_int, service, service_is_src, side_known, method, code: int) -> None:
    """_patch for `rows` only: s, d are those rows' services on each side."""
    keep = (s | d) != 0
    hit, s, d = rows[keep], s[keep], d[keep]
    if not hit.size:
        return
    on_src = (s != 0) & ((d == 0) | (~src_int[hit] & dst_int[hit]))
    service[hit] = np.where(on_src, s, d)
    service_is_src[hit] = on_src
    side_known[hit] = True
    method[hit] = code


def _prefer_src(*criteria: np.ndarray) -> np.ndarray:
    """criteria = (src_a, dst_a, src_b, dst_b, ...) booleans, most important first: True where the
    first criterion that differs favours src; False (dst) when none differs."""
    result = np.zeros(len(criteria[0]), bool)
    undecided = np.ones(len(criteria[0]), bool)
    for src_c, dst_c in zip(criteria[::2], criteria[1::2], strict=True):
        differs = undecided & (src_c != dst_c)
        result |= differs & src_c
        undecided &= ~differs
    return result


def _parse_internal(internal: Sequence[str]) -> list[Network]:
    out = []
    for i, text in enumerate(internal):
        try:
            out.append(ipaddress.ip_network(str(text).strip(), strict=True))
        except ValueError as e:
            raise CatalogueError(f"internal[{i}]", f'"{text}": {e}') from None
    return out


class _AsnTag(tuple):
    """(prefix length, service index) of an ASN's network, told apart from a service prefix."""


def _add_network(net: Network, tag, v4: list, v6: list, asn: bool = False) -> None:
    """Range items (first, last, tag) for one network; an IPv6 network covering the IPv4-mapped
    block ::ffff:0:0/96 (where `ADDR` keeps IPv4) applies to IPv4 too."""
    plen = net.prefixlen
    kind = _AsnTag if asn else tuple
    item_tag = tag if tag is _INTERNAL else kind((plen, tag))
    if net.version == 4:
        v4.append((int(net.network_address), int(net.broadcast_address), item_tag))
        return
    v6.append((int(net.network_address), int(net.broadcast_address), item_tag))
    if net.overlaps(_V4_MAPPED):
        inner = _V4_MAPPED if plen <= 96 else net
        v4_tag = tag if tag is _INTERNAL else kind((plen - 96, tag))
        mask = 0xFFFF_FFFF
        v4.append((int(inner.network_address) & mask, int(inner.broadcast_address) & mask, v4_tag))


def _owned_table(services: Sequence[Service]) -> np.ndarray:
    """(proto row, port) -> index of the service owning that non-shared port, flattened."""
    table = np.zeros(4 * _PORTS, np.uint16)
    for s in services[1:]:
        shared = np.zeros(4 * _PORTS, bool)
        for r in s.shared_ranges:
            base = _PROTO_ROW[r.proto] * _PORTS
            shared[base + r.lo:base + r.hi + 1] = True
        for r in s.port_ranges:
            base = _PROTO_ROW[r.proto] * _PORTS
            span = slice(base + r.lo, base + r.hi + 1)
            table[span] = np.where(shared[span], table[span], s.index)
    return table


def _port_blocks(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_owned_table` as the kernel reads it: (top, blocks), top[(proto row) * 256 + port // 256]
    the block of 256 ports that one is in, block 0 all zero. The flat table is 512 KiB and a
    batch's ephemeral ports read it all over, a cache miss for most flows; the catalogue's owned
    ports fall in a few dozen distinct blocks, so the two levels are some 20 KiB."""
    rows = table.reshape(-1, 256)
    blocks, top = np.unique(np.vstack([np.zeros((1, 256), table.dtype), rows]), axis=0, return_inverse=True)
    # np.unique sorts, and the zero block sorts first: it is block 0
    assert not blocks[0].any()
    return top.ravel()[1:].astype(np.uint16), np.ascontiguousarray(blocks.ravel())


def _membership(services: Sequence[Service]) -> tuple[np.ndarray, np.ndarray]:
    """(proto row, port) -> port-set id, and member[port-set id, service] -> the service lists
    that port (owned or shared). Distinct port sets are few, so both tables stay small."""
    nbytes = (len(services) + 7) // 8
    bits = np.zeros((4 * _PORTS, nbytes), np.uint8)
    for s in services[1:]:
        for r in (*s.port_ranges, *s.shared_ranges):
            base = _PROTO_ROW[r.proto] * _PORTS
            bits[base + r.lo:base + r.hi + 1, s.index >> 3] |= np.uint8(1 << (s.index & 7))
    rows = np.ascontiguousarray(bits).view(f"V{nbytes}").ravel()
    unique, inverse = np.unique(rows, return_inverse=True)
    member = np.unpackbits(unique.view(np.uint8).reshape(len(unique), nbytes), axis=1, bitorder="little")
    return inverse.astype(np.uint16).ravel(), member[:, :len(services)].astype(bool)


def _apply(keys: np.ndarray, values: np.ndarray, ids: np.ndarray, rows: np.ndarray, service: np.ndarray) -> None:
    """service[rows] = the value of each id found in the sorted `keys`."""
    if not keys.size:
        return
    i = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
    hit = keys[i] == ids
    service[rows[hit]] = values[i[hit]]
