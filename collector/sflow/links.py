"""Interface state for link share from SNMP and from sFlow counter samples (docs/sflow.md).

An sFlow agent sends its interface counters (`if_counters`: ifIndex, ifSpeed, ifInOctets,
ifOutOctets, ifStatus) in counter samples every few seconds, so link share works without
SNMP: `Links` answers what the daemon asked the SNMP poller alone before — the exporters with
interface state, each exporter's interfaces by ifIndex, and the state per exporter — with the
poller's answer first and, for exporters it does not poll, the latest counter samples the
decoder kept. sFlow carries no interface names: such an interface is named by its ifIndex.
The octet counters are the agent's own (64-bit, cumulative), exposed as SNMP's are.
"""

from __future__ import annotations

from collector.snmp.poller import AgentState, Interface


class Links:
    def __init__(self, poller, decoder, snmp_exporters: set[str]):
        self.poller = poller  # collector.snmp.Poller or None
        self.decoder = decoder  # collector.netflow.decoder.Decoder: its sFlow sessions' counters
        self.exporters = set(snmp_exporters)  # live: exporters with interface state (grows)

    def _sflow(self) -> dict[str, dict]:
        """exporter address -> {ifIndex: latest if_counters} over its sFlow sessions."""
        out: dict[str, dict] = {}
        for sess in list(self.decoder.sessions.values()):
            agent = sess.sflow
            if agent is not None and agent.interfaces:
                out.setdefault(sess.exporter, {}).update(agent.interfaces)
        return out

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
            for i, c in counters.items():
                state.interfaces[i] = Interface(i, str(i), "", "", c.speed, bool(c.status & 2),
                                                c.in_octets, c.out_octets, 64)
            states[exporter] = state
        return states


class SflowState(AgentState):
    """An exporter's interfaces as its sFlow counter samples tell them (no SNMP poll: the
    metrics leave out the poll's own series for it)."""

    sflow = True
