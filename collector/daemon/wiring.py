"""From the configuration to components: the catalogue, application ids, the policy, SNMP
targets and the decoder's limits. Each raises `ConfigError` naming the key, so `check-config`
and a start refuse the same things with the same words."""

from __future__ import annotations

from collector import config as C
from collector import snmp, web
from collector.classify.catalogue import Catalogue, CatalogueError, load_catalogue
from collector.netflow.session import Limits
from collector.policy import POLICY_KEYS, Policy, PolicyError, parse_policy


def build_catalogue(cfg: C.Config) -> Catalogue:
    try:
        return load_catalogue(cfg.get("classify.catalogue") or None,
                              extra={"service": cfg.get("classify.service")})
    except CatalogueError as exc:
        raise C.ConfigError(f"classify.{exc.key}" if not str(exc.key).startswith("/") else exc.key,
                            exc.message) from None
    except OSError as exc:
        raise C.ConfigError("classify.catalogue", f"{exc.filename}: {exc.strerror}") from None


def app_id_table(cfg: C.Config, catalogue: Catalogue) -> dict[int, str]:
    out = {}
    for text, service in cfg.get("classify.app_ids").items():
        try:
            engine, selector = (int(x) for x in text.split(":"))
        except ValueError:
            raise C.ConfigError(f"classify.app_ids.{text}", "expected ENGINE:SELECTOR, like 13:453") from None
        if service not in catalogue.by_id:
            raise C.ConfigError(f"classify.app_ids.{text}", f"unknown service {service!r}")
        out[(engine << 56) | selector] = service
    return out


def build_policy(cfg: C.Config, catalogue: Catalogue) -> Policy:
    section = {k: v for k, v in cfg["policy"].items() if k in POLICY_KEYS}
    try:
        return parse_policy(section, catalogue)
    except PolicyError as exc:
        raise C.ConfigError(exc.key, exc.message) from None


def build_asn(cfg: C.Config):
    """The ASN prefix snapshot: `classify.asn_prefixes`, else the shipped one."""
    from collector.classify.asn import load_snapshot

    try:
        return load_snapshot(cfg.get("classify.asn_prefixes") or None)
    except CatalogueError as exc:
        raise C.ConfigError("classify.asn_prefixes", exc.message) from None


def build_install(cfg: C.Config):
    """What this configuration gives the classifier beyond the catalogue (dnstap, the ASN
    snapshot, classify.app_ids): `imflow services` and the report say what it can see."""
    from collector.classify.detection import Install

    return Install(cfg.get("dns.dnstap"), build_asn(cfg), frozenset(cfg.get("classify.app_ids").values()))


def build_learned(cfg: C.Config):
    """The table of addresses learned from DNS, when `dns.dnstap` is on (else None)."""
    if not cfg.get("dns.dnstap"):
        return None
    from collector.dns.table import LearnedAddresses

    return LearnedAddresses(max_entries=cfg.get("dns.max_addresses"), grace=cfg.get("dns.grace"),
                            max_ttl=cfg.get("dns.max_ttl"), max_clients=cfg.get("dns.max_clients"))


def build_host_names(cfg: C.Config):
    """Names of internal hosts for reports and pages (`policy.hosts_file`, reverse DNS). A
    missing or bad hosts file is a ConfigError naming the key (its names reach reports and
    terminals: control characters are refused when it is read)."""
    from collector.policy.hostnames import HostMapError, HostNames

    try:
        return HostNames(cfg.get("policy.hosts_file") or None, reverse_dns=cfg.get("policy.reverse_dns"))
    except HostMapError as exc:
        raise C.ConfigError("policy.hosts_file", str(exc)) from None


def build_targets(cfg: C.Config) -> list[snmp.Target]:
    return snmp.targets_of(cfg["snmp"])


def build_web(cfg: C.Config, poller=None, live=None):
    """The web page for `[web] listen` (collector.web), with link speeds from the SNMP poller;
    `live`: () -> the catalogue and policy in force (after a reload too)."""
    return web.WebServer(web.site_of(cfg, speeds=web.speeds_of(poller), live=live), cfg.get("web.listen"),
                         web.auth_of(cfg))


def check(cfg: C.Config) -> None:
    """Everything a start would refuse, without starting: catalogue, policy, SNMP targets."""
    catalogue = build_catalogue(cfg)
    app_id_table(cfg, catalogue)
    build_policy(cfg, catalogue)
    build_asn(cfg)
    build_targets(cfg)
    web.auth_of(cfg)  # both halves of [web] basic authentication, or neither


def build_store(cfg: C.Config, clock):
    """The writer `[store] backend` names: the SQLite `Store` (built by App) or ClickHouse's."""
    from collector.store.clickhouse import ClickHouseStore, settings

    ch = cfg.get("store.clickhouse")
    return ClickHouseStore(**settings(cfg), clock=clock, timeout=ch["timeout"],
                           max_buffer_rows=ch["max_buffer_rows"],
                           **{k: v for k, v in (("audit_max_age", cfg.values.get("audit", {}).get("max_age")),
                                                ("audit_max_rows", cfg.values.get("audit", {}).get("max_rows")))
                              if v is not None})


def limits_of(cfg: C.Config) -> Limits:
    """The decoder's ceilings: every `[limits]` key that `Limits` has (max_open_bins is the
    aggregator's)."""
    fields = Limits.__dataclass_fields__
    return Limits(**{k: v for k, v in cfg["limits"].items() if k in fields})
