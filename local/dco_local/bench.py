"""``dco bench``: benchmark programs that print figures and compare against a baseline in the same run.

Never timed unit tests: each subcommand prints a human table (or one JSON object with ``--json``), with medians
and p99 over repetitions, and the ratio to its baseline. Figures are quoted in docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RETAIL_CAMPAIGN = ROOT / "examples" / "retail" / "campaign.yaml"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls after ``warmup`` calls (garbage collection paused while timing)."""
    for _ in range(warmup):
        fn()
    out = []
    enabled = gc.isenabled()
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
        finally:
            if enabled:
                gc.enable()
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def retail_campaign_data() -> dict[str, Any]:
    from dco.config import parse_config_text

    return parse_config_text(RETAIL_CAMPAIGN.read_bytes())


def make_catalog(products: int, seed: int = 7) -> tuple[bytes, Any]:
    """A generated retail feed of ``products`` rows and its parsed catalog."""
    from dco.config import campaign_from_dict
    from dco.feed import parse_feed

    from dco_local.examples import generate_retail_feed

    campaign = campaign_from_dict(retail_campaign_data())
    feed = generate_retail_feed(products, seed=seed)
    result = parse_feed(feed, campaign.feed, currency=campaign.currency)
    assert result.catalog is not None, result.report.fatal
    return feed, result.catalog


def _naive_rows(catalog: Any) -> list[dict[str, Any]]:
    """The catalog as one dict per product: what a straightforward snapshot would store."""
    names_text = sorted(catalog.text)
    names_num = sorted(catalog.numeric)
    names_multi = sorted(catalog.multi)
    rows = []
    for i, pid in enumerate(catalog.ids):
        row: dict[str, Any] = {"id": pid}
        for name in names_text:
            row[name] = catalog.text[name][i]
        for name in names_num:
            row[name] = catalog.numeric[name][i]
        for name in names_multi:
            row[name] = list(catalog.multi[name][i])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------- load


