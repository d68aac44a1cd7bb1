"""What the deploy tests know about imflow's metrics and PromQL.

METRICS is the fixed list of names imflow exports (dashboards, alerts and users depend on
them). `metric_names` pulls the metric names out of a PromQL expression without a full
parser: strings, label matchers, ranges and label lists are removed, then every identifier
that is neither a function call nor a keyword is a metric name.
"""

from __future__ import annotations

import re

# name -> labels
METRICS: dict[str, tuple[str, ...]] = {
    "imflow_service_bytes_total": ("exporter", "service", "category"),
    "imflow_service_packets_total": ("exporter", "service", "category"),
    "imflow_service_flows_total": ("exporter", "service", "category"),
    "imflow_host_bytes_total": ("exporter", "host", "host_name", "service", "category"),
    "imflow_service_active_hosts": ("exporter", "service", "category"),
    "imflow_datagrams_total": ("exporter", "version"),
    "imflow_flows_total": ("exporter", "version"),
    "imflow_decode_errors_total": ("exporter", "reason"),
    "imflow_template_held_total": ("exporter",),
    "imflow_template_expired_total": ("exporter",),
    # sequence_quirk: added by Prometheus' metric_relabel_configs (deploy/prometheus/prometheus.yml)
    "imflow_sequence_lost_flows_total": ("exporter", "sequence_quirk"),
    "imflow_clamped_flows_total": ("exporter",),
    "imflow_socket_drops_total": ("listener",),
    "imflow_flush_duration_seconds_bucket": ("le",),
    "imflow_flush_duration_seconds_sum": (),
    "imflow_flush_duration_seconds_count": (),
    "imflow_store_errors_total": (),
    "imflow_exporters": (),
    "imflow_exporter_sessions": (),
    "imflow_build_info": ("version",),
    "process_cpu_seconds_total": (),
    "process_resident_memory_bytes": (),
    # policy
    "imflow_policy_violation_bytes_total": ("exporter", "service", "category"),
    "imflow_policy_violation_host_bytes_total": ("exporter", "host", "host_name", "service", "category"),
    # SNMP
    "imflow_snmp_up": ("exporter",),
    "imflow_snmp_errors_total": ("exporter", "reason"),
    "imflow_interface_speed_bytes": ("exporter", "if_name"),
    "imflow_interface_service_bytes_total": ("exporter", "if_name", "direction", "category"),
    "imflow_interface_bytes_total": ("exporter", "if_name", "direction"),
}

# Labels Prometheus adds to every scraped series.
TARGET_LABELS = ("job", "instance")

CATEGORIES = ("im", "p2p", "voip", "collab", "other")

_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "atan2", "inf", "nan",
    # aggregation operators (may be followed by `by (...)` instead of a parenthesis)
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
# a metric selector: the name, then its matchers if any
SELECTOR = re.compile(r"(?<![\w.:$\"])((?:imflow|process)_\w+|up)\b(\{[^{}]*\})?(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        name, call = m.group(1), m.group(2)
        if call or name in _KEYWORDS:
            continue
        names.add(name)
    return names


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, its matchers without braces) of each metric selector of an expression."""
    text = _STRING.sub(lambda m: "_" * len(m.group()), expr)  # keep offsets, drop names in strings
    return [(m.group(1), expr[m.start(2) + 1:m.end(2) - 1] if m.group(2) else "")
            for m in SELECTOR.finditer(text)]


def grafana_to_promql(expr: str, values: dict[str, str] | None = None, range_: str = "1h") -> str:
    """Replace Grafana's variables so that Prometheus can run the expression.

    `values` gives dashboard variables their value; the others become "x".
    """
    values = values or {}
    out = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", range_)
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)",
                  lambda m: values.get(m.group(1) or m.group(2), "x"), out)


def grafana_variables(expr: str) -> set[str]:
    """Dashboard variables an expression uses (Grafana's own $__ variables left out)."""
    found = set()
    for m in re.finditer(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", expr):
        name = m.group(1) or m.group(2)
        if not name.startswith("__"):
            found.add(name)
    return found


_MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")


def label_names(expr: str) -> set[str]:
    """Label names an expression matches on or groups by."""
    text = _STRING.sub('""', expr)
    names = set()
    for block in _MATCHERS.findall(text):
        names.update(_MATCHER_LABEL.findall(block))
    for m in _LIST.finditer(text):
        names.update(x.strip() for x in m.group(1).split(",") if x.strip())
    return names
