"""The entry point of a `--workers N` worker process, which `multiprocessing` starts in a fresh
interpreter ("spawn") by importing this module. It is apart from `workers` so that nothing
imports asyncio before the worker has left OpenSSL out: a worker makes no TLS connection (its
store is a pipe to the supervisor and it serves no metrics), so OpenSSL would only be some 4 MiB
of every worker's memory (`tuning.leave_out_tls`)."""

from __future__ import annotations

from collector import config as C


def worker_main(cfg: C.Config, index: int, conn, level: int, learned_conn=None) -> None:
    from collector.daemon.tuning import leave_out_tls

    leave_out_tls()  # whatever the supervisor's configuration: the worker serves and stores nothing itself
    from collector.daemon.workers import run_worker

    run_worker(cfg, index, conn, level, learned_conn)
