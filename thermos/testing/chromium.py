"""A small headless-Chromium driver over the DevTools protocol, for tests of the web pages.

Tests load the observer's pages in the real browser, so JavaScript errors, missing charts and
escaping mistakes show up as they would for an operator. The driver starts `/usr/bin/chromium`
with a fresh profile and `--remote-debugging-port=0`, reads the port Chromium chose from its
`DevToolsActivePort` file, and talks to one page target over a websocket: navigate, evaluate
JavaScript, wait (always bounded) for a condition, take a screenshot. Console errors and
uncaught exceptions are collected so a test can assert there were none. `close()` kills the
browser's whole process group and removes the profile, whatever happened.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import websocket

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0")


class ChromiumError(AssertionError):
    """The browser did not start, a command failed, or a bounded wait ran out."""


class Chromium:
    """One headless browser with one page. Use as a context manager so the browser always dies.

    `console_errors` collects console.error calls, uncaught exceptions, failed loads logged by
    the browser and JavaScript dialogs (which are dismissed; `dialogs` lists them)."""

    def __init__(self, binary: str = CHROMIUM, timeout: float = 30.0, width: int = 1280,
                 height: int = 900) -> None:
        self.binary = binary
        self.timeout = timeout
        self.width = width
        self.height = height
        self.console_errors: list[str] = []
        self.console_messages: list[str] = []
        self.dialogs: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._profile: str | None = None
        self._ws: websocket.WebSocket | None = None
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if not os.access(self.binary, os.X_OK):
            raise ChromiumError("%s not found: install the Debian chromium package (./dev does)"
                                % self.binary)
        self._profile = tempfile.mkdtemp(prefix="thermos-chromium-")
        log = open(os.path.join(self._profile, "chromium.log"), "wb")  # closed once Popen holds it
        try:
            self._proc = subprocess.Popen(
                [self.binary, *FLAGS, "--user-data-dir=" + self._profile,
                 "--window-size=%d,%d" % (self.width, self.height), "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()
        try:
            port = self._wait_port()
            self._connect(port)
        except BaseException:
            self.close()
            raise

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self._profile or "", "chromium.log"), "rb") as fp:
                return fp.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _wait_port(self) -> int:
        """The DevTools port, once Chromium has written DevToolsActivePort (bounded)."""
        path = os.path.join(self._profile or "", "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise ChromiumError("chromium exited with %s before DevTools was ready:\n%s" % (
                    self._proc.returncode, self._log_tail()))
            try:
                with open(path) as fp:
                    first = fp.readline().strip()
                if first.isdigit():
                    return int(first)
            except OSError:
                pass
            time.sleep(0.02)
        raise ChromiumError("chromium wrote no DevToolsActivePort within %.0f s:\n%s" % (
            self.timeout, self._log_tail()))

    def _connect(self, port: int) -> None:
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=self.timeout) as resp:
            targets = json.load(resp)
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise ChromiumError("chromium has no page target: %r" % targets)
        # Chromium refuses DevTools websockets that carry an Origin header it was not told to allow.
        self._ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=self.timeout,
                                               suppress_origin=True)
        for domain in ("Page", "Runtime", "Log"):
            self.send(domain + ".enable")
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)

    def close(self) -> None:
        """Close the connection, kill the browser's process group, remove the profile."""
        if self._ws is not None:
            try:
                self._ws.close()
            except (OSError, websocket.WebSocketException):
                pass
            self._ws = None
        proc, self._proc = self._proc, None
        if proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            try:  # renderers may outlive the main process for a moment
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc.returncode is None:
                proc.wait(timeout=5)
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    # -- protocol ----------------------------------------------------------------------------

    def _receive(self, deadline: float) -> dict[str, Any]:
        assert self._ws is not None, "chromium is not started"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChromiumError("no message from chromium in time")
        self._ws.settimeout(remaining)
        try:
            message = json.loads(self._ws.recv())
        except websocket.WebSocketTimeoutException:
            raise ChromiumError("no message from chromium in time") from None
        if "method" in message:
            self._record(message)
        return message

    def _record(self, event: dict[str, Any]) -> None:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            args = params.get("args", [])
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in args)
            self.console_messages.append("%s: %s" % (params.get("type"), text))
            if params.get("type") in ("error", "assert"):
                self.console_errors.append("console.%s: %s" % (params.get("type"), text))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description") or details.get("text", "")
            self.console_errors.append("uncaught: %s" % description)
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                self.console_errors.append("%s: %s (%s)" % (entry.get("source"), entry.get("text"),
                                                             entry.get("url", "")))
        elif method == "Page.javascriptDialogOpening":
            # A dialog blocks the page; note it (an alert() in a test is an injection) and dismiss it.
            self.dialogs.append("%s: %s" % (params.get("type"), params.get("message")))
            self.console_errors.append("dialog %s: %s" % (params.get("type"), params.get("message")))
            self._next_id += 1
            assert self._ws is not None
            self._ws.send(json.dumps({"id": self._next_id, "method": "Page.handleJavaScriptDialog",
                                      "params": {"accept": False}}))
        self._events.append(event)
        del self._events[:-200]

    def send(self, method: str, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result; events seen meanwhile are recorded."""
        assert self._ws is not None, "chromium is not started"
        self._next_id += 1
        ident = self._next_id
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._receive(deadline)
            if message.get("id") == ident:
                if "error" in message:
                    raise ChromiumError("%s failed: %s" % (method, message["error"]))
                return message.get("result", {})

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait (bounded) for the next event named `method` and return its params."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                message = self._receive(deadline)
            except ChromiumError:
                raise ChromiumError("no %s within %.0f s" % (method, timeout or self.timeout)) from None
            if message.get("method") == method:
                return message.get("params", {})

    # -- what tests use ----------------------------------------------------------------------

    def navigate(self, url: str, timeout: float | None = None) -> None:
        """Load `url` and wait for its load event. HTTP error pages load too (check the content)."""
        self._events.clear()
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise ChromiumError("navigation to %s failed: %s" % (url, result["errorText"]))
        self.wait_event("Page.loadEventFired", timeout)

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        """The JSON value of `expression` in the page; a thrown exception becomes ChromiumError."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=await_promise)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise ChromiumError("%s threw: %s" % (expression, details.get("exception", {}).get(
                "description", details.get("text"))))
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float | None = None, interval: float = 0.05) -> Any:
        """Poll `expression` until it is truthy and return its value; bounded by `timeout`."""
        deadline = time.monotonic() + (timeout or self.timeout)
        value: Any = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            self._drain(min(interval, max(0.0, deadline - time.monotonic())))
        raise ChromiumError("%s still %r after %.0f s; console: %s" % (
            expression, value, timeout or self.timeout, self.console_messages[-10:]))

    def _drain(self, seconds: float) -> None:
        """Read (and record) events for `seconds`; this is how the driver waits between polls."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self._receive(deadline)
            except ChromiumError:
                return

    def wait_until(self, predicate: Callable[[], Any], timeout: float | None = None,
                   interval: float = 0.05) -> Any:
        """Poll a Python `predicate` while still recording browser events; bounded."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise ChromiumError("condition not met within %.0f s" % (timeout or self.timeout))
            self._drain(interval)

    def screenshot(self, path: str, full_page: bool = True) -> str:
        """Save a PNG of the page (the whole document when `full_page`) and return its path."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics.get("contentSize")
            params["captureBeyondViewport"] = True
            params["clip"] = {"x": 0, "y": 0, "width": max(self.width, int(size["width"])),
                              "height": int(size["height"]), "scale": 1}
        data = self.send("Page.captureScreenshot", **params)["data"]
        with open(path, "wb") as fp:
            fp.write(base64.b64decode(data))
        return path
