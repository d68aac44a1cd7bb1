"""Headless Chromium for the HTML report tests: screenshots, the DOM after rendering, PDF, the
console log and a net log of every request the page made (Chromium's own background requests
to its update and account services are told apart by their network isolation key)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

BINARY = shutil.which("chromium") or shutil.which("chromium-browser")
# every one of these matters on the test machines: no sandbox (containers), no GPU, no QUIC,
# no first-run or background traffic that could stall the headless run
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
OFFLINE = '--host-resolver-rules=MAP * ~NOTFOUND'


@dataclass
class Run:
    stdout: str
    stderr: str
    netlog: Path | None

    def console(self) -> list[str]:
        """Lines the page wrote to the console (errors show as "Uncaught …" or ERROR:CONSOLE;
        the report has no scripts, so any console line at all is a fault)."""
        return [line for line in self.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]

    def page_requests(self) -> list[str]:
        """URLs the page itself asked for (not file://)."""
        if self.netlog is None:
            return []
        log = json.loads(self.netlog.read_text())
        start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        urls = []
        for event in log["events"]:
            params = event.get("params") or {}
            if (event["type"] == start and "file://" in str(params.get("network_isolation_key", ""))
                    and not str(params.get("url", "")).startswith("file:")):
                urls.append(params["url"])
        return urls


def chromium(workdir: Path, page: Path, *args: str, netlog: bool = False, timeout: float = 90) -> Run:
    if BINARY is None:
        pytest.skip("chromium is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    profile = workdir / f"profile-{len(list(workdir.glob('profile-*')))}"
    log_path = workdir / f"net-{profile.name}.json" if netlog else None
    cmd = [BINARY, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    if log_path is not None:
        cmd.append(f"--log-net-log={log_path}")
    cmd.append(page.resolve().as_uri())
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: one kill stops every child
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {timeout} s: {' '.join(cmd)}")
    return Run(out, err, log_path)
