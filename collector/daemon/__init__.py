"""The daemon: wiring from the configuration (`wiring`), the pipeline of one process
(`pipeline`), what it says about itself (`telemetry`), its lifecycle (`app`) and `--workers N`
(`workers`). `run` is the one entry point."""

from __future__ import annotations

from collector import config as C


def run(cfg: C.Config, workers: int = 1) -> int:
    """Run the daemon until SIGTERM/SIGINT; the exit status. `workers` (and with it
    multiprocessing) is imported only for --workers N: one process has no use for it. `app` is
    imported here, not with the package, so that `tuning` can be used before asyncio is."""
    from collector.daemon.app import App, run_loop

    if workers > 1:
        from collector.daemon.workers import supervisor

        return run_loop(supervisor(cfg, workers).run())
    return run_loop(App(cfg).run())
