"""Per-exporter state, scoped as RFC 7011 §8 asks: (exporter address, source port, version,
observation domain / source id). Templates, options (sampling, names, init time), sequence
numbers and data held for missing templates all live here, never in one global table.

Every table keyed by what a sender controls has a ceiling (`Limits`); what a ceiling drops
is counted by the decoder.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# the schema owns the configurable defaults; collector.config imports nothing of the app
from collector.config import default
from collector.netflow.templates import Template


@dataclass(frozen=True, slots=True)
class Limits:
    """The ceilings; those that `[limits]` configures default to the schema's values."""

    max_sessions: int = default("limits.max_sessions")  # (exporter, port, version, domain) tuples
    max_templates_per_session: int = default("limits.max_templates_per_session")
    max_templates: int = default("limits.max_templates")  # over all sessions
    max_pending_per_session: int = default("limits.max_pending_per_session")  # sets held for a missing template
    max_pending_bytes_per_session: int = default("limits.max_pending_bytes_per_session")
    max_pending_bytes: int = default("limits.max_pending_bytes")  # over all sessions
    pending_max_age: float = default("limits.pending_max_age")  # seconds of receive time
    max_names_per_session: int = default("limits.max_names_per_session")  # interface and application names
    max_template_bytes_per_session: int = default("limits.max_template_bytes_per_session")  # on the wire
    max_template_bytes: int = default("limits.max_template_bytes")  # over all sessions
    max_name_bytes_per_session: int = default("limits.max_name_bytes_per_session")  # UTF-8 octets
    max_name_bytes: int = default("limits.max_name_bytes")  # over all sessions
    # template set octets parsed per decode call for sessions that have not sent a flow yet
    max_new_template_bytes_per_batch: int = default("limits.max_new_template_bytes_per_batch")
    max_name_length: int = 255  # characters of an interface or application name; longer ones are cut
    max_samplers_per_session: int = 256
    max_stats_exporters: int = 4096  # exporter labels in counters; the rest fold into "other"


@dataclass(slots=True)
class Pending:
    """A data set whose template has not arrived yet, with what is needed to decode it later."""

    tid: int
    data: bytes  # the set body
    meta: tuple  # (export_secs, uptime_ms, datagram index, record base)
    received: float


@dataclass(slots=True, eq=False)
class Session:
    sid: int  # index in the decoder's session table; stable for the session's life
    exporter: str
    port: int
    version: int
    domain: int
    templates: dict[int, Template] = field(default_factory=dict)
    template_bytes: int = 0  # `Template.octets` of `templates`
    refused: dict[int, str] = field(default_factory=dict)  # template id -> why (bounded like templates)
    established: bool = False  # has sent a flow record: its templates are parsed before new sessions'
    # options-derived state
    sampling_rate: int = 1  # from options without a sampler id
    samplers: dict[int, int] = field(default_factory=dict)  # sampler / selector id -> rate
    system_init_ms: int | None = None  # IE 160, base for sysUpTime times in IPFIX
    if_names: dict[int, str] = field(default_factory=dict)
    app_names: dict[int, str] = field(default_factory=dict)
    name_bytes: int = 0  # UTF-8 octets of `if_names` and `app_names`
    # sequence tracking (RFC 3954 §5.1 counts packets; RFC 7011 §3.1 and v5 count records)
    next_seq: int | None = None
    records_seen: int = 0
    packets_seen: int = 0
    pending: deque = field(default_factory=deque)
    pending_bytes: int = 0
    last_seen: float = 0.0
    stat_label: str = ""  # the exporter's label in DecodeStats (bounded)
    override: int | None = None  # configured sampling rate for this exporter
    # options data sets that changed nothing when last applied, by template id: (length, hash)
    # of the set and its record count. Exporters re-send identical options every few seconds;
    # the decoder's bulk path skips such a set while nothing has changed since (any change to
    # options-derived state or to the templates forgets them all). Bounded by the templates.
    options_seen: dict[int, tuple[tuple[int, int], int]] = field(default_factory=dict)
    sflow: object | None = None  # an sFlow session's agent state (`collector.sflow.decode.Agent`)
    # tallies since the end of the last decode call, folded into DecodeStats there
    n_datagrams: int = 0
    n_flows: int = 0
    n_lost: int = 0

    @property
    def label(self) -> str:
        host = f"[{self.exporter}]" if ":" in self.exporter else self.exporter
        return f"{host}:{self.port}"

    def track_sequence(self, seq: int, records: int, packet_counting: bool) -> None:
        """Feed one message's sequence number; add the flow records estimated lost.

        v5 and IPFIX carry the count of records sent before this message; v9 counts export
        packets, so a gap of N packets is N times the mean records per packet so far.
        A jump backwards or by more than 2^31 is a restart or reordering: re-synchronise.
        """
        self.packets_seen += 1
        self.records_seen += records
        expected = self.next_seq
        self.next_seq = (seq + (1 if packet_counting else records)) & 0xFFFF_FFFF
        if expected is not None and seq != expected:
            gap = (seq - expected) & 0xFFFF_FFFF
            if gap < 0x8000_0000:
                lost = round(gap * self.records_seen / self.packets_seen) if packet_counting else gap
                self.n_lost += lost

    def options_applied(self, tid: int, body: bytes, records: int, changed: bool) -> None:
        """Options data of template `tid` was applied; `changed`: it changed state or counters."""
        if changed:
            self.options_seen.clear()
        else:
            self.options_seen[tid] = ((len(body), hash(body)), records)

    def to_json(self) -> dict:
        return {
            "exporter": self.exporter, "port": self.port, "version": self.version,
            "domain": self.domain, "templates": [t.to_json() for t in self.templates.values()],
            "sampling_rate": self.sampling_rate,
            "samplers": {str(k): v for k, v in self.samplers.items()},
            "system_init_ms": self.system_init_ms,
            "if_names": {str(k): v for k, v in self.if_names.items()},
            "app_names": {str(k): v for k, v in self.app_names.items()},
            "established": self.established,
        }
