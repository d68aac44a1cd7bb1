"""Test harness shared by the test modules: pcap writers with ground truth, and wrappers
around the real peers (softflowd as exporter, tshark as an independent decoder)."""
