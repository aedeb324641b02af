"""The Python half of the edge worker: serves ``/v1/ad`` from a bundled snapshot inside Pyodide.

worker.mjs (the JavaScript half) boots Pyodide, installs the local wheels, copies this file into Pyodide's file
system and builds one :class:`EdgeApp` from the bundled snapshot bytes. Per HTTP request it calls
:meth:`EdgeApp.handle` with the query, the headers, the time and a fresh random seed; it also hands over a new
stats object whenever its periodic fetch (ETag-conditional) gets one. Nothing here does I/O, reads a clock or
draws randomness: the JavaScript side passes all of them in (the core's house rules).

What does not run here: tracking writes. The signed impression/click URLs in the markup point at the regional
API (``base_url``), whose track handler records events; the edge only decides and renders.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from dco.engine import Engine
from dco.errors import RequestError
from dco.request import parse_request
from dco.snapshot import load_snapshot
from dco.stats import StatsTable
from dco.warm import decode_stats


class EdgeApp:
    """One campaign snapshot, the latest stats, the signing key: ``handle(path, query, headers, now_ms, seed)``."""

    def __init__(self, snapshot_blob: bytes, *, base_url: str, keys: dict[str, bytes], kid: str) -> None:
        self.snapshot = load_snapshot(bytes(snapshot_blob))
        self.engine = Engine(self.snapshot)
        self.stats = StatsTable.empty(self.snapshot.campaign.id)
        self.base_url = base_url
        self.keys = keys
        self.kid = kid

    def set_stats(self, body: bytes) -> int:
        """Replace the stats with a freshly fetched stats object (msgpack or JSON); returns its arm count.

        A malformed object raises ValueError and the previous stats keep serving (the caller logs it).
        """
        self.stats = decode_stats(bytes(body))
        return len(self.stats)

    def handle(
        self, path: str, query: dict[str, str], headers: dict[str, str], now_ms: float, seed: int
    ) -> tuple[int, str, str]:
        """``(status, content type, body)`` for one request. ``seed`` comes from the request's ``seed``
        parameter when it has one (replays), else from the caller."""
        if path != "/v1/ad":
            return 404, "application/json", json.dumps({"error": "not found"})
        now = datetime.fromtimestamp(now_ms / 1000.0, UTC)
        try:
            request = parse_request(query, headers, now=now)
            decision = self.engine.decide(
                request, self.stats, seed=request.seed if request.seed is not None else seed, explain=request.debug
            )
        except RequestError as exc:
            return 400, "application/json", json.dumps({"error": str(exc), "param": exc.param})
        if not decision.served:
            return 204, "text/plain", ""
        rendered = self.engine.render(decision, request, base_url=self.base_url, keys=self.keys, kid=self.kid)
        return 200, rendered.content_type, rendered.body

    def describe(self) -> dict[str, Any]:
        return {"campaign": self.snapshot.campaign.id, "snapshot": self.snapshot.version, "arms": len(self.stats)}
