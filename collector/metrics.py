"""Prometheus metrics and the health check (docs/design.md §6). The only module importing
prometheus_client.

Business figures come from a `Snapshot` that the daemon swaps in at each flush; the custom
collector builds fresh metric families from it at scrape time, so the hot path never touches a
Prometheus counter. The scrape thread only ever reads an immutable snapshot.

Every label is bounded. `exporter` values are the decoder's stats labels: at most 4,096
addresses, the rest counted as "other" (collector.netflow.stats). Per-host series are at most
`max_host_series` (exporter, host, service) series; traffic of hosts beyond that is added to
`host="other"` of its exporter, so every sum over hosts stays exact.

The HTTP endpoint is a small `http.server`: `/metrics` (the registry, in the format the scraper
asks for), `/healthz` (200 or 503 from a health callback, JSON body), `/` (an index), 404 else.

prometheus_client and `http.server` are imported only when the registry or the endpoint is first
wanted: the daemon builds its `Metrics` (the host series, the flush histogram) whether or not
`metrics.listen` is set, and the two imports (with the email, wsgiref and http.client modules
they pull in) are 4.5 MiB of resident memory that a collector without the endpoint never uses
(issue 21; docs/performance.md, "Memory").
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from collector import __version__

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

OTHER_HOST = "other"


@dataclass(frozen=True)
class Snapshot:
    """Everything a scrape shows, as plain immutable-by-convention data."""

    services: dict = field(default_factory=dict)  # (exporter, service, category) -> (bytes, packets, flows)
    hosts: dict = field(default_factory=dict)  # (exporter, host, service, category) -> bytes
    host_names: dict = field(default_factory=dict)  # host -> name from the host map (optional)
    active_hosts: dict = field(default_factory=dict)  # (exporter, service, category) -> n
    violations: dict = field(default_factory=dict)  # (exporter, service, category) -> bytes
    violation_hosts: dict = field(default_factory=dict)  # (exporter, host, service, category) -> bytes
    datagrams: dict = field(default_factory=dict)  # (exporter, version) -> n
    flows: dict = field(default_factory=dict)  # (exporter, version) -> n
    errors: dict = field(default_factory=dict)  # (exporter, reason) -> n
    held: dict = field(default_factory=dict)  # exporter -> n
    expired: dict = field(default_factory=dict)  # exporter -> n
    seq_lost: dict = field(default_factory=dict)  # exporter -> n
    clamped: dict = field(default_factory=dict)  # exporter -> flows whose times were replaced
    socket_drops: dict = field(default_factory=dict)  # listener -> n
    denied: int = 0
    store_errors: int = 0
    store_buffered_rows: int = 0
    store_dropped_rows: int = 0
    store_recreated: int = 0
    exporters: int = 0  # distinct exporter addresses heard from
    sessions: int = 0  # exporter sessions (address, port, domain) with state
    evicted: dict = field(default_factory=dict)  # table -> entries a ceiling dropped
    workers: int = 1  # receiving processes alive
    backlog: tuple = (0, 0)  # (template datagrams waiting for a batch's budget, data sets held for templates)
    worker_restarts: int = 0
    snmp: tuple = ()  # collector.snmp.AgentState of each target (replaced, never changed, per poll)
    interface_service: dict = field(default_factory=dict)  # (exporter, if_name, direction, category) -> bytes
    # more families as plain data: name -> ("counter" | "gauge", help, label names, {label values: value})
    figures: dict = field(default_factory=dict)


class HostSeries:
    """Cumulative bytes per (exporter, host, service) with a ceiling on distinct series."""

    def __init__(self, max_series: int):
        self.max_series = max_series
        self.series: dict[tuple[str, str, str, str], int] = {}

    def add(self, exporter: str, host: str, service: str, category: str, nbytes: int) -> None:
        key = (exporter, host, service, category)
        if key in self.series:
            self.series[key] += nbytes
        elif len(self.series) < self.max_series:
            self.series[key] = nbytes
        else:
            other = (exporter, OTHER_HOST, service, category)
            self.series[other] = self.series.get(other, 0) + nbytes


class _Collector:
    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        s = self.metrics.snapshot
        info = InfoMetricFamily("imflow_build", "imflow version", labels=["version"])
        info.add_metric([__version__], {})
        yield info
        fam = {name: CounterMetricFamily(f"imflow_service_{name}", f"{name.capitalize()} per exporter and service "
                                         "(every flow, `other` included)", labels=["exporter", "service", "category"])
               for name in ("bytes", "packets", "flows")}
        for key, values in s.services.items():
            for name, v in zip(("bytes", "packets", "flows"), values):
                fam[name].add_metric(list(key), v)
        yield from fam.values()
        names = s.host_names
        c = CounterMetricFamily("imflow_host_bytes", "Bytes per exporter, internal host and service (bounded; "
                                "the rest under host=\"other\")", labels=["exporter", "host", "host_name", "service",
                                                                          "category"])
        for (exporter, host, service, category), v in s.hosts.items():
            c.add_metric([exporter, host, names.get(host, ""), service, category], v)
        yield c
        g = GaugeMetricFamily("imflow_service_active_hosts", "Distinct internal hosts in the last bin, per exporter",
                              labels=["exporter", "service", "category"])
        for key, v in s.active_hosts.items():
            g.add_metric(list(key), v)
        yield g
        c = CounterMetricFamily("imflow_policy_violation_bytes", "Bytes of blocked services from internal "
                                "hosts", labels=["exporter", "service", "category"])
        for key, v in s.violations.items():
            c.add_metric(list(key), v)
        yield c
        c = CounterMetricFamily("imflow_policy_violation_host_bytes", "Violation bytes per internal host "
                                "(bounded like imflow_host_bytes)",
                                labels=["exporter", "host", "host_name", "service", "category"])
        for (exporter, host, service, category), v in s.violation_hosts.items():
            c.add_metric([exporter, host, names.get(host, ""), service, category], v)
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
                ("imflow_clamped_flows", "Flows whose end time was replaced by the receive time (exporter clock "
                 "too far off)", ["exporter"], s.clamped),
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
                (GaugeMetricFamily, "imflow_store_buffered_rows", "Rows the store keeps in memory for a later "
                 "write (the ClickHouse backend's queue)", s.store_buffered_rows),
                (CounterMetricFamily, "imflow_store_dropped_rows", "Rows the store's write queue dropped when "
                 "full, the oldest first (the ClickHouse backend)", s.store_dropped_rows),
                (CounterMetricFamily, "imflow_store_tables_recreated", "Tables (or the database) the store "
                 "found missing and created again (the ClickHouse backend)", s.store_recreated),
                (GaugeMetricFamily, "imflow_exporters", "Distinct exporter addresses heard from", s.exporters),
                (GaugeMetricFamily, "imflow_exporter_sessions", "Exporter sessions (address, port, observation "
                 "domain) with state", s.sessions),
                (GaugeMetricFamily, "imflow_workers", "Receiving processes alive (imflow run --workers)", s.workers),
                (GaugeMetricFamily, "imflow_template_waiting_datagrams", "New exporter sessions' template "
                 "datagrams waiting for a later batch's budget", s.backlog[0]),
                (GaugeMetricFamily, "imflow_template_held_sets", "Data sets held until their template arrives",
                 s.backlog[1]),
                (CounterMetricFamily, "imflow_worker_restarts", "Worker processes that died and were restarted",
                 s.worker_restarts)):
            f = family(name, doc)
            f.add_metric([], value)
            yield f
        yield from _snmp_families(s)
        for name, (kind, doc, labels, values) in s.figures.items():
            f = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, labels=labels)
            for key, v in values.items():
                f.add_metric([str(x) for x in key], v)
            yield f
        yield self.metrics.flush_duration.family()


def _snmp_families(s: Snapshot):
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

    up = GaugeMetricFamily("imflow_snmp_up", "1 if the exporter's SNMP agent answered the last poll",
                           labels=["exporter"])
    duration = GaugeMetricFamily("imflow_snmp_poll_duration_seconds", "Duration of the last SNMP poll",
                                 labels=["exporter"])
    errors = CounterMetricFamily("imflow_snmp_errors", "Failed SNMP polls by reason", labels=["exporter", "reason"])
    info = InfoMetricFamily("imflow_interface", "Interfaces of each exporter (SNMP, or sFlow counter samples)",
                            labels=["exporter", "if_index", "if_name", "if_alias"])
    speed = GaugeMetricFamily("imflow_interface_speed_bytes", "Interface speed in bytes per second "
                              "(ifHighSpeed/ifSpeed divided by 8)", labels=["exporter", "if_name"])
    octets = CounterMetricFamily("imflow_interface_bytes", "Interface bytes (ifHC/ifIn/ifOutOctets, or sFlow "
                                 "if_counters) as the agent counts them", labels=["exporter", "if_name", "direction"])
    for a in s.snmp:
        if not getattr(a, "sflow", False):  # interfaces from sFlow counter samples: no SNMP poll
            up.add_metric([a.exporter], 1 if a.up else 0)
            duration.add_metric([a.exporter], a.last_duration)
            for reason in ("timeout", "auth", "decryption", "other"):
                errors.add_metric([a.exporter, reason], a.errors.get(reason, 0))
        for iface in a.interfaces.values():
            info.add_metric([a.exporter, str(iface.index), iface.name, iface.alias], {})
            speed.add_metric([a.exporter, iface.name], iface.speed_bits / 8)
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


FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class FlushDurations:
    """`imflow_flush_duration_seconds`, a histogram kept as plain counts (what prometheus_client's
    `Histogram` shows, less its `_created` sample) so that observing a flush needs no
    prometheus_client. Observed on the event loop; a scrape may read counts one observation
    apart from the sum, as with any unlocked read of a histogram."""

    def __init__(self, buckets=FLUSH_BUCKETS):
        self.bounds = tuple(float(b) for b in buckets) + (float("inf"),)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[i] += 1
                break
        self.sum += seconds

    def family(self):
        from prometheus_client.core import HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        cumulative, total = [], 0
        for bound, n in zip(self.bounds, self.counts):
            total += n
            cumulative.append((floatToGoString(bound), total))
        return HistogramMetricFamily("imflow_flush_duration_seconds", "Time to write one flush to the store",
                                     buckets=cumulative, sum_value=self.sum)


class Metrics:
    """The registry, the host series and the HTTP endpoint. `health()` -> (ok, details) answers
    `/healthz`; without one, `/healthz` answers 200 once the endpoint is up. The registry is
    built (and prometheus_client imported) at its first use: `serve`, a scrape, a test."""

    def __init__(self, max_host_series: int = 5000, registry: CollectorRegistry | None = None, health=None):
        self.snapshot = Snapshot()
        self.hosts = HostSeries(max_host_series)
        self.violation_hosts = HostSeries(max_host_series)
        self.health = health or (lambda: (True, {}))
        self.flush_duration = FlushDurations()
        self._registry = None
        self._server = None
        if registry is not None:
            self._register(registry)

    @property
    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._register(CollectorRegistry())
        return self._registry

    def _register(self, registry: CollectorRegistry) -> None:
        from prometheus_client.process_collector import ProcessCollector

        registry.register(_Collector(self))
        ProcessCollector(registry=registry)
        self._registry = registry

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Start the endpoint on a thread; an address in use is an OSError naming the address."""
        server_class, handler = _http()
        family = server_class.address_family_of(host)
        _ = self.registry  # built here, before the first scrape's thread wants it
        try:
            server = server_class((host, port), handler, family, self)
        except OSError as exc:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise OSError(exc.errno, f"metrics endpoint {where}: {exc.strerror or exc}") from None
        threading.Thread(target=server.serve_forever, name="imflow-metrics", daemon=True).start()
        self._server = server
        return server.server_address[:2]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def swap(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot  # one reference assignment: atomic for the scrape thread


INDEX = (b"imflow\n\n/metrics  Prometheus metrics\n"
         b"/healthz  200 when listening and the store is writable, else 503\n")


@cache
def _http():
    """(server class, handler class) of the endpoint, made at the first `serve`: only a daemon
    with an endpoint imports `http.server` and prometheus_client's exposition."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlsplit

    from prometheus_client.exposition import choose_encoder

    class _Server(ThreadingHTTPServer):
        daemon_threads = True

        def __init__(self, address, handler, family, metrics: Metrics):
            self.address_family = family
            self.metrics = metrics
            super().__init__(address, handler)

        @staticmethod
        def address_family_of(host: str) -> socket.AddressFamily:
            return socket.AF_INET6 if ":" in host else socket.AF_INET

    class _Handler(BaseHTTPRequestHandler):
        server: _Server
        server_version = "imflow"

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/metrics":
                encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, ctype, encoder(self.server.metrics.registry))
            elif path == "/healthz":
                ok, details = self.server.metrics.health()
                body = json.dumps({"status": "ok" if ok else "unavailable", **details}, sort_keys=True) + "\n"
                self._send(200 if ok else 503, "application/json", body.encode())
            elif path == "/":
                self._send(200, "text/plain; charset=utf-8", INDEX)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

        def do_HEAD(self) -> None:
            self.do_GET()

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format, *args) -> None:  # scrapes are not log lines
            pass

    return _Server, _Handler
