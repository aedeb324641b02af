"""The local HTTP gateway: what API Gateway (HTTP API, payload format 2.0) does in front of the functions.

    HTTP request ──Gateway (ThreadingHTTPServer)──> route of the template (``GET /v1/ad`` -> DecideFunction)
        ──http_event()──> API Gateway v2 event ──LocalStack.invoke──> {"statusCode", "headers", "body", ...}
        ──> HTTP response (base64 bodies decoded, ``cookies`` -> Set-Cookie)

Routes come from the template's HttpApi events, never from this file. The event carries what API Gateway puts
in one: ``rawPath``, ``rawQueryString``, ``queryStringParameters`` (repeated names joined by commas),
lower-cased ``headers`` (repeated ones joined by commas; ``x-forwarded-for/-proto/-port`` added),
``cookies``, ``requestContext.http.{method, path, protocol, sourceIp, userAgent}``, ``routeKey``, ``body`` and
``isBase64Encoded`` (non-text bodies are base64-encoded). Headers pass through as the client sent them: a client
that wants geo signals sends the ``CloudFront-Viewer-*`` headers itself (the demo page's region buttons use the
``region`` query parameter instead).

Local-only routes, served only when the template has no route there: ``GET /demo`` (a publisher-like page with
the JS ad tag, :mod:`dco_local.demo_page`), ``GET /healthz`` and ``GET /landing/...`` (a stand-in product page
for feeds whose links point at the local stack).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import sys
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from dco_local.template import ACCOUNT_ID, Route

if TYPE_CHECKING:
    from dco_local.stack import LocalStack

log = logging.getLogger("dco_local.gateway")

_TEXT_TYPES = re.compile(r"^(text/|application/(json|javascript|xml|x-www-form-urlencoded|[\w.+-]+\+(json|xml)))", re.I)
MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit


class RouteTable:
    """The template's routes: ``match(method, path) -> (route, path parameters)``."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self._compiled = [(route, _path_regex(route.path)) for route in routes]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route, regex in self._compiled:
            found = regex.fullmatch(path)
            if found and route.method in (method, "ANY"):
                return route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None

    def has_path(self, path: str) -> bool:
        return any(regex.fullmatch(path) for _, regex in self._compiled)


def _path_regex(path: str) -> re.Pattern[str]:
    if path == "/$default":
        return re.compile(r".*")
    out = ""
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            out += f"(?P<{name[:-1]}>.+)" if name.endswith("+") else f"(?P<{name}>[^/]+)"
        else:
            out += re.escape(part)
    return re.compile(out)


def http_event(
    route: Route,
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    source_ip: str,
    path_parameters: dict[str, str] | None = None,
    domain: str = "127.0.0.1",
    local_port: int = 0,
) -> dict[str, Any]:
    """The API Gateway HTTP API (payload 2.0) event of one request."""
    raw_path, _, raw_query = target.partition("?")
    path = unquote(raw_path)
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    cookie_header = merged.pop("cookie", None)
    forwarded = merged.get("x-forwarded-for")
    merged["x-forwarded-for"] = f"{forwarded}, {source_ip}" if forwarded else source_ip
    merged.setdefault("x-forwarded-proto", "http")
    merged.setdefault("x-forwarded-port", str(local_port))
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = datetime.now(UTC)
    request_id = uuid.uuid4().hex
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookie_header:
        event["cookies"] = [c.strip() for c in cookie_header.split(";") if c.strip()]
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        if _TEXT_TYPES.match(merged.get("content-type", "text/plain")):
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        else:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


