"""The daemon: wiring from the configuration (`wiring`), the pipeline of one process
(`pipeline`), what it says about itself (`telemetry`), its lifecycle (`app`) and `--workers N`
(`workers`). `run` is the one entry point."""

from __future__ import annotations

from collector import config as C
from collector.daemon.app import App, run_loop
from collector.daemon.workers import supervisor


def run(cfg: C.Config, workers: int = 1) -> int:
    """Run the daemon until SIGTERM/SIGINT; the exit status."""
    return run_loop((supervisor(cfg, workers) if workers > 1 else App(cfg)).run())
