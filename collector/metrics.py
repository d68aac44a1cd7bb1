"""Prometheus metrics (docs/design.md §6). The only module importing prometheus_client.

Business figures come from a `Snapshot` that the daemon swaps in at each flush; the custom
collector builds fresh metric families from it at scrape time, so the hot path never touches a
Prometheus counter. The scrape thread only ever reads an immutable snapshot.

Per-host series are bounded: at most `max_host_series` (host, service) series; traffic of
hosts beyond that is added to `host="other"`, so every sum over hosts stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.process_collector import ProcessCollector

from collector import __version__

OTHER_HOST = "other"


@dataclass(frozen=True)
class Snapshot:
    """Everything a scrape shows, as plain immutable-by-convention data."""

    services: dict = field(default_factory=dict)  # (service, category) -> (bytes, packets, flows)
    hosts: dict = field(default_factory=dict)  # (host, service, category) -> bytes
    active_hosts: dict = field(default_factory=dict)  # (service, category) -> n
    violations: dict = field(default_factory=dict)  # (service, category) -> bytes
    violation_hosts: dict = field(default_factory=dict)  # (host, service, category) -> bytes
    datagrams: dict = field(default_factory=dict)  # (exporter, version) -> n
    flows: dict = field(default_factory=dict)  # (exporter, version) -> n
    errors: dict = field(default_factory=dict)  # (exporter, reason) -> n
    held: dict = field(default_factory=dict)  # exporter -> n
    expired: dict = field(default_factory=dict)  # exporter -> n
    seq_lost: dict = field(default_factory=dict)  # exporter -> n
    socket_drops: dict = field(default_factory=dict)  # listener -> n
    denied: int = 0
    store_errors: int = 0
    exporters: int = 0
    evicted: dict = field(default_factory=dict)  # table -> entries a ceiling dropped
    workers: int = 1  # receiving processes alive
    worker_restarts: int = 0
    snmp: tuple = ()  # collector.snmp.AgentState of each target (replaced, never changed, per poll)
    interface_service: dict = field(default_factory=dict)  # (exporter, if_name, direction, category) -> bytes


class HostSeries:
    """Cumulative bytes per (host, service) with a ceiling on distinct series."""

    def __init__(self, max_series: int):
        self.max_series = max_series
        self.series: dict[tuple[str, str, str], int] = {}

    def add(self, host: str, service: str, category: str, nbytes: int) -> None:
        key = (host, service, category)
        if key in self.series:
            self.series[key] += nbytes
        elif len(self.series) < self.max_series:
            self.series[key] = nbytes
        else:
            other = (OTHER_HOST, service, category)
            self.series[other] = self.series.get(other, 0) + nbytes


class _Collector:
    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        s = self.metrics.snapshot
        info = InfoMetricFamily("imflow_build", "imflow version", labels=["version"])
        info.add_metric([__version__], {})
        yield info
        fam = {name: CounterMetricFamily(f"imflow_service_{name}", f"{name.capitalize()} per service "
                                         "(every flow, `other` included)", labels=["service", "category"])
               for name in ("bytes", "packets", "flows")}
        for (service, category), values in s.services.items():
            for name, v in zip(("bytes", "packets", "flows"), values):
                fam[name].add_metric([service, category], v)
        yield from fam.values()
        c = CounterMetricFamily("imflow_host_bytes", "Bytes per internal host and service (bounded; "
                                "the rest under host=\"other\")", labels=["host", "service", "category"])
        for key, v in s.hosts.items():
            c.add_metric(list(key), v)
        yield c
        g = GaugeMetricFamily("imflow_service_active_hosts", "Distinct internal hosts in the last bin",
                              labels=["service", "category"])
        for key, v in s.active_hosts.items():
            g.add_metric(list(key), v)
        yield g
        c = CounterMetricFamily("imflow_policy_violation_bytes", "Bytes of blocked services from internal "
                                "hosts", labels=["service", "category"])
        for key, v in s.violations.items():
            c.add_metric(list(key), v)
        yield c
        c = CounterMetricFamily("imflow_policy_violation_host_bytes", "Violation bytes per internal host "
                                "(bounded like imflow_host_bytes)", labels=["host", "service", "category"])
        for key, v in s.violation_hosts.items():
            c.add_metric(list(key), v)
        yield c
        for name, doc, labels, data in (
                ("imflow_datagrams", "Datagrams decoded", ["exporter", "version"], s.datagrams),
                ("imflow_flows", "Flow records decoded", ["exporter", "version"], s.flows),
                ("imflow_decode_errors", "Datagrams skipped as malformed, by reason", ["exporter", "reason"],
                 s.errors),
                ("imflow_template_held", "Data sets held for a template not yet received", ["exporter"], s.held),
                ("imflow_template_expired", "Held data sets dropped (age or ceiling)", ["exporter"], s.expired),
                ("imflow_sequence_lost_flows", "Flow records estimated lost from sequence numbers",
                 ["exporter"], s.seq_lost),
                ("imflow_socket_drops", "Datagrams the kernel dropped (receive buffer full)", ["listener"],
                 s.socket_drops),
                ("imflow_evictions", "Entries dropped by a ceiling (sessions, templates, names, samplers, "
                 "open bins, stats-exporters)", ["table"], s.evicted)):
            c = CounterMetricFamily(name, doc, labels=labels)
            for key, v in data.items():
                c.add_metric([str(x) for x in (key if isinstance(key, tuple) else (key,))], v)
            yield c
        for family, name, doc, value in (
                (CounterMetricFamily, "imflow_denied_datagrams", "Datagrams from sources outside exporters.allow",
                 s.denied),
                (CounterMetricFamily, "imflow_store_errors", "Failed writes to the database", s.store_errors),
                (GaugeMetricFamily, "imflow_exporters", "Exporter sessions with state", s.exporters),
                (GaugeMetricFamily, "imflow_workers", "Receiving processes alive (imflow run --workers)", s.workers),
                (CounterMetricFamily, "imflow_worker_restarts", "Worker processes that died and were restarted",
                 s.worker_restarts)):
            f = family(name, doc)
            f.add_metric([], value)
            yield f
        yield from _snmp_families(s)


def _snmp_families(s: Snapshot):
    up = GaugeMetricFamily("imflow_snmp_up", "1 if the exporter's SNMP agent answered the last poll",
                           labels=["exporter"])
    duration = GaugeMetricFamily("imflow_snmp_poll_duration_seconds", "Duration of the last SNMP poll",
                                 labels=["exporter"])
    errors = CounterMetricFamily("imflow_snmp_errors", "Failed SNMP polls by reason", labels=["exporter", "reason"])
    info = InfoMetricFamily("imflow_interface", "Interfaces of each exporter (SNMP)",
                            labels=["exporter", "if_index", "if_name", "if_alias"])
    speed = GaugeMetricFamily("imflow_interface_speed_bits", "Interface speed (ifHighSpeed/ifSpeed)",
                              labels=["exporter", "if_name"])
    octets = CounterMetricFamily("imflow_interface_octets", "Interface octets as the agent counts them",
                                 labels=["exporter", "if_name", "direction"])
    for a in s.snmp:
        up.add_metric([a.exporter], 1 if a.up else 0)
        duration.add_metric([a.exporter], a.last_duration)
        for reason in ("timeout", "auth", "decryption", "other"):
            errors.add_metric([a.exporter, reason], a.errors.get(reason, 0))
        for iface in a.interfaces.values():
            info.add_metric([a.exporter, str(iface.index), iface.name, iface.alias], {})
            speed.add_metric([a.exporter, iface.name], iface.speed_bits)
            if iface.counter_bits:
                octets.add_metric([a.exporter, iface.name, "in"], iface.in_octets)
                octets.add_metric([a.exporter, iface.name, "out"], iface.out_octets)
    yield from (up, duration, errors, info, speed, octets)
    c = CounterMetricFamily("imflow_interface_service_bytes", "Flow bytes per interface, direction and "
                            "category (exporters with an SNMP target)",
                            labels=["exporter", "if_name", "direction", "category"])
    for key, v in s.interface_service.items():
        c.add_metric(list(key), v)
    yield c


class Metrics:
    def __init__(self, max_host_series: int = 5000, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.snapshot = Snapshot()
        self.hosts = HostSeries(max_host_series)
        self.violation_hosts = HostSeries(max_host_series)
        self.flush_duration = Histogram("imflow_flush_duration_seconds", "Time to write one flush to the store",
                                        registry=self.registry,
                                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)
        self._server = None

    def serve(self, host: str, port: int) -> tuple[str, int]:
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return server.server_address[:2]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def swap(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot  # one reference assignment: atomic for the scrape thread
