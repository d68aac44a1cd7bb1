"""sFlow v5 (sFlow.org, July 2004) and the sampled packet headers it shares with IPFIX packet
sections (docs/sflow.md): `datagram` walks a datagram, `headers` parses sampled headers as
columns, `decode` turns flow samples into rows of the decoder's `FlowBatch`."""
