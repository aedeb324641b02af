"""Headless Chromium driven over the DevTools protocol, with the standard library only.

Why this and not Playwright or Selenium: Playwright cannot download its browsers here, and Selenium needs a
matching chromedriver; Debian's ``chromium`` package is all this needs. Chromium is started with
``--remote-debugging-port=0`` (it writes the port it chose to ``DevToolsActivePort`` in its profile folder);
:class:`Page` talks to one tab over a WebSocket (RFC 6455 client framing, written out below: text frames,
masking, fragmentation, ping/pong), sends commands and collects events.

    with Browser.launch(user_agent=UA) as browser:
        page = browser.page()
        page.navigate("http://127.0.0.1:8080/demo")
        page.evaluate("document.title")
        page.click_at(x, y)                        # a trusted mouse click (user activation: popups allowed)
        browser.targets()                           # every tab, with its URL

``find_chromium()`` looks at ``DCO_CHROMIUM`` / ``CHROMIUM`` then the usual binary names (``.ci/setup-browser``
installs Debian's).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--window-size=1280,900",
)


class CdpError(RuntimeError):
    """A DevTools command failed, or the browser did not answer in time."""


def find_chromium() -> str | None:
    for candidate in (os.environ.get("DCO_CHROMIUM"), os.environ.get("CHROMIUM"), "chromium", "chromium-browser",
                      "google-chrome", "google-chrome-stable"):
        if candidate:
            found = shutil.which(candidate)
            if found:
                return found
    return None


class _WebSocket:
    """A minimal RFC 6455 client: enough for the DevTools protocol (text frames, no extensions)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        request = (f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CdpError("DevTools closed the connection during the handshake")
            head += chunk
        status, _, rest = head.partition(b"\r\n\r\n")
        if b" 101 " not in status.split(b"\r\n", 1)[0]:
            raise CdpError(f"DevTools refused the WebSocket: {status[:200]!r}")
        self._buffer = rest

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise CdpError("DevTools connection closed")
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytearray([0x81])  # FIN + text
        length = len(payload)
        if length < 126:
            header.append(0x80 | length)
        elif length < 65536:
            header.append(0x80 | 126)
            header += struct.pack("!H", length)
        else:
            header.append(0x80 | 127)
            header += struct.pack("!Q", length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + mask + masked)

    def _send_control(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
                          + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read(8))[0]
            if second & 0x80:
                mask = self._read(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(length)))
            else:
                data = self._read(length)
            if opcode == 0x9:  # ping
                self._send_control(0xA, data)
                continue
            if opcode == 0x8:
                raise CdpError("DevTools closed the WebSocket")
            if opcode in (0x1, 0x2, 0x0):
                message += data
                if first & 0x80:
                    return message.decode()

    def close(self) -> None:
        with suppress(OSError):
            self._send_control(0x8, b"")
        self.sock.close()


class Page:
    """One tab: ``send(method, **params)`` returns the result; events are kept in :attr:`events`."""

    def __init__(self, ws_url: str, timeout: float = 30.0) -> None:
        self.ws = _WebSocket(ws_url, timeout=timeout)
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.receive())
            if message.get("id") == ident:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)
        raise CdpError(f"{method}: no answer within {self.timeout}s")

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            for index, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(index)
            message = json.loads(self.ws.receive())
            if "method" in message:
                self.events.append(message)
        raise CdpError(f"no {method} event within {timeout or self.timeout}s")

    def navigate(self, url: str) -> None:
        self.send("Page.enable")
        self.events.clear()
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise CdpError(f"navigation to {url} failed: {result['errorText']}")
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise CdpError(f"{expression!r} stayed false for {timeout}s")

    def click_at(self, x: float, y: float) -> None:
        """A trusted left click (mouse moved, pressed, released), as a person would."""
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.send("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
        self.send("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", clickCount=1)

    def document(self) -> dict[str, Any]:
        """The whole DOM, iframes' documents included (works in sandboxed frames where scripts cannot run)."""
        return self.send("DOM.getDocument", depth=-1, pierce=True)["root"]

    def close(self) -> None:
        self.ws.close()


class Browser:
    """A headless Chromium process with its own throw-away profile."""

    def __init__(self, process: subprocess.Popen[bytes], profile: Path, port: int) -> None:
        self.process = process
        self.profile = profile
        self.port = port

    @classmethod
    @contextmanager
    def launch(cls, *, user_agent: str, binary: str | None = None, timeout: float = 30.0) -> Iterator[Browser]:
        binary = binary or find_chromium()
        if binary is None:
            raise CdpError("no chromium binary found")
        profile = Path(tempfile.mkdtemp(prefix="dco-chromium-"))
        args = [binary, *FLAGS, f"--user-data-dir={profile}", f"--user-agent={user_agent}",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"]
        log = (profile / "chromium.log").open("wb")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        browser = None
        try:
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not (port_file.is_file() and port_file.read_text().strip()):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (profile / "chromium.log").read_text(errors="replace")[-2000:]
                    raise CdpError(f"chromium did not start (exit {process.poll()}): {tail}")
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            browser = cls(process, profile, port)
            yield browser
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            log.close()
            shutil.rmtree(profile, ignore_errors=True)

    def targets(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as response:
            return json.loads(response.read())

    def page(self) -> Page:
        for target in self.targets():
            if target.get("type") == "page":
                return Page(target["webSocketDebuggerUrl"])
        raise CdpError("no page target in the browser")

    def frame(self, frame_id: str | None = None, timeout: float = 15.0) -> Page:
        """A connection to an out-of-process iframe (site isolation puts a sandboxed, opaque-origin frame in a
        process of its own, so the page's DOM does not contain its document): the ``iframe`` target whose id is
        ``frame_id`` (the frame id of the IFRAME node), else the only iframe target."""
        deadline = time.monotonic() + timeout
        while True:
            frames = [t for t in self.targets() if t.get("type") == "iframe"]
            chosen = [t for t in frames if t.get("id") == frame_id] or (frames if len(frames) == 1 else [])
            if chosen:
                return Page(chosen[0]["webSocketDebuggerUrl"])
            if time.monotonic() > deadline:
                raise CdpError(f"no iframe target {frame_id} (iframe targets: {[t.get('id') for t in frames]})")
            time.sleep(0.1)

    def version(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/version", timeout=10) as response:
            return str(json.loads(response.read()).get("Browser", "?"))


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a ``DOM.getDocument(pierce=True)`` tree, iframe documents included."""
    yield node
    for child in node.get("children") or []:
        yield from walk(child)
    if node.get("contentDocument"):
        yield from walk(node["contentDocument"])
