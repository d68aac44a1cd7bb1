"""How the classifier can recognise each service (collector/classify/classifier.py, docs/design.md
§4), for people: by its own ports, by its prefixes, by the exporter's application id.

Shared ports (443, 5222 …) never classify alone, so a service known only by shared ports and no
prefixes (WhatsApp, Signal) is invisible unless the router sends application ids (NBAR, AVC,
IPFIX IE 95) whose names the catalogue knows (`app_names`) or `classify.app_ids` maps.
"""

from __future__ import annotations

from collector.classify.catalogue import Service

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
