"""A headless Chromium driven through the DevTools protocol (CDP) over a websocket: opens a page,
records its console errors, uncaught exceptions and network requests, evaluates script, clicks.

Used by the report's browser test (tests/test_report.py) and the ``report`` benchmark
(bench/py_scenarios.py). Needs ``/usr/bin/chromium`` (Debian's ``chromium``; ``.ci/run`` installs
it) and the ``websocket-client`` package (the ``test`` extra). The browser runs with a fresh
profile, no sandbox (root in CI), no GPU, no background networking; it is stopped by its pid.

    with Chromium() as browser:
        page = browser.open(path)          # waits for the load event
        page.evaluate("document.title")
        page.click("th")                    # a real mouse click at the element's centre
        page.problems()                     # console errors, exceptions, requests other than the page
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("BATCHTOOLS_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--remote-allow-origins=*"]


def problem() -> str | None:
    """Why the browser cannot run here (None: it can)."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import websocket  # noqa: F401
    except ImportError:
        return "the websocket-client package is missing (pip install websocket-client)"
    return None


class Page:
    """One tab, attached through its own websocket."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.events: list[dict] = []
        self._next = 0
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable")

    def _read(self) -> None:
        while True:
            try:
                msg = json.loads(self.ws.recv())
            except Exception:
                with self._cond:
                    self._replies[-1] = {"error": "connection closed"}
                    self._cond.notify_all()
                return
            with self._cond:
                if "id" in msg:
                    self._replies[msg["id"]] = msg
                else:
                    self.events.append(msg)
                self._cond.notify_all()

    def send(self, method: str, timeout: float = 60.0, **params) -> dict:
        with self._cond:
            self._next += 1
            key = self._next
        self.ws.send(json.dumps({"id": key, "method": method, "params": params}))
        deadline = time.time() + timeout
        with self._cond:
            while key not in self._replies:
                if -1 in self._replies:
                    raise RuntimeError(f"{method}: the browser closed the connection")
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"{method}: no answer from the browser in {timeout} s")
                self._cond.wait(left)
            reply = self._replies.pop(key)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, timeout: float = 60.0, since: int = 0) -> dict:
        """The first event ``method`` at index ``since`` or later, waiting for it."""
        deadline = time.time() + timeout
        with self._cond:
            while True:
                for ev in self.events[since:]:
                    if ev.get("method") == method:
                        return ev
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"no {method} event in {timeout} s")
                self._cond.wait(left)

    def navigate(self, url: str, timeout: float = 60.0) -> None:
        """Go to ``url`` and wait for its load event."""
        with self._cond:
            since = len(self.events)
        self.send("Page.bringToFront")  # a tab in the background is not painted
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", timeout, since)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (JSON-able), raising on an exception."""
        out = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression!r} raised: {out['exceptionDetails']}")
        return out["result"].get("value")

    def first_paint(self, timeout: float = 30.0) -> float:
        """Milliseconds from the start of the navigation to the first contentful paint."""
        return self.evaluate(
            "new Promise((resolve, reject) => { "
            "new PerformanceObserver((list, obs) => { const e = list.getEntriesByName('first-contentful-paint'); "
            "if (e.length) { obs.disconnect(); resolve(e[0].startTime); } }).observe({type: 'paint', buffered: true}); "
            f"setTimeout(() => reject(new Error('no first contentful paint in {timeout} s')), {timeout * 1000}); }})")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the first element ``selector``."""
        box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                            "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                            "return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        x, y = box
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def requests(self) -> list[str]:
        """URLs the page asked for (the document itself included)."""
        return [ev["params"]["request"]["url"] for ev in self.events if ev.get("method") == "Network.requestWillBeSent"]

    def problems(self, own_url: str | None = None) -> list[str]:
        """Console errors, uncaught exceptions, failed loads, and requests other than ``own_url``
        and inline ``data:`` URLs: what a self-contained page must not have."""
        out = []
        for ev in list(self.events):
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('exception', {}).get('description')}"
                           f" {p['exceptionDetails'].get('text')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p['args']]}")
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log error: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m == "Network.loadingFailed":
                out.append(f"failed load: {p.get('errorText')}")
        for url in self.requests():
            if url != own_url and not url.startswith("data:"):
                out.append(f"request: {url}")
        return out

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


class Chromium:
    """A headless Chromium with a fresh profile; ``open`` gives a :class:`Page`."""

    def __init__(self, window: tuple[int, int] = (1280, 1000), extra: list[str] | None = None):
        self.window = window
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.profile: str | None = None
        self.port: int | None = None

    def __enter__(self) -> Chromium:
        self.profile = tempfile.mkdtemp(prefix="bt-chromium-")
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
               f"--window-size={self.window[0]},{self.window[1]}", *self.extra, "about:blank"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        deadline = time.time() + 60
        lines = []
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                if self.proc.poll() is not None:
                    break
                continue
            lines.append(line)
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.__exit__(None, None, None)
            raise RuntimeError("Chromium did not start its DevTools endpoint:\n" + "".join(lines[-20:]))
        # keep reading stderr so that the browser never blocks on a full pipe
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        return self

    def _targets(self) -> list[dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
            return json.loads(r.read())

    def open(self, path: str | os.PathLike, timeout: float = 60.0) -> Page:
        """A new tab showing the local file ``path``, once its load event fired."""
        with urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT"), timeout=10) as r:
            target = json.loads(r.read())
        page = Page(target["webSocketDebuggerUrl"])
        page.navigate(Path(path).resolve().as_uri(), timeout)
        return page

    def screenshot(self, path: str | os.PathLike, out: str | os.PathLike, width: int = 1280,
                   height: int = 2000) -> None:
        """A PNG of the top of the local page ``path``, ``width`` x ``height`` CSS pixels."""
        import base64

        page = self.open(path)
        try:
            page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
            shot = page.send("Page.captureScreenshot", format="png",
                             clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
            Path(out).write_bytes(base64.b64decode(shot["data"]))
        finally:
            page.close()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the browser and its helpers, by our own child's group
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
