"""How the classifier can recognise each service (collector/classify/classifier.py, docs/design.md
§4), for people: by its own ports, by its prefixes, by the exporter's application id.

Shared ports (443, 5222 …) never classify alone, so a service known only by shared ports and no
prefixes (WhatsApp, Signal) is invisible unless the router sends application ids (NBAR, AVC,
IPFIX IE 95) whose names the catalogue knows (`app_names`) or `classify.app_ids` maps.

`methods` and friends describe the catalogue alone (ports, prefixes, application id);
`install_methods` and `cannot_see` what this configuration adds or lacks: addresses learned from
DNS (`dns.dnstap`), networks by ASN (the snapshot in use), application ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.classify.asn import AsnSnapshot
from collector.classify.catalogue import Service
from collector.classify.classifier import WEB_PORTS

PORTS, PREFIXES, APP_ID = "ports", "prefixes", "application id"


def methods(service: Service, app_id_services=frozenset()) -> list[str]:
    """What recognises `service`, in the classifier's terms; `app_id_services`: the service ids
    that the config's `classify.app_ids` maps application ids to."""
    out = []
    if any(p not in service.shared_ports for p in service.ports):
        out.append(PORTS)
    if service.prefixes:
        out.append(PREFIXES)
    if service.app_names or service.id in app_id_services:
        out.append(APP_ID)
    return out


def needs_app_ids(service: Service, app_id_services=frozenset()) -> bool:
    """True when neither ports nor prefixes can recognise it: only application ids can."""
    return not {PORTS, PREFIXES} & set(methods(service, app_id_services))


def describe(service: Service, app_id_services=frozenset()) -> str:
    """"ports, prefixes", "application id only", or why nothing can see it."""
    found = methods(service, app_id_services)
    if found == [APP_ID]:
        return "application id only"
    if not found:
        return "nothing: shared ports only (map its application id in classify.app_ids)"
    return ", ".join(found)


# --- what this install can see (`imflow services`: methods, cannot_see) ------------------------


@dataclass(frozen=True)
class Install:
    """What the configuration gives the classifier beyond the catalogue."""

    dnstap: str = ""  # dns.dnstap: where answers come from ("" = off)
    asn: AsnSnapshot | None = None  # the ASN prefix snapshot in use
    app_id_services: frozenset = frozenset()  # services classify.app_ids maps ids to


def exporter_only(services, install: Install) -> list[Service]:
    """The services nothing of this install recognises (ports, prefixes, ASNs, addresses learned
    from DNS): only the exporter's application ids or server names can show them."""
    return [s for s in services if not set(install_methods(s, install)) - {"app-id", "name"}]


def _asn_ports(service: Service) -> list[str]:
    """The ports an ASN match can count with: every listed port but the web ports."""
    return [str(r) for r in (*service.port_ranges, *service.shared_ranges)
            if not (r.lo == r.hi and r.lo in WEB_PORTS)]


def install_methods(service: Service, install: Install) -> list[str]:
    """The classification methods (classifier.METHODS names, as `imflow top --by method` shows
    them) that can recognise `service` with this configuration."""
    out = []
    if any(p not in service.shared_ports for p in service.ports):
        out.append("port")
    if service.prefixes:
        out.append("prefix")
    if install.asn is not None and any(install.asn.networks(a) for a in service.asns) and _asn_ports(service):
        out.append("asn")
    if service.domains and install.dnstap:
        out.append("dns")
    if service.domains:  # when an exporter sends server names (TLS SNI, HTTP Host)
        out.append("name")
    if service.app_names or service.id in install.app_id_services:
        out.append("app-id")
    return out


def cannot_see(service: Service, install: Install) -> list[str]:
    """What would recognise `service` but does not here, and why."""
    out = []
    if service.domains and not install.dnstap:
        out.append("dns: dns.dnstap is off (no resolver streams its answers)")
    if service.asns:
        missing = [a for a in service.asns if install.asn is None or not install.asn.networks(a)]
        if missing:
            out.append("asn: no prefixes for " + ", ".join(f"AS{a}" for a in missing) + " in the ASN snapshot"
                       + (f" of {install.asn.date}" if install.asn is not None else ""))
        elif not _asn_ports(service):
            out.append("asn: its network serves the web too and it lists only web ports (80, 443)")
    if not (service.app_names or service.id in install.app_id_services):
        out.append("app-id: no application name in the catalogue and none in classify.app_ids")
    return out
