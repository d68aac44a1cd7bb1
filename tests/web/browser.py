"""Headless Chromium driven over the DevTools protocol through a pipe (--remote-debugging-pipe:
no port is opened), for the web page tests: load a URL at a window width, read the DOM and
evaluate expressions (the page itself has no script; these run from the test), click links,
submit forms, take screenshots. Chromium runs in its own process group and is stopped by pid."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.report.chromium import BINARY, FLAGS


class Browser:
    def __init__(self, workdir: Path):
        if BINARY is None:
            pytest.skip("chromium is not installed")
        workdir.mkdir(parents=True, exist_ok=True)
        to_child, self._out = os.pipe()  # we write commands: Chromium reads fd 3
        self._in, from_child = os.pipe()  # Chromium writes fd 4: we read answers

        def fds():
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)
        self._log = open(workdir / "chromium.log", "w")  # noqa: SIM115 (open while Chromium runs)
        # the DevTools pipe is fds 3 and 4 by Chromium's convention: only a dup2 in the child puts
        # them there (it touches no lock, so forking from a threaded test process is safe)
        self.proc = subprocess.Popen(
            [BINARY, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={workdir / 'profile'}",
             "--hide-scrollbars", "--force-device-scale-factor=1", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self._log, preexec_fn=fds,  # noqa: PLW1509
            start_new_session=True, close_fds=False)
        os.close(to_child)
        os.close(from_child)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)

    # --- the protocol -----------------------------------------------------------------------

    def call(self, method: str, session: bool = False, timeout: float = 60, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _next(self, deadline: float) -> dict:
        import select
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def wait_event(self, name: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for i, e in enumerate(self.events):
            if e.get("method") == name:
                return self.events.pop(i)
        while True:
            e = self._next(deadline)
            if e.get("method") == name:
                return e
            self.events.append(e)

    # --- what the tests do ------------------------------------------------------------------

    def size(self, width: int, height: int = 900, mobile: bool = False) -> None:
        self.width = width
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=mobile)

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired")

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def dom(self) -> str:
        return self.eval("document.documentElement.outerHTML")

    def url(self) -> str:
        return self.eval("location.href")

    def follow(self, selector: str) -> None:
        """Click the first element `selector` finds and wait for the next page."""
        self.events.clear()
        found = self.eval(f"(() => {{ const a = document.querySelector({json.dumps(selector)}); "
                          "if (!a) return false; a.click(); return true; })()")
        assert found, f"nothing matches {selector}"
        self.wait_event("Page.loadEventFired")

    def overflow(self) -> int:
        """How many CSS pixels the page is wider than the window (0: no horizontal scrolling).
        Against the width set, not innerWidth: a phone's layout viewport grows with the page."""
        return self.eval("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)") - self.width

    def screenshot(self, path: Path, full: bool = True) -> Path:
        params = {"format": "png", "captureBeyondViewport": full}
        if full:
            width, height = self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": min(height, 6000), "scale": 1}
        data = self.call("Page.captureScreenshot", session=True, **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self._log.close()
        os.close(self._in)
        os.close(self._out)
