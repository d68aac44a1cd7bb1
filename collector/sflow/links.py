"""Interface state for link share from SNMP and from sFlow counter samples (docs/sflow.md).

An sFlow agent sends its interface counters (`if_counters`: ifIndex, ifSpeed, ifInOctets,
ifOutOctets, ifStatus) in counter samples every few seconds, so link share works without
SNMP: `Links` answers what the daemon asked the SNMP poller alone before — the exporters with
interface state, each exporter's interfaces by ifIndex, and the state per exporter — with the
poller's answer first and, for exporters it does not poll, the latest counter samples the
decoder kept (with `--workers`, what the workers sent in their last deltas). sFlow carries no
interface names: such an interface is named by its ifIndex. The octet counters are the
agent's own (64-bit, cumulative), exposed as SNMP's are.
"""

from __future__ import annotations

from collector.snmp.poller import AgentState, Interface


def sflow_interfaces(decoder) -> dict[str, dict[int, tuple]]:
    """exporter address -> {ifIndex: (speed, status, in octets, out octets)}: the latest
    if_counters of the decoder's sFlow sessions (plain data: it crosses the workers' pipes)."""
    out: dict[str, dict[int, tuple]] = {}
    for sess in list(decoder.sessions.values()):
        agent = sess.sflow
        if agent is not None and agent.interfaces:
            ifs = out.setdefault(sess.exporter, {})
            for i, c in agent.interfaces.items():
                ifs[i] = (c.speed, c.status, c.in_octets, c.out_octets)
    return out


class Links:
    def __init__(self, poller, decoder, snmp_exporters: set[str]):
        self.poller = poller  # collector.snmp.Poller or None
        self.decoder = decoder  # collector.netflow.decoder.Decoder: its sFlow sessions' counters
        self.exporters = set(snmp_exporters)  # live: exporters with interface state (grows)
        # where the counters come from: this process's decoder, or (a --workers supervisor)
        # the workers' latest deltas
        self.source = lambda: sflow_interfaces(self.decoder)

    def _sflow(self) -> dict[str, dict[int, tuple]]:
        return self.source()

    def refresh(self) -> None:
        """Take in exporters whose counter samples arrived since (at each flush)."""
        self.exporters.update(self._sflow())

    def interface_names(self, exporter: str) -> dict[int, str]:
        names = self.poller.interface_names(exporter) if self.poller is not None else {}
        if names:
            return names
        return {i: str(i) for i in self._sflow().get(exporter, {})}

    def state(self) -> dict[str, AgentState]:
        states = dict(self.poller.state()) if self.poller is not None else {}
        for exporter, counters in self._sflow().items():
            if exporter in states:
                continue
            state = SflowState(exporter, up=True)
            for i, (speed, status, in_octets, out_octets) in counters.items():
                state.interfaces[i] = Interface(i, str(i), "", "", speed, bool(status & 2), in_octets, out_octets, 64)
            states[exporter] = state
        return states


class SflowState(AgentState):
    """An exporter's interfaces as its sFlow counter samples tell them (no SNMP poll: the
    metrics leave out the poll's own series for it)."""

    sflow = True
