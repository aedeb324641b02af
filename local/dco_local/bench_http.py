"""``dco bench http``: decide over real HTTP through the local gateway, against the same decisions in-process.

Setup: a :class:`dco_local.stack.LocalStack` (embedded moto server, gateway, the real decide handler) with the
retail example published (``stack.publish_example()``: ingest builds the snapshot from examples/retail).

Measured: ``N`` ``GET /v1/ad`` requests (the retail-main experience, html, regions and devices varying, a
category data-pass key on a third of them) from ``C`` client threads, each holding one keep-alive
``http.client.HTTPConnection``; latency per request is client-side wall time from sending to the last body
byte. A warm-up of 50 requests (the first loads the snapshot into the handler's warm cache) is not counted.

Baseline, same process run: the same queries through ``parse_request`` + ``Engine.decide`` + ``Engine.render``
on the handler's own warm state, so ``http_overhead_p50_ms`` (HTTP + gateway + API Gateway event + Powertools
resolver + logging/metrics) is visible. The local gateway serializes calls into one handler (one Lambda
execution environment handles one request at a time), so concurrency above 1 measures queueing, not scaling:
in AWS, concurrency comes from more execution environments.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from dco_local.bench import _progress, percentile

REGIONS = ("pnw", "northeast", "southeast", "midwest", "southwest", "california", "")
CATEGORIES = ("outerwear", "boots", "sneakers", "grills", "toys", "electronics", "bedding", "")
DEVICE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
)


def request_queries(n: int, campaign: str = "retail-demo") -> list[tuple[dict[str, str], dict[str, str]]]:
    """``n`` (query, headers) pairs with varying regions, categories and devices (deterministic)."""
    out = []
    for i in range(n):
        query = {"c": campaign, "exp": "retail-main", "size": "300x250", "rid": f"b{i}", "country": "US"}
        region = REGIONS[i % len(REGIONS)]
        if region:
            query["region"] = region
        category = CATEGORIES[(i // 7) % len(CATEGORIES)]
        if category and i % 3 == 0:
            query["t1"] = category
        headers = {"user-agent": DEVICE_UA[i % 2], "accept": "*/*"}
        out.append((query, headers))
    return out


def _client_run(
    host: str, port: int, work: list[tuple[str, dict[str, str]]], latencies: list[float], errors: list[str]
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        for path, headers in work:
            start = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - start
                if response.status != 200 or not body:
                    errors.append(f"{response.status}: {body[:120]!r}")
                else:
                    latencies.append(elapsed)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
    finally:
        conn.close()


def _run_http(base_url: str, requests: list[tuple[dict[str, str], dict[str, str]]], concurrency: int) -> dict[str, Any]:
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    paths = [(f"/v1/ad?{urlencode(q)}", h) for q, h in requests]
    shares: list[list[tuple[str, dict[str, str]]]] = [paths[i::concurrency] for i in range(concurrency)]
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    threads = [
        threading.Thread(target=_client_run, args=(host, port, shares[i], latencies[i], errors), daemon=True)
        for i in range(concurrency)
    ]
    gc.collect()
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    flat = [x for part in latencies for x in part]
    return {"latencies": flat, "errors": errors, "wall": wall}


def _in_process(stack: Any, campaign: str, requests: list[tuple[dict[str, str], dict[str, str]]]) -> list[float]:
    """Engine.decide + render on the decide handler's own warm state, per request (seconds)."""
    from dco.request import parse_request

    module = stack.function("decide").module
    warm = module.get_cache().get(campaign)
    keys = module.get_keys()
    now = datetime.now(UTC)
    parsed = [parse_request(q, h, now=now) for q, h in requests]
    out = []
    for i, request in enumerate(parsed):
        start = time.perf_counter()
        decision = warm.engine.decide(request, warm.stats, seed=i + 1)
        if decision.served:
            warm.engine.render(decision, request, base_url="https://ads.example.com", keys=keys.keys, kid=keys.current)
        out.append(time.perf_counter() - start)
    return out


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    lat = run["latencies"]
    return {
        "errors": len(run["errors"]),
        "p50_ms": round(statistics.median(lat) * 1000, 3) if lat else None,
        "p99_ms": round(percentile(lat, 99) * 1000, 3) if lat else None,
        "max_ms": round(max(lat) * 1000, 3) if lat else None,
        "rps": round(len(lat) / run["wall"], 1),
    }


def bench_http(requests: int, concurrency: int, warmup: int = 50) -> dict[str, Any]:
    from dco_local.stack import LocalStack

    concurrency = max(1, concurrency)
    _progress("starting the local stack and publishing the retail example ...")
    # The handlers' Powertools metrics print EMF lines to stdout: keep stdout for the figures.
    with contextlib.redirect_stdout(sys.stderr), LocalStack(refresh_seconds=60) as stack:
        campaign = stack.publish_example()
        _progress(f"warm-up ({warmup} requests) ...")
        warm = _run_http(stack.base_url, request_queries(warmup, campaign), 1)
        if warm["errors"]:
            raise RuntimeError(f"warm-up failed: {warm['errors'][:3]}")
        work = request_queries(requests, campaign)
        _progress(f"{requests:,} requests over HTTP, {concurrency} client thread(s) ...")
        run = _run_http(stack.base_url, work, concurrency)
        _progress("the same decisions in-process ...")
        gc.collect()
        base = _in_process(stack, campaign, work)
    as_is = _summary(run)
    base_p50 = statistics.median(base) * 1000
    return {
        "requests": requests,
        "concurrency": concurrency,
        **as_is,
        "error_sample": run["errors"][:3],
        "in_process_p50_ms": round(base_p50, 3),
        "in_process_p99_ms": round(percentile(base, 99) * 1000, 3),
        "in_process_rps": round(len(base) / sum(base), 1),
        "http_overhead_p50_ms": round(as_is["p50_ms"] - base_p50, 3) if as_is["p50_ms"] else None,
        "ratio_p50": round(as_is["p50_ms"] / base_p50, 1) if as_is["p50_ms"] else None,
    }
