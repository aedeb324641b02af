"""Load on the local stack (issue 8, item 9): 16 client threads of decide + beacon traffic over real HTTP.

Each client loops: GET /v1/ad (random region and format) -> the impression pixel (sometimes twice: a replay)
-> the click (for about a third of the ads, sometimes twice). The pumps run in the background as Lambda's
event source mappings would. At the end: zero errors, bounded RSS growth, and every distinct beacon sent is
in the Counters table's split counters (count sent == count folded; replays counted once).

Duration: ``DCO_LOAD_SECONDS`` (default 20 s, to keep CI short; the issue's 60 s is
``DCO_LOAD_SECONDS=60 pytest tests/reliability/test_rel_load.py``). Threads: ``DCO_LOAD_CLIENTS`` (16).
The figures are printed (``-s``) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import gc
import os
import random
import threading
import time
from typing import Any

from tests.e2e.conftest import Http, counters, tracking_urls

CAMPAIGN = "retail-demo"
REGIONS = ("pnw", "northeast", "southeast", "midwest", "southwest", "california", "elsewhere")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _split_totals(stack: Any) -> tuple[int, int]:
    items = counters(stack, CAMPAIGN)
    splits = [v for k, v in items.items() if k.startswith("split:")]
    return sum(int(v.get("impressions", 0)) for v in splits), sum(int(v.get("clicks", 0)) for v in splits)


def test_concurrent_decide_and_beacons_lose_nothing(rel_stack: Any) -> None:
    stack = rel_stack
    seconds = float(os.environ.get("DCO_LOAD_SECONDS", "20"))
    clients = int(os.environ.get("DCO_LOAD_CLIENTS", "16"))
    base = stack.base_url
    stack.pump()
    # warm-up: cold starts of decide and track, the first snapshot load
    warm = Http()
    for region in REGIONS:
        urls = tracking_urls(warm.get(f"{base}/v1/ad?c={CAMPAIGN}&exp=retail-main&size=300x250&region={region}").text)
        assert set(urls) == {"imp", "click"}
    stack.pump()
    before = _split_totals(stack)
    gc.collect()
    rss_before = _rss_mb()

    lock = threading.Lock()
    totals = {"ads": 0, "imps": 0, "clicks": 0, "requests": 0, "replays": 0}
    errors: list[str] = []
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        rng = random.Random(n)
        http = Http()
        ads = imps = clicks = requests = replays = 0
        mine: list[float] = []
        while time.monotonic() < deadline:
            region = rng.choice(REGIONS)
            fmt = rng.choice(("html", "html", "js"))
            started = time.perf_counter()
            try:
                reply = http.get(f"{base}/v1/ad?c={CAMPAIGN}&exp=retail-main&size=300x250&region={region}&fmt={fmt}"
                                 f"&country=US&cb={n}x{requests}")
                mine.append(time.perf_counter() - started)
                requests += 1
                if reply.status != 200:
                    raise AssertionError(f"ad {reply.status} {reply.body[:200]!r}")
                text = reply.text if fmt == "html" else reply.text.encode().decode("unicode_escape")
                urls = tracking_urls(text.replace("\\/", "/"))
                if set(urls) != {"imp", "click"}:
                    raise AssertionError(f"no tracking URLs in {fmt}: {reply.text[:200]}")
                ads += 1
                for _ in range(2 if rng.random() < 0.1 else 1):
                    beacon = http.get(urls["imp"])
                    requests += 1
                    if beacon.status != 200:
                        raise AssertionError(f"imp {beacon.status} {beacon.body[:200]!r}")
                imps += 1
                if rng.random() < 0.35:
                    for _ in range(2 if rng.random() < 0.2 else 1):
                        hop = http.get(urls["click"])
                        requests += 1
                        if hop.status != 302:
                            raise AssertionError(f"click {hop.status} {hop.body[:200]!r}")
                    clicks += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
        with lock:
            for name, value in (("ads", ads), ("imps", imps), ("clicks", clicks), ("requests", requests),
                                ("replays", replays)):
                totals[name] += value
            latencies.extend(mine)

    stack.start_pumps(0.5)
    try:
        threads = [threading.Thread(target=client, args=(n,), name=f"load-{n}") for n in range(clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 120)
        elapsed = time.monotonic() - started
    finally:
        stack.stop_pumps()
    for _ in range(5):
        if stack.pump().invocations == 0:
            break
    gc.collect()
    rss_after = _rss_mb()
    after = _split_totals(stack)
    folded = (after[0] - before[0], after[1] - before[1])
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else 0.0
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0
    print(f"\nload: {clients} clients x {elapsed:.1f}s: {totals['requests']} requests "
          f"({totals['requests'] / elapsed:.0f}/s), {totals['ads']} ads, {totals['imps']} impressions, "
          f"{totals['clicks']} clicks sent; folded {folded[0]} impressions, {folded[1]} clicks; "
          f"errors {len(errors)}; decide p50 {p50:.1f} ms p99 {p99:.1f} ms; "
          f"RSS {rss_before:.0f} -> {rss_after:.0f} MB; pump failures {len(stack.failures)}")
    assert errors == [], errors[:5]
    assert totals["ads"] > clients * 5
    assert stack.failures == []
    assert folded == (totals["imps"], totals["clicks"])
    # moto keeps every Events item and stream record in this process: allow for them, nothing more
    assert rss_after - rss_before < 150 + totals["requests"] * 0.02, (rss_before, rss_after)
