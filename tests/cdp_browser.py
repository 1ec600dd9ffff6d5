"""Headless chromium driven over the DevTools protocol (raw CDP over ``websocket-client``):
start it, run JavaScript, take screenshots, collect console errors. Used by test_viewer.py.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

__all__ = ["Browser", "chromium"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("the viewer's browser test needs Debian's chromium: apt-get install -y "
                "chromium (.ci/run installs it)")


class Browser:
    """A headless chromium and one page, spoken to over the DevTools protocol."""

    def __init__(self, width: int = 1280, height: int = 860) -> None:
        import websocket

        self.profile = tempfile.mkdtemp(prefix="emoca-chromium-")
        port = _free_port()
        # software WebGL (SwiftShader): the same pixels on any machine, no GPU needed
        self.proc = subprocess.Popen(
            [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu-sandbox",
             "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--mute-audio",
             "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
             f"--remote-debugging-port={port}", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "--autoplay-policy=no-user-gesture-required",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 30
        targets = None
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as r:
                    targets = [t for t in json.load(r) if t["type"] == "page"]
                if targets:
                    break
            except OSError:
                time.sleep(0.2)
        if not targets:
            self.close()
            pytest.fail("chromium started but its DevTools endpoint never answered")
        self.ws = websocket.create_connection(targets[0]["webSocketDebuggerUrl"], timeout=60,
                                              suppress_origin=True)
        self._id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self.events.append(msg)

    def eval(self, expr: str, timeout: float = 60):
        res = self.call("Runtime.evaluate", expression=expr, awaitPromise=True,
                        returnByValue=True, timeout=int(timeout * 1000))
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expr: str, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.eval(expr)
            if value:
                return value
            time.sleep(0.1)
        try:  # what the page says about itself, for the failure message
            state = self.eval("JSON.stringify(window.emocaViewer && window.emocaViewer.state)")
        except Exception as err:  # noqa: BLE001 - a dead page is also an answer
            state = f"unreadable ({err})"
        raise AssertionError(f"page never reached {expr!r}; errors: {self.errors()}; "
                             f"state: {str(state)[:600]}")

    def screenshot(self) -> np.ndarray:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                out.append(str(p["exceptionDetails"].get("exception", {}).get("description")))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"{p['entry'].get('url', '')}: {p['entry']['text']}")
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
