"""The daemon: wiring from the configuration (`wiring`), the single-process pipeline and its
lifecycle (`app`), and `--workers N` (`workers`). `run` is the one entry point."""

from __future__ import annotations

from collector import config as C
from collector.daemon.app import App, run_loop
from collector.daemon.workers import Supervisor


def run(cfg: C.Config, workers: int = 1) -> int:
    """Run the daemon until SIGTERM/SIGINT; the exit status."""
    return run_loop(Supervisor(cfg, workers).run() if workers > 1 else App(cfg).run())