def lambda_response(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body bytes of a handler's response, the way API Gateway (v2) maps it."""
    if not (isinstance(response, dict) and "statusCode" in response):
        # Payload 2.0: anything else is a 200 JSON body.
        body = response if isinstance(response, str) else json.dumps(response)
        return 200, [("Content-Type", "application/json")], body.encode()
    status = int(response["statusCode"])
    headers = [(str(k), str(v)) for k, v in (response.get("headers") or {}).items()]
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(v)) for v in values)
    headers.extend(("Set-Cookie", str(c)) for c in response.get("cookies") or [])
    raw = response.get("body")
    if raw is None:
        body = b""
    elif response.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = str(raw).encode("utf-8")
    return status, headers, body


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "dco-local"
    # Headers and body go out in one write below; without TCP_NODELAY a keep-alive client's delayed ACK
    # (40 ms on Linux) would still stall small responses behind Nagle's algorithm.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._handle("OPTIONS")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def _handle(self, method: str) -> None:
        gateway = self.server.gateway
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, [("Content-Type", "application/json")], b'{"message":"Request Entity Too Large"}')
            return
        body = self.rfile.read(length) if length else None
        path = unquote(self.path.partition("?")[0])
        found = gateway.routes.match(method, path)
        if found is None:
            local = gateway.local_route(method, path, self.path)
            if local is not None:
                self._send(*local, head=method == "HEAD")
                return
            self._send(404, [("Content-Type", "application/json")], b'{"message":"Not Found"}')
            return
        route, parameters = found
        host = self.headers.get("Host", "127.0.0.1")
        event = http_event(
            route, method=method, target=self.path, headers=list(self.headers.items()), body=body,
            source_ip=self.client_address[0], path_parameters=parameters, domain=host.split(":")[0],
            local_port=gateway.port,
        )
        try:
            response = gateway.stack.invoke(route.function, event)
        except Exception:  # noqa: BLE001 - what API Gateway answers when the function fails
            log.exception("%s failed on %s %s", route.function, method, path)
            self._send(500, [("Content-Type", "application/json")], b'{"message":"Internal Server Error"}')
            return
        self._send(*lambda_response(response), head=method == "HEAD")

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, head: bool = False) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() in ("content-length", "transfer-encoding", "connection"):
                continue
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if not head and body:
            # One send for headers and body (end_headers() would flush the headers on their own).
            self._headers_buffer.append(b"\r\n")
            self._headers_buffer.append(body)
            self.wfile.write(b"".join(self._headers_buffer))
            self._headers_buffer = []
        else:
            self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if not self.server.gateway.quiet:
            sys.stderr.write(f"gateway {self.address_string()} {format % args}\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    gateway: Gateway


class Gateway:
    """The HTTP server of a :class:`~dco_local.stack.LocalStack` (bound at construction, served by start())."""

    def __init__(self, stack: LocalStack, *, host: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> None:
        self.stack = stack
        self.quiet = quiet
        self._server = _Server((host, port), _Handler)
        self._server.gateway = self
        self.host, self.port = self._server.server_address[:2]
        self.base_url = f"http://{self.host}:{self.port}"
        self._routes: RouteTable | None = None
        self._thread: threading.Thread | None = None

    @property
    def routes(self) -> RouteTable:
        if self._routes is None:
            routes = [r for f in self.stack.functions.values() for r in f.spec.routes]
            self._routes = RouteTable(routes)
        return self._routes

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="dco-local-gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    # ---------------------------------------------------------------------------------------- local pages

    def local_route(self, method: str, path: str, target: str) -> tuple[int, list[tuple[str, str]], bytes] | None:
        if method not in ("GET", "HEAD"):
            return None
        if path == "/healthz":
            body = json.dumps({"ok": True, "moto": self.stack.moto_url, "bucket": self.stack.bucket,
                               "routes": [r.route_key for r in self.routes.routes]})
            return 200, [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body.encode()
        if path in ("/demo", "/demo/", "/"):
            if path == "/":
                return 302, [("Location", "/demo")], b""
            from dco_local.demo_page import render_demo_page

            query = dict(parse_qsl(target.partition("?")[2], keep_blank_values=False))
            page = render_demo_page(query, stats=self._stats_safely(query))
            return 200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")], page.encode()
        if path.startswith("/landing/"):
            shown = html.escape(path[len("/landing/"):])
            page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Product page</title></head><body>"
                    f"<h1>Product page</h1><p id='product'>{shown}</p><p>A stand-in for the advertiser's site: the "
                    f"local stack serves every /landing/... link of a local feed.</p><a href='/demo'>Back to the "
                    f"demo</a></body></html>")
            return 200, [("Content-Type", "text/html; charset=utf-8")], page.encode()
        return None

    def _stats_safely(self, query: dict[str, str]) -> dict[str, Any] | None:
        from dco_local.demo_page import DEFAULT_CAMPAIGN

        try:
            return self.stack.stats(query.get("c") or DEFAULT_CAMPAIGN)
        except Exception:  # noqa: BLE001 - the page still renders without figures
            return None
