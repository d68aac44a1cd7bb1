"""Tools around the collector, none on its data path: `demo` (`imflow demo`), `simulate` (a
NetFlow v9 exporter for the demo, tests and benchmarks), `capture` (UDP datagrams out of a pcap)
and `decodeview` (`imflow decode`)."""
