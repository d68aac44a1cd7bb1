"""Options data (RFC 7011 §3.4.2.2, RFC 3954 §6.2) into a session's state: sampling (a session
rate, or a rate per sampler / selector id: v9 34/35/48/49/50, IPFIX 302/305/306/309/310), the
exporter's system init time (IE 160, for sysUpTime-relative IPFIX times), interface names
(IE 82/83 by ifIndex) and application names (IE 96 by IE 95).

The tables are bounded per session (`Limits`), names in count, length and octets (per session
and overall, `SessionTable.put_name`); what a ceiling refuses is counted.
"""

from __future__ import annotations

from collector.netflow import fields as F
from collector.netflow.session import Session
from collector.netflow.sessions import SessionTable
from collector.netflow.templates import Template, app_id_int

MAX_RATE = 0xFFFF_FFFF  # a sampling rate must fit the batch's uint32 column


def apply(sess: Session, t: Template, records: list[list[bytes]], table: SessionTable) -> bool:
    """Options records of template `t` (field values as octets) into `sess`. Returns whether
    they changed anything (session state or counters)."""
    idx = t.index()
    limits, stats = table.limits, table.stats
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
            elif rate > MAX_RATE:  # the sampling_rate column is 32 bits (and no sampler is that sparse)
                stats.notices[sess.stat_label, "sampling-interval-too-large"] += 1
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
            changed |= table.put_name(sess, sess.if_names, ifindex, _text(values[name_at]))
        if F.applicationId in idx and F.applicationName in idx:
            app = app_id_int(values[idx[F.applicationId]])
            if app:  # engine 0 is invalid (RFC 6759 §4.1)
                changed |= table.put_name(sess, sess.app_names, app, _text(values[idx[F.applicationName]]))
    return changed


def _text(raw: bytes) -> str:
    # a name longer than any kept (`Limits.max_name_length` characters) is cut before decoding
    return raw[:1024].split(b"\0", 1)[0].decode("utf-8", "replace").strip()
