"""``dco report``: which component wins where, with honest uncertainty, from a stats object.

Data flow::

    stats object (msgpack or JSON, publish-stats' shape; ``dco simulate --stats-out`` writes one)
      ──> component rows  comp:<creative>|<slot>=<variant>[@<dim>=<value>]   (time-bucketed rows ignored)
      ──> per variant, overall and per context value: CTR (clicks / impressions), CVR (conversions / clicks),
          value per impression and, with ``--cpm``, ROAS = value / (impressions x cpm / 1000);
          95 % credible intervals = 2.5/97.5 % quantiles of Beta(1 + successes, 1 + failures);
          probability to be best = share of Monte Carlo draws (``--draws``, fixed seed) in which the variant's
          CTR is the highest of its slot in that context
      ──> combinations (arm:<creative>|<ids>[@region=<r>]): "meaningful" when impressions >= ``--min-impressions``
          (default 100) AND the 95 % interval is narrower than the CTR itself (relative width < 1)
      ──> top combinations per region (by posterior mean among meaningful ones) and the rank each holds in the
          other regions
      ──> lift of optimized over holdout (splits), delta-method interval (:func:`dco_local.evaluate.ratio_lift`)
      ──> report.json-like dict, and with ``--out DIR`` an HTML file with the plots embedded (matplotlib, Agg)

The campaign (``--campaign``) only adds labels: the text or alt of each variant.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

DRAWS = 4000
SEED = 20261123
MIN_IMPRESSIONS = 100


def load_stats(path: str) -> dict[str, Any]:
    """A stats object from a msgpack or JSON file (by content: JSON starts with ``{``)."""
    blob = Path(path).read_bytes()
    if blob.lstrip()[:1] == b"{":
        obj = json.loads(blob)
    else:
        import msgpack

        obj = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: not a stats object")
    return dict(obj)


def beta_summary(successes: Any, trials: Any, rng: Any, draws: int = DRAWS) -> dict[str, Any]:
    """Posterior mean, 95 % credible interval and probability-to-be-best of several Beta(1 + s, 1 + n - s)."""
    s = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    a = 1.0 + s
    b = 1.0 + n - s
    sample = rng.beta(np.broadcast_to(a, (draws, a.size)), np.broadcast_to(b, (draws, b.size)))
    low, high = np.quantile(sample, [0.025, 0.975], axis=0)
    best = np.bincount(sample.argmax(axis=1), minlength=a.size) / draws
    return {"mean": (a / (a + b)).tolist(), "low": low.tolist(), "high": high.tolist(), "p_best": best.tolist()}


def _labels(campaign_path: str | None) -> dict[tuple[str, str, str], str]:
    if not campaign_path:
        return {}
    from dco.config import parse_config_text

    data = parse_config_text(Path(campaign_path).read_bytes())
    out = {}
    for creative in data.get("creatives", []):
        for slot, variants in (creative.get("slots") or {}).items():
            for v in variants:
                out[(creative["id"], slot, v["id"])] = str(v.get("text") or v.get("alt") or v.get("url") or "")
    return out


def _parse_component(key: str) -> tuple[str, str, str, str | None] | None:
    """``creative|slot=variant[@dim=value]`` -> (creative, slot, variant, "dim=value" or None)."""
    if "#" in key:
        return None
    head, _, ctx = key.partition("@")
    creative, sep, rest = head.partition("|")
    slot, sep2, variant = rest.partition("=")
    if not sep or not sep2:
        return None
    return creative, slot, variant, ctx or None


def build_report(
    obj: Mapping[str, Any],
    *,
    labels: Mapping[tuple[str, str, str], str] | None = None,
    min_impressions: int = MIN_IMPRESSIONS,
    draws: int = DRAWS,
    cpm: float | None = None,
    top: int = 5,
) -> dict[str, Any]:
    """Every figure of the report as plain data (the HTML and ``--json`` both come from here)."""
    from dco_local.evaluate import ratio_lift

    labels = labels or {}
    rng = np.random.default_rng(SEED)
    # (creative, slot, context) -> variant -> row
    groups: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(dict)
    for key, row in (obj.get("components") or {}).items():
        parsed = _parse_component(key)
        if parsed is None:
            continue
        creative, slot, variant, ctx = parsed
        groups[(creative, slot, ctx or "all")][variant] = [float(x) for x in row]
    components = []
    for (creative, slot, ctx), rows in sorted(groups.items()):
        names = sorted(rows)
        imps = [rows[v][0] for v in names]
        clicks = [min(rows[v][1], rows[v][0]) for v in names]
        convs = [rows[v][2] for v in names]
        values = [rows[v][3] for v in names]
        ctr = beta_summary(clicks, imps, rng, draws)
        cvr = beta_summary([min(c, k) for c, k in zip(convs, clicks, strict=True)], clicks, rng, draws)
        variants = []
        for i, v in enumerate(names):
            spend = imps[i] * cpm / 1000.0 if cpm else None
            variants.append(
                {
                    "variant": v,
                    "label": labels.get((creative, slot, v), ""),
                    "impressions": int(imps[i]),
                    "clicks": int(clicks[i]),
                    "conversions": int(convs[i]),
                    "value": values[i],
                    "ctr": clicks[i] / imps[i] if imps[i] else None,
                    "ctr_mean": ctr["mean"][i],
                    "ctr_low": ctr["low"][i],
                    "ctr_high": ctr["high"][i],
                    "p_best": ctr["p_best"][i],
                    "cvr": convs[i] / clicks[i] if clicks[i] else None,
                    "cvr_low": cvr["low"][i],
                    "cvr_high": cvr["high"][i],
                    "value_per_mille": 1000.0 * values[i] / imps[i] if imps[i] else None,
                    "roas": values[i] / spend if spend else None,
                }
            )
        variants.sort(key=lambda r: -r["ctr_mean"])
        components.append({"creative": creative, "slot": slot, "context": ctx, "variants": variants})

    # combinations
    overall: dict[str, list[float]] = {}
    by_region: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for key, row in (obj.get("arms") or {}).items():
        arm, _, ctx = key.partition("@")
        if "|" not in arm:
            continue
        if ctx:
            dim, _, value = ctx.partition("=")
            if dim == "region" and "@" not in value and "#" not in value:  # not a device cell or time bucket
                by_region[value][arm] = [float(x) for x in row]
        else:
            overall[arm] = [float(x) for x in row]

    def meaningful(rows: Mapping[str, list[float]]) -> list[tuple[str, float, float, float, int]]:
        out = []
        for arm, row in rows.items():
            n, c = row[0], min(row[1], row[0])
            if n < min_impressions:
                continue
            a, b = 1.0 + c, 1.0 + n - c
            mean = a / (a + b)
            sd = (a * b / ((a + b) ** 2 * (a + b + 1))) ** 0.5
            low, high = max(0.0, mean - 1.96 * sd), mean + 1.96 * sd
            if (high - low) < mean:
                out.append((arm, mean, low, high, int(n)))
        out.sort(key=lambda t: (-t[1], t[0]))
        return out

    all_meaningful = meaningful(overall)
    ranked = {region: meaningful(rows) for region, rows in sorted(by_region.items())}
    rank_of = {region: {t[0]: i + 1 for i, t in enumerate(rows)} for region, rows in ranked.items()}
    top_by_region = {}
    for region, rows in ranked.items():
        entries = []
        for arm, mean, low, high, n in rows[:top]:
            elsewhere = {
                other: rank_of[other].get(arm) for other in ranked if other != region
            }
            entries.append(
                {"combination": arm, "ctr_mean": mean, "ctr_low": low, "ctr_high": high, "impressions": n,
                 "rank_elsewhere": elsewhere}
            )
        top_by_region[region] = entries
    splits = obj.get("splits") or {}
    hold = splits.get("holdout", [0, 0, 0, 0.0])
    opt = splits.get("optimized", [0, 0, 0, 0.0])
    lift = ratio_lift(int(opt[1]), int(opt[0]), int(hold[1]), int(hold[0]))
    return {
        "campaign": obj.get("campaign"),
        "updated_at": obj.get("updated_at"),
        "settings": {"min_impressions": min_impressions, "draws": draws, "seed": SEED, "cpm": cpm,
                     "meaningful": "impressions >= min_impressions and 95% interval width < CTR"},
        "components": components,
        "combinations": {
            "distinct": len(overall),
            "meaningful": len(all_meaningful),
            "meaningful_by_region": {r: len(rows) for r, rows in ranked.items()},
            "top": [{"combination": a, "ctr_mean": m, "impressions": n} for a, m, _, _, n in all_meaningful[:top]],
        },
        "top_by_region": top_by_region,
        "splits": {"holdout": hold, "optimized": opt},
        "lift": lift,
    }


# ------------------------------------------------------------------------------------------------ HTML


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for comp in report["components"]:
        if comp["context"] != "all":
            continue
        rows = comp["variants"][:20]
        fig, ax = plt.subplots(figsize=(7, 0.28 * len(rows) + 1))
        y = np.arange(len(rows))[::-1]
        means = np.array([r["ctr_mean"] for r in rows])
        err = np.array([[r["ctr_mean"] - r["ctr_low"] for r in rows], [r["ctr_high"] - r["ctr_mean"] for r in rows]])
        ax.barh(y, means, xerr=err, color="#4878a8", ecolor="#333", capsize=2)
        ax.set_yticks(y, [r["variant"] for r in rows])
        ax.set_xlabel("CTR (posterior mean, 95% credible interval)")
        ax.set_title(f"{comp['creative']} / {comp['slot']}: top {len(rows)} overall")
        out.append((f"{comp['slot']} overall", _png(fig)))
    # slot x region heatmaps
    by_slot: dict[tuple[str, str], dict[str, dict[str, float]]] = defaultdict(dict)
    for comp in report["components"]:
        if comp["context"].startswith("region="):
            region = comp["context"].split("=", 1)[1]
            by_slot[(comp["creative"], comp["slot"])][region] = {r["variant"]: r["ctr_mean"] for r in comp["variants"]}
    for (creative, slot), regions in sorted(by_slot.items()):
        names = sorted({v for r in regions.values() for v in r})
        cols = sorted(regions)
        grid = np.array([[regions[c].get(v, np.nan) for c in cols] for v in names])
        fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 2, 0.22 * len(names) + 1.5))
        im = ax.imshow(grid, aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(cols)), cols, rotation=30)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(f"{creative} / {slot}: CTR by region")
        fig.colorbar(im, ax=ax)
        out.append((f"{slot} by region", _png(fig)))
    lift = report.get("lift")
    if lift:
        fig, ax = plt.subplots(figsize=(5, 2.5))
        ax.bar(["holdout", "optimized"], [lift["holdout_ctr"], lift["optimized_ctr"]], color=["#999", "#4878a8"])
        ax.set_ylabel("CTR")
        ax.set_title(f"lift {lift['lift']:+.1%} (95% CI {lift['ci_low']:+.1%} .. {lift['ci_high']:+.1%})")
        out.append(("lift vs holdout", _png(fig)))
    return out


def render_html(report: Mapping[str, Any]) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>DCO report</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}"
        "td.l{text-align:left}</style></head><body>",
        f"<h1>DCO report: {esc(str(report.get('campaign')))}</h1>",
    ]
    lift = report.get("lift")
    if lift:
        parts.append(
            f"<p><b>Lift vs holdout</b>: {lift['lift']:+.2%} (95% CI {lift['ci_low']:+.2%} .. {lift['ci_high']:+.2%};"
            f" optimized CTR {lift['optimized_ctr']:.4%}, holdout CTR {lift['holdout_ctr']:.4%})</p>"
        )
    combos = report["combinations"]
    parts.append(
        f"<p><b>Combinations</b>: {combos['distinct']:,} served, {combos['meaningful']:,} with statistically"
        f" meaningful impressions ({esc(report['settings']['meaningful'])}).</p>"
    )
    for title, png in _plots(report):
        parts.append(f"<h3>{esc(title)}</h3><img src='data:image/png;base64,{png}'>")
    parts.append("<h2>Top combinations per region, and their rank elsewhere</h2>")
    for region, entries in report["top_by_region"].items():
        parts.append(f"<h3>{esc(region)}</h3><table><tr><th>combination</th><th>CTR</th><th>95% interval</th>"
                     "<th>impressions</th><th>rank in other regions</th></tr>")
        for e in entries:
            elsewhere = ", ".join(f"{esc(r)}: {k if k else '-'}" for r, k in e["rank_elsewhere"].items())
            parts.append(
                f"<tr><td class=l>{esc(e['combination'])}</td><td>{e['ctr_mean']:.3%}</td>"
                f"<td>{e['ctr_low']:.3%} .. {e['ctr_high']:.3%}</td><td>{e['impressions']:,}</td>"
                f"<td class=l>{elsewhere}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Components</h2>")
    for comp in report["components"]:
        parts.append(
            f"<h3>{esc(comp['creative'])} / {esc(comp['slot'])} / {esc(comp['context'])}</h3><table><tr>"
            "<th>variant</th><th>label</th><th>impressions</th><th>clicks</th><th>CTR</th><th>95% interval</th>"
            "<th>P(best)</th><th>CVR</th><th>value / 1000 imp</th><th>ROAS</th></tr>"
        )
        for r in comp["variants"]:
            cvr = "" if r["cvr"] is None else f"{r['cvr']:.2%}"
            vpm = "" if r["value_per_mille"] is None else f"{r['value_per_mille']:.2f}"
            roas = "" if r["roas"] is None else f"{r['roas']:.2f}"
            parts.append(
                f"<tr><td class=l>{esc(r['variant'])}</td><td class=l>{esc(r['label'])}</td>"
                f"<td>{r['impressions']:,}</td><td>{r['clicks']:,}</td><td>{r['ctr_mean']:.3%}</td>"
                f"<td>{r['ctr_low']:.3%} .. {r['ctr_high']:.3%}</td><td>{r['p_best']:.1%}</td><td>{cvr}</td>"
                f"<td>{vpm}</td><td>{roas}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------ CLI


def cmd_report(args: argparse.Namespace) -> int:
    try:
        obj = load_stats(args.stats)
        report = build_report(
            obj, labels=_labels(args.campaign), min_impressions=args.min_impressions, draws=args.draws, cpm=args.cpm
        )
    except (OSError, ValueError) as exc:
        print(f"dco: {exc}", file=sys.stderr)
        return 2
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.html").write_text(render_html(report))
        (out / "report.json").write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps(report))
        return 0
    combos = report["combinations"]
    print(f"campaign {report['campaign']}: {combos['distinct']:,} combinations served, {combos['meaningful']:,} meaningful")
    lift = report["lift"]
    if lift:
        print(f"lift vs holdout {lift['lift']:+.2%} (95% CI {lift['ci_low']:+.2%} .. {lift['ci_high']:+.2%})")
    for comp in report["components"]:
        if comp["context"] == "all":
            best = comp["variants"][0]
            print(f"  {comp['creative']}/{comp['slot']}: best {best['variant']} CTR {best['ctr_mean']:.3%}"
                  f" [{best['ctr_low']:.3%}, {best['ctr_high']:.3%}] P(best) {best['p_best']:.0%}")
    for region, entries in report["top_by_region"].items():
        if entries:
            e = entries[0]
            print(f"  top in {region}: {e['combination']} {e['ctr_mean']:.3%}; elsewhere {e['rank_elsewhere']}")
    if args.out:
        print(f"wrote {Path(args.out) / 'report.html'}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="component and combination performance with credible intervals (HTML)")
    p.add_argument("--stats", required=True, help="stats object (msgpack or JSON)")
    p.add_argument("--campaign", help="campaign config, for variant labels")
    p.add_argument("--out", help="directory for report.html and report.json")
    p.add_argument("--min-impressions", type=int, default=MIN_IMPRESSIONS)
    p.add_argument("--draws", type=int, default=DRAWS, help="Monte Carlo draws per context (fixed seed)")
    p.add_argument("--cpm", type=float, default=None, help="media cost per 1000 impressions, for ROAS")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_report)
