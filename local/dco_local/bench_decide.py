"""``dco bench decide``: in-process decisions on a generated catalog, accelerated and pure-Python side by side.

The setup follows the issue's reference case: N products, one tree experience, one AdTheme whose creative group
rotates (Thompson sampling) over 3 dynamic creatives, each with 3 product filters (in stock: static; country
from geo.country and category from t1: request-dependent), top 200 -> about 600 product x creative arms, with
random arm statistics so the Thompson step has real posteriors. Requests are parsed once up front (the ad
request parser is measured separately by ``--with-parse``); the figure is Engine.decide, per decision.

The pure-Python figure is measured in a child process with numpy and pyroaring blocked before ``dco`` loads.
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

CATEGORIES_PER_REQUEST = 8


def bench_campaign(top_n: int = 200) -> dict[str, Any]:
    creatives = []
    for i, template in enumerate(("product_card", "product_card", "product_card"), start=1):
        creatives.append(
            {
                "id": f"cr-dyn{i}",
                "type": "dynamic",
                "template": template,
                "products": {
                    "top_n": top_n,
                    "filters": [
                        {"column": "availability", "values": ["in_stock"]},
                        {"column": "country", "from": "geo.country"},
                        {"column": "category", "from": "t1"},
                    ],
                    "boosts": [
                        {"column": "price", "min": 0, "max": 50, "factor": 1.0 + 0.1 * i},
                        {"column": "custom_label_0", "from": "geo.region", "factor": 1.5},
                        {"column": "brand", "from": "ut1", "factor": 2.0},
                        {"column": "popularity", "scale": True, "factor": 0.5 + 0.25 * i},
                    ],
                },
            }
        )
    creatives.append(
        {
            "id": "cr-house",
            "type": "standard",
            "landing_url": "https://shop.example.com/",
            "assets": {"headline": "Shop", "image": "https://cdn.example.com/house.jpg"},
        }
    )
    return {
        "id": "bench",
        "name": "decide benchmark",
        "timezone": "America/New_York",
        "objective": "click",
        "holdout": 0.0,
        "currency": "USD",
        "default_creative": "cr-house",
        "feed": {
            "columns": {"category": "product_type"},
            "indexes": ["category", "brand", "availability", "country", "custom_label_0"],
        },
        "experiences": [
            {
                "id": "bench-main",
                "sizes": ["300x250"],
                "formats": ["html", "json"],
                "targeting": "tree",
                "tree": [
                    {"name": "us", "rules": {"geo": {"country": ["US"]}}, "theme": "th-us"},
                ],
                "else": "th-us",
            }
        ],
        "themes": [{"id": "th-us", "weight": 1, "group": "grp"}],
        "groups": [{"id": "grp", "rotation": "algo", "creatives": ["cr-dyn1", "cr-dyn2", "cr-dyn3"]}],
        "creatives": creatives,
    }


def _setup(products: int, seed: int) -> tuple[Any, Any, list[Any]]:
    from dco.config import campaign_from_dict
    from dco.engine import Engine
    from dco.feed import parse_feed
    from dco.request import parse_request
    from dco.snapshot import build_snapshot, load_snapshot
    from dco.stats import StatsTable

    from dco_local.examples import RETAIL_CATEGORIES, RETAIL_REGIONS, generate_retail_feed

    data = bench_campaign()
    campaign = campaign_from_dict(data)
    result = parse_feed(generate_retail_feed(products, seed=seed), campaign.feed, currency="USD")
    assert result.catalog is not None
    snapshot = load_snapshot(build_snapshot(data, result.catalog, campaign=campaign))
    engine = Engine(snapshot)
    rnd = random.Random(seed)
    now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    requests = []
    for i in range(64):
        query = {
            "exp": "bench-main",
            "country": "US",
            "region": rnd.choice(RETAIL_REGIONS),
            "t1": RETAIL_CATEGORIES[i % CATEGORIES_PER_REQUEST],
            "rid": f"bench-{i}",
        }
        requests.append(parse_request(query, {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0"}, now=now))
    # Random statistics for most products of every creative: real posteriors for the Thompson step.
    arms: dict[str, list[Any]] = {}
    ids = snapshot.columns["id"]
    for row in range(snapshot.rows):
        if rnd.random() < 0.6:
            impressions = rnd.randint(50, 5000)
            clicks = int(impressions * rnd.uniform(0.001, 0.03))
            for c in ("cr-dyn1", "cr-dyn2", "cr-dyn3"):
                arms[f"{c}|{ids.get(row)}"] = [impressions, clicks, 0, 0.0]
    stats = StatsTable.from_object({"version": 1, "campaign": "bench", "arms": arms, "components": {}})
    return engine, stats, requests


def _time(engine: Any, stats: Any, requests: list[Any], decisions: int) -> list[float]:
    import gc

    for i in range(200):  # warm-up: caches, bitmap deserialisation, code paths
        engine.decide(requests[i % len(requests)], stats, seed=i)
    samples = []
    gc.collect()
    gc.disable()
    try:
        for i in range(decisions):
            request = requests[i % len(requests)]
            start = time.perf_counter_ns()
            engine.decide(request, stats, seed=i)
            samples.append((time.perf_counter_ns() - start) / 1000)
    finally:
        gc.enable()
    samples.sort()
    return samples


def _p99(samples: list[float]) -> float:
    return round(samples[min(len(samples) - 1, int(0.99 * len(samples)))], 1)


def run_local(products: int, decisions: int, seed: int = 7) -> dict[str, Any]:
    """Time Engine.decide in this process; returns per-decision microseconds.

    The headline figures use the engine as deployed (its per-context pick cache on; the request mix has 8
    categories x 6 regions = 48 contexts, so after warm-up nearly every pick is a hit). ``uncached_*`` is the
    same run with the pick cache off: every decision filters, scores and ranks the catalog (the worst case:
    every request from a context not seen since the cache last held it).
    """
    from dco._accel import accelerated
    from dco.engine import Engine

    engine, stats, requests = _setup(products, seed)
    probe = engine.decide(requests[0], stats, seed=1, explain=True)
    arms = (probe.explain or {}).get("arms", 0)
    samples = _time(engine, stats, requests, decisions)
    hits, misses = engine.picks.hits, engine.picks.misses
    uncached = _time(Engine(engine.snapshot, pick_cache=0), stats, requests, decisions)
    return {
        "products": products,
        "decisions": decisions,
        "arms": arms,
        "p50_us": round(statistics.median(samples), 1),
        "p99_us": _p99(samples),
        "mean_us": round(statistics.fmean(samples), 1),
        "pick_cache_hit_rate": round(hits / max(1, hits + misses), 4),
        "uncached_p50_us": round(statistics.median(uncached), 1),
        "uncached_p99_us": _p99(uncached),
        "accelerators": accelerated(),
    }


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.split(".")[0] in ("numpy", "pyroaring"):
            raise ImportError(f"{fullname} blocked (pure-Python benchmark)")
        return None


def bench_decide(products: int, decisions: int, pure_decisions: int | None = None) -> dict[str, Any]:
    """Accelerated figures in-process, pure-Python figures from a child process."""
    print(f"accelerated: {products:,} products, {decisions:,} decisions ...", file=sys.stderr, flush=True)
    result = run_local(products, decisions)
    pure_n = pure_decisions or max(200, decisions // 10)
    print(f"pure-Python (child process): {pure_n:,} decisions ...", file=sys.stderr, flush=True)
    child = subprocess.run(
        [sys.executable, "-m", "dco_local.bench_decide", "--pure", "--products", str(products), "--decisions", str(pure_n)],
        capture_output=True,
        text=True,
        check=True,
    )
    result["pure_python"] = json.loads(child.stdout.strip().splitlines()[-1])
    result["pure_over_accelerated_p50"] = round(result["pure_python"]["p50_us"] / result["p50_us"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=5000)
    parser.add_argument("--pure", action="store_true", help="block numpy and pyroaring (child mode)")
    args = parser.parse_args()
    if args.pure:
        sys.meta_path.insert(0, _Blocker())
        print(json.dumps(run_local(args.products, args.decisions)))
        return
    print(json.dumps(bench_decide(args.products, args.decisions)))


if __name__ == "__main__":
    main()