def bench_load(products: int, repeat: int | None = None) -> dict[str, Any]:
    import msgpack
    from dco.snapshot import build_snapshot, load_snapshot

    _progress(f"generating and parsing a {products:,}-product feed ...")
    _, catalog = make_catalog(products)
    _progress("building the snapshot ...")
    blob = build_snapshot(retail_campaign_data(), catalog)
    rows = _naive_rows(catalog)
    naive = msgpack.packb(rows, use_bin_type=True)
    as_json = json.dumps(rows).encode()
    del rows
    repeat = repeat or (21 if products <= 200_000 else 7)
    _progress(f"timing loads ({repeat} repetitions each) ...")
    ours = timed(lambda: load_snapshot(blob), repeat)
    naive_t = timed(lambda: msgpack.unpackb(naive, raw=False), repeat)
    json_t = timed(lambda: json.loads(as_json), max(3, repeat // 3))
    load_ms = statistics.median(ours) * 1000
    naive_ms = statistics.median(naive_t) * 1000
    return {
        "products": products,
        "bytes": len(blob),
        "naive_msgpack_bytes": len(naive),
        "json_bytes": len(as_json),
        "load_ms": round(load_ms, 2),
        "load_p99_ms": round(percentile(ours, 99) * 1000, 2),
        "naive_msgpack_load_ms": round(naive_ms, 2),
        "json_load_ms": round(statistics.median(json_t) * 1000, 2),
        "ratio_vs_naive": round(naive_ms / load_ms, 1),
        "repeat": repeat,
    }


# -------------------------------------------------------------------------------------------------- ingest


def bench_ingest(rows: int, repeat: int = 3) -> dict[str, Any]:
    """Parse + validate + build a generated ``rows``-row feed: wall-clock medians per phase, plus the process's
    CPU seconds (steadier than wall time on a shared machine) and the 1-minute load average when measured."""
    import os

    from dco._accel import accelerated
    from dco.config import campaign_from_dict
    from dco.feed import parse_feed
    from dco.snapshot import build_snapshot

    from dco_local.examples import generate_retail_feed

    data = retail_campaign_data()
    campaign = campaign_from_dict(data)
    _progress(f"generating a {rows:,}-row feed ...")
    feed = generate_retail_feed(rows, seed=11)
    phases: dict[str, list[float]] = {"parse": [], "build": [], "total": [], "cpu": []}
    loads: list[float] = []
    blob = b""
    for i in range(repeat):
        _progress(f"run {i + 1}/{repeat} ...")
        blob = b""
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        result = parse_feed(feed, campaign.feed, currency=campaign.currency)
        t1 = time.perf_counter()
        assert result.catalog is not None, result.report.fatal
        blob = build_snapshot(data, result.catalog, campaign=campaign)
        t2 = time.perf_counter()
        phases["cpu"].append(time.process_time() - c0)
        phases["parse"].append(t1 - t0)
        phases["build"].append(t2 - t1)
        phases["total"].append(t2 - t0)
        if hasattr(os, "getloadavg"):
            loads.append(os.getloadavg()[0])
        del result
    seconds = statistics.median(phases["total"])
    return {
        "rows": rows,
        "feed_bytes": len(feed),
        "snapshot_bytes": len(blob),
        "seconds": round(seconds, 3),
        "parse_seconds": round(statistics.median(phases["parse"]), 3),
        "build_seconds": round(statistics.median(phases["build"]), 3),
        "cpu_seconds": round(statistics.median(phases["cpu"]), 3),
        "runs_seconds": [round(t, 2) for t in phases["total"]],
        "rows_per_s": round(rows / seconds),
        "load_avg_1m": round(statistics.median(loads), 2) if loads else None,
        "accelerated": ",".join(k for k, on in accelerated().items() if on) or "none",
        "repeat": repeat,
    }


# ------------------------------------------------------------------------------------------------- output


def _print(result: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(result))
        return
    print(title)
    width = max(len(k) for k in result)
    for key, value in result.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        print(f"  {key:<{width}}  {shown}")



def _share(text: str) -> float:
    """An argparse type: a fraction between 0 and 1 (``--unseen``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value

def cmd_bench(args: argparse.Namespace) -> int:
    if args.bench == "load":
        _print(bench_load(args.products, args.repeat), args.json, f"snapshot load, {args.products:,} products")
    elif args.bench == "ingest":
        _print(bench_ingest(args.rows, args.repeat or 3), args.json, f"feed ingest, {args.rows:,} rows")
    elif args.bench == "decide":
        from dco_local.bench_decide import bench_decide

        _print(bench_decide(args.products, args.decisions), args.json, f"decide, {args.products:,} products")
    elif args.bench == "bandit":
        from dco_local.bench_bandit import run as bench_bandit

        reps = args.repeat or 20_000  # the defaults of ``python -m dco_local.bench_bandit``
        result = bench_bandit(args.arms, reps=reps, mab_reps=500, seed=1, unseen=args.unseen)
        _print(result, args.json, f"Thompson step, {args.arms} arms")
    elif args.bench == "fold":
        from dco_local.bench_fold import bench_fold

        _print(bench_fold(args.events, args.repeat), args.json, f"fold, {args.events:,} events")
    elif args.bench == "http":
        from dco_local.bench_http import bench_http

        result = bench_http(args.requests, args.concurrency)
        _print(result, args.json, f"decide over HTTP, {args.requests:,} requests, concurrency {args.concurrency}")
    elif args.bench == "coldstart":
        from dco_local.bench_coldstart import bench_coldstart

        _print(bench_coldstart(args.products, args.repeat or 7), args.json, "decide cold start")
    return 0


def add_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="benchmarks with baselines (print figures; never pass/fail)")
    kinds = bench.add_subparsers(dest="bench", required=True)
    load = kinds.add_parser("load", help="snapshot bytes and load time vs naive msgpack and JSON")
    load.add_argument("--products", type=int, default=100_000)
    ingest = kinds.add_parser("ingest", help="feed parse + validate + snapshot build")
    ingest.add_argument("--rows", type=int, default=1_000_000)
    decide = kinds.add_parser("decide", help="in-process decisions (numpy and pure-Python)")
    decide.add_argument("--products", type=int, default=100_000)
    decide.add_argument("--decisions", type=int, default=5000)
    bandit = kinds.add_parser("bandit", help="Thompson step vs MABWiser")
    bandit.add_argument("--arms", type=int, default=600)
    bandit.add_argument("--unseen", type=_share, default=0.1,
                        help="share of arms with no impressions yet (0 = every arm seen; default 0.1)")
    fold = kinds.add_parser("fold", help="fold aggregation throughput and writes per batch vs a per-event fold")
    fold.add_argument("--events", type=int, default=100_000)
    http = kinds.add_parser("http", help="decide over real HTTP through the local gateway vs in-process")
    http.add_argument("--requests", type=int, default=2000)
    http.add_argument("--concurrency", type=int, default=1)
    coldstart = kinds.add_parser("coldstart", help="fresh process: import decide, load a snapshot, first decision")
    coldstart.add_argument("--products", type=int, default=100_000)
    for p in (load, ingest, decide, bandit, fold, http, coldstart):
        p.add_argument("--json", action="store_true")
        p.add_argument("--repeat", type=int, default=None)
        p.set_defaults(func=cmd_bench)
