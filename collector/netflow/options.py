"""Options data (RFC 7011 §3.4.2.2, RFC 3954 §6.2) into a session's state: sampling (a session
rate, or a rate per sampler / selector id: v9 34/35/48/49/50, IPFIX 302/305/306/309/310), the
exporter's system init time (IE 160, for sysUpTime-relative IPFIX times), interface names
(IE 82/83 by ifIndex) and application names (IE 96 by IE 95).

The tables are bounded per session (`Limits`); what a ceiling refuses is counted.
"""

from __future__ import annotations

from collector.netflow import fields as F
from collector.netflow.session import Limits, Session
from collector.netflow.stats import DecodeStats
from collector.netflow.templates import Template, app_id_int


def apply(sess: Session, t: Template, records: list[list[bytes]], limits: Limits, stats: DecodeStats) -> bool:
    """Options records of template `t` (field values as octets) into `sess`. Returns whether
    they changed anything (session state or counters)."""
    idx = t.index()
    limit = limits.max_names_per_session
    changed = False

    def num(values, *keys):
        for k in keys:
            if k in idx:
                return int.from_bytes(values[idx[k]], "big")
        return None

    for values in records:
        init = num(values, F.systemInitTimeMilliseconds)
        if init is not None and init != sess.system_init_ms:
            sess.system_init_ms = init
            changed = True
        interval = num(values, F.samplingInterval, F.samplerRandomInterval, F.samplingPacketInterval)
        if interval is None and F.samplingPopulation in idx and F.samplingSize in idx:
            size = num(values, F.samplingSize)
            interval = num(values, F.samplingPopulation) // size if size else 0
        if interval is not None:
            space = num(values, F.samplingPacketSpace) or 0
            rate = (interval + space) // interval if interval and space else interval
            sampler = num(values, F.samplerId, F.selectorId)
            if rate <= 0:
                stats.notices[sess.stat_label, "sampling-interval-zero"] += 1
                changed = True
            elif sampler is None:
                changed |= sess.sampling_rate != rate
                sess.sampling_rate = rate
            elif sampler in sess.samplers or len(sess.samplers) < limits.max_samplers_per_session:
                changed |= sess.samplers.get(sampler) != rate
                sess.samplers[sampler] = rate
            else:
                stats.evicted["samplers"] += 1
                changed = True
        ifindex = num(values, F.ingressInterface, F.V9_SCOPE_INTERFACE, F.egressInterface)
        name_at = idx.get(F.interfaceName, idx.get(F.interfaceDescription))
        if ifindex is not None and name_at is not None:
            changed |= _put(sess.if_names, ifindex, _text(values[name_at]), limit, stats)
        if F.applicationId in idx and F.applicationName in idx:
            app = app_id_int(values[idx[F.applicationId]])
            changed |= _put(sess.app_names, app, _text(values[idx[F.applicationName]]), limit, stats)
    return changed


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def _put(table: dict, k: int, v: str, limit: int, stats: DecodeStats) -> bool:
    """Store a name under the ceiling; returns whether anything changed or was counted."""
    if k in table or len(table) < limit:
        changed = table.get(k) != v
        table[k] = v
        return changed
    stats.evicted["names"] += 1
    return True
