"""SNMP: names, speeds and octet counters of the flow exporters' interfaces. `config` reads the
`[snmp]` section into targets; `poller` polls them without ever blocking the flow path."""

from collector.snmp.config import AUTH_PROTOCOLS, PRIV_PROTOCOLS, Secret, Target, parse_targets, targets_of
from collector.snmp.poller import ERROR_REASONS, AgentState, Interface, PollError, Poller

__all__ = ["AUTH_PROTOCOLS", "ERROR_REASONS", "PRIV_PROTOCOLS", "AgentState", "Interface", "PollError", "Poller",
           "Secret", "Target", "parse_targets", "targets_of"]
