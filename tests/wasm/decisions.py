"""The decision driver shared by CPython and Pyodide: the same code runs the fixed requests on both sides.

Standard library + msgpack + ``dco`` only (it is copied into Pyodide's file system by run_decisions.mjs).
Data flow::

    examples/retail (campaign as JSON, feed.tsv) --build_snapshot()--> snapshot bytes (CPython, in the test)
    snapshot bytes + requests.json --run()--> {"runtime", "results": [per request: targeting, eligibility,
        decision (seeded, twice), html digest, timings]}

Command line (CPython)::

    python tests/wasm/decisions.py build CAMPAIGN.json|.yaml FEED.tsv OUT.msgpack
    python tests/wasm/decisions.py run OUT.msgpack tests/wasm/requests.json [--repeat N] [--samples] [--minimal]

``--minimal`` blocks every optional dependency of the core (numpy, pyroaring, jinja2, markupsafe, yaml,
ua_parser) before ``dco`` is imported: CPython running what Pyodide runs. ``--samples`` keeps every timing.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from datetime import datetime
from typing import Any

OPTIONAL_DEPENDENCIES = ("numpy", "pyroaring", "jinja2", "markupsafe", "yaml", "ua_parser")

SIGNING_KEYS = {"k1": b"wasm-test-signing-key-0123456789"}
BASE_URL = "https://ads.example.com"
STATS_SEED = 20261123


def build_snapshot(campaign_json: bytes, feed: bytes) -> bytes:
    """Snapshot bytes from a campaign config and a feed (no clock: the same inputs give the same bytes).

    JSON needs nothing more; YAML text works where PyYAML is installed.
    """
    from dco.config import campaign_from_dict, parse_config_text
    from dco.feed import parse_feed
    from dco.snapshot import build_snapshot as build

    data = parse_config_text(campaign_json)
    campaign = campaign_from_dict(data)
    result = parse_feed(feed, campaign.feed, currency=campaign.currency)
    assert result.catalog is not None, result.report
    return build(data, result.catalog, campaign=campaign)


def synthetic_stats(snapshot: Any) -> Any:
    """Deterministic arm and component counts (so Thompson sampling has real posteriors to draw from)."""
    from dco.stats import StatsTable

    rnd = random.Random(STATS_SEED)
    arms: dict[str, list[Any]] = {}
    ids = snapshot.columns["id"]
    for row in range(snapshot.rows):
        if rnd.random() < 0.5:
            impressions = rnd.randint(20, 4000)
            arms[f"cr-product|{ids.get(row)}"] = [impressions, int(impressions * rnd.uniform(0.001, 0.03)), 0, 0.0]
    components: dict[str, list[Any]] = {}
    for creative in snapshot.campaign.creatives.values():
        for slot, variants in creative.slots.items():
            for variant in variants:
                impressions = rnd.randint(100, 20000)
                components[f"{creative.id}|{slot}={variant.id}"] = [
                    impressions, int(impressions * rnd.uniform(0.002, 0.02)), 0, 0.0,
                ]
    return StatsTable.from_object(
        {"version": 1, "campaign": snapshot.campaign.id, "arms": arms, "components": components}
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def runtime() -> dict[str, Any]:
    """Which interpreter and backends this run used."""
    import msgpack
    from dco import render
    from dco._accel import accelerated

    return {
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "accelerators": accelerated(),
        "template_engine": render.DEFAULT_ENGINE,
        "msgpack_extension": not msgpack.Packer.__module__.endswith("fallback"),
    }


def block_optional_dependencies() -> None:
    """Make the optional dependencies unimportable in this process (call before importing ``dco``)."""
    import importlib.abc

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
            if fullname.split(".")[0] in OPTIONAL_DEPENDENCIES:
                raise ImportError(f"{fullname} blocked (stdlib + msgpack run)")
            return None

    if any(name.split(".")[0] == "dco" for name in sys.modules):
        raise RuntimeError("block_optional_dependencies() must run before dco is imported")
    sys.meta_path.insert(0, Blocker())


def run(
    snapshot_blob: bytes, requests: list[dict[str, Any]], repeat: int = 20, samples: bool = False
) -> dict[str, Any]:
    """Every request of ``requests``: targeting, eligibility, the seeded decision (twice), the rendered ad, timings.

    ``repeat`` decisions per request are timed after one warm-up (decide alone, and decide + sign + render).
    """
    from dco.catalog import select_products
    from dco.engine import Engine
    from dco.request import parse_request
    from dco.snapshot import load_snapshot

    started = time.perf_counter()
    snapshot = load_snapshot(bytes(snapshot_blob))
    engine = Engine(snapshot)
    stats = synthetic_stats(snapshot)
    load_ms = (time.perf_counter() - started) * 1000
    campaign = snapshot.campaign
    results = []
    for spec in requests:
        now = datetime.fromisoformat(spec["now"].replace("Z", "+00:00"))
        request = parse_request(spec["query"], spec.get("headers", {}), now=now)
        signals = request.signals()
        seed = int(spec["seed"])
        targeting = snapshot.targeting.select(request.experience, signals, request.segments, request.now, tag=request.tag)
        out: dict[str, Any] = {"name": spec["name"], "seed": seed}
        out["targeting"] = None if targeting is None else {
            "theme": targeting.theme, "branch": targeting.branch, "score": targeting.score,
            "candidates": targeting.candidates, "matched_rules": list(targeting.matched_rules),
        }
        eligibility: dict[str, Any] = {}
        if targeting is not None:
            group = campaign.groups[campaign.themes[targeting.theme].group]
            for cid in group.creatives:
                creative = campaign.creatives[cid]
                if creative.products is None:
                    continue
                pick = select_products(snapshot, cid, creative.products, signals)
                eligibility[cid] = {
                    "candidates": pick.candidates,
                    "top_n": len(pick.rows),
                    "ids": [snapshot.columns["id"].get(r) for r in pick.rows],
                    "scores": list(pick.scores),
                    "applied": list(pick.applied),
                }
        out["eligibility"] = eligibility
        first = engine.decide(request, stats, seed=seed)
        second = engine.decide(request, stats, seed=seed)
        out["decision"] = first.to_dict()
        out["decision_again"] = second.to_dict()
        if first.served:
            rendered = engine.render(first, request, base_url=BASE_URL, keys=SIGNING_KEYS, kid="k1")
            out["rendered"] = {"content_type": rendered.content_type, "bytes": len(rendered.body.encode()),
                               "sha256": _digest(rendered.body)}
        else:
            out["rendered"] = None
        decide_us: list[float] = []
        full_us: list[float] = []
        for i in range(repeat):
            t0 = time.perf_counter()
            decision = engine.decide(request, stats, seed=seed + 1 + i)
            t1 = time.perf_counter()
            if decision.served:
                engine.render(decision, request, base_url=BASE_URL, keys=SIGNING_KEYS, kid="k1")
            t2 = time.perf_counter()
            decide_us.append((t1 - t0) * 1e6)
            full_us.append((t2 - t0) * 1e6)
        out["timing_us"] = {"decide": _summary(decide_us), "decide_render": _summary(full_us)}
        if samples:
            out["samples_us"] = {"decide": decide_us, "decide_render": full_us}
        results.append(out)
    return {"runtime": runtime(), "snapshot": snapshot.version, "load_ms": load_ms, "results": results}


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"p50": 0.0, "p99": 0.0, "mean": 0.0}
    return {
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "mean": sum(ordered) / len(ordered),
    }


def comparable(report: dict[str, Any], *, with_decisions: bool) -> list[dict[str, Any]]:
    """The runtime-independent part of a report (timings and runtime facts dropped) for equality checks.

    Eligibility, AdTheme, scores and top-N never depend on the backend; the seeded decision (and so the
    rendered ad) depends on the random backend (numpy's PCG64 vs random.Random), hence ``with_decisions``.
    """
    keep = ("name", "seed", "targeting", "eligibility") + (("decision", "rendered") if with_decisions else ())
    return [{k: r[k] for k in keep} for r in report["results"]]


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "build":
        with open(argv[1], "rb") as c, open(argv[2], "rb") as f:
            blob = build_snapshot(c.read(), f.read())
        with open(argv[3], "wb") as out:
            out.write(blob)
        return 0
    if len(argv) >= 3 and argv[0] == "run":
        repeat = int(argv[argv.index("--repeat") + 1]) if "--repeat" in argv else 20
        if "--minimal" in argv:
            block_optional_dependencies()
        with open(argv[1], "rb") as s, open(argv[2], encoding="utf-8") as r:
            report = run(s.read(), json.load(r), repeat=repeat, samples="--samples" in argv)
        json.dump(report, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
