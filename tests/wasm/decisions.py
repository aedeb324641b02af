"""The decision driver shared by CPython and Pyodide: the same code runs the fixed requests on both sides.

Standard library + msgpack + ``dco`` only (it is copied into Pyodide's file system by run_decisions.mjs).
Data flow::

    examples/retail (campaign as JSON, feed.tsv) --build_snapshot()--> snapshot bytes (CPython, in the test)
    snapshot bytes + requests.json --run()--> {"runtime", "results": [per request: targeting, eligibility,
        decision (seeded, twice), html digest, timings]}

Command line (CPython)::

    python tests/wasm/decisions.py build CAMPAIGN.json|.yaml FEED.tsv OUT.msgpack
    python tests/wasm/decisions.py stats SNAPSHOT.msgpack OUT.msgpack      (a stats object with a fitted model)
    python tests/wasm/decisions.py run OUT.msgpack tests/wasm/requests.json [--stats STATS.msgpack] [--repeat N]
        [--samples] [--minimal]

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


STATS_TIME = 1_795_500_000  # the stats object's updated_at (its models are fitted at that time)


def synthetic_stats_object(snapshot: Any) -> dict[str, Any]:
    """Deterministic counters (product arms; the assembled creatives' combinations per region and device, with
    their discounted sums) and the models publish-stats fits from them, so that every Thompson step draws from
    real posteriors. Built once (in CPython) and handed to every runtime as msgpack bytes: the same stats."""
    from dco.learning import context_key, decay_stamp, fit_models

    rnd = random.Random(STATS_SEED)
    arms: dict[str, list[Any]] = {}
    ids = snapshot.columns["id"]
    for row in range(snapshot.rows):
        if rnd.random() < 0.5:
            impressions = rnd.randint(20, 4000)
            arms[f"cr-product|{ids.get(row)}"] = [impressions, int(impressions * rnd.uniform(0.001, 0.03)), 0, 0.0]
    contexts: dict[str, list[Any]] = {}
    epoch, weight = decay_stamp(STATS_TIME - 7200)
    for creative in snapshot.campaign.creatives.values():
        if creative.type != "assembled":
            continue
        slots = [[v.id for v in variants] for variants in creative.slots.values()]
        boost = {ids_[0]: rnd.uniform(-0.4, 0.6) for ids_ in ([rnd.choice(s)] for s in slots)}
        for _ in range(1500):
            combo = [rnd.choice(s) for s in slots]
            ctx = {"region": rnd.choice(["pnw", "northeast", "southeast", "midwest"]),
                   "device": rnd.choice(["mobile", "desktop"])}
            key = context_key(f"{creative.id}|" + ".".join(combo), ctx.items())
            impressions = rnd.randint(50, 400)
            rate = 0.01 * (1.0 + sum(boost.get(v, 0.0) for v in combo))
            clicks = sum(rnd.random() < rate for _ in range(impressions))
            contexts[key] = [impressions, clicks, 0, 0.0]
            contexts[f"{key}#d{epoch}"] = [impressions * weight, clicks * weight, 0, 0.0]
    obj = {"version": 2, "campaign": snapshot.campaign.id, "updated_at": STATS_TIME, "arms": arms,
           "contexts": contexts}
    obj["models"] = fit_models(contexts, STATS_TIME)
    return obj


def synthetic_stats(snapshot: Any, blob: bytes | None = None) -> Any:
    """The stats table of :func:`synthetic_stats_object` (decoded from ``blob`` when given)."""
    import msgpack
    from dco.stats import StatsTable

    obj = msgpack.unpackb(blob, raw=False, strict_map_key=False) if blob else synthetic_stats_object(snapshot)
    return StatsTable.from_object(obj)


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
    snapshot_blob: bytes, requests: list[dict[str, Any]], repeat: int = 20, samples: bool = False,
    stats_blob: bytes | None = None,
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
    stats = synthetic_stats(snapshot, stats_blob)
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
    rendered ad) of a product arm depends on the Beta draws (numpy's vs random.Random's), hence
    ``with_decisions``; assembled creatives' decisions (the learner's tables, PCG64 uniforms) do not
    (:func:`learning_decisions`).
    """
    keep = ("name", "seed", "targeting", "eligibility") + (("decision", "rendered") if with_decisions else ())
    return [{k: r[k] for k in keep} for r in report["results"]]


def learning_decisions(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The decisions of every request served an assembled or standard creative (the learner's draws and the
    holdout's uniform picks), with their rendered digest: the same on every backend."""
    out = []
    for r in report["results"]:
        d = r["decision"]
        if d["creative_type"] in ("assembled", "standard"):
            out.append({"name": r["name"], "variants": d["variants"], "propensity": d["propensity"],
                        "holdout": d["holdout"], "arm": d["arm"], "rendered": r["rendered"]})
    return out


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "build":
        with open(argv[1], "rb") as c, open(argv[2], "rb") as f:
            blob = build_snapshot(c.read(), f.read())
        with open(argv[3], "wb") as out:
            out.write(blob)
        return 0
    if len(argv) >= 3 and argv[0] == "stats":
        import msgpack
        from dco.snapshot import load_snapshot

        with open(argv[1], "rb") as s:
            obj = synthetic_stats_object(load_snapshot(s.read()))
        with open(argv[2], "wb") as out:
            out.write(msgpack.packb(obj, use_bin_type=True))
        return 0
    if len(argv) >= 3 and argv[0] == "run":
        repeat = int(argv[argv.index("--repeat") + 1]) if "--repeat" in argv else 20
        stats_blob = None
        if "--stats" in argv:
            with open(argv[argv.index("--stats") + 1], "rb") as st:
                stats_blob = st.read()
        if "--minimal" in argv:
            block_optional_dependencies()
        with open(argv[1], "rb") as s, open(argv[2], encoding="utf-8") as r:
            report = run(s.read(), json.load(r), repeat=repeat, samples="--samples" in argv, stats_blob=stats_blob)
        json.dump(report, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
