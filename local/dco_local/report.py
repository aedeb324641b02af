"""``dco report``: which component wins where, with honest uncertainty, from a stats object.

Data flow::

    stats object (msgpack or JSON, publish-stats' shape; ``dco simulate --stats-out`` writes one)
      ──> dco.stats.validate_stats (a bad object is refused, the problem named; ``dco report`` exits 2)
      ──> contexts rows  <creative>|<v1>.<v2>...@<dim>=<value>...   (dco.learning.contract; the ``#d<epoch>``
          rows of discounted sums are not counts and are skipped)
      ──> slot names per position: the creative's slots in campaign config order (``--campaign``), or
          ``slot1``, ``slot2``, ... (:func:`slot_names`)
      ──> per component variant, overall and per value of each learning dimension, the exact marginal sums of
          the rows (:func:`component_counts`; the numbers the version 1 ``comp:`` counters had for steered
          traffic): CTR (clicks / impressions), CVR (conversions / clicks), value per impression and, with
          ``--cpm``, ROAS = value / (impressions x cpm / 1000); 95 % credible intervals = 2.5/97.5 % quantiles
          of Beta(1 + successes, 1 + failures); probability to be best = share of Monte Carlo draws
          (``--draws``, fixed seed) in which the variant's CTR is the highest of its slot in that context
      ──> what the model says (``models``, dco.learning.model), per objective: the variant's effect in logit
          from the all-evidence memory (``memories[0]``), posterior mean and mean +- 1.96 sd; in a context
          value, main effect + the context x component interaction (:func:`variant_effect`); the weight of
          each memory (:func:`memory_weights`)
      ──> combinations: overall from ``arms`` (every served decision), per context value from ``contexts``
          (steered traffic); "meaningful" when impressions >= ``--min-impressions`` (default 100) AND the 95 %
          interval is narrower than the CTR itself (relative width < 1); the top ones per value of each
          dimension and the rank each holds at the dimension's other values
      ──> lift of optimized over holdout (splits), delta-method interval (:func:`dco_local.evaluate.ratio_lift`)
      ──> report.json-like dict, and with ``--out DIR`` an HTML file with the plots embedded (matplotlib, Agg)

The campaign (``--campaign``) adds slot names and labels (the text or alt of each variant). A version 1 object
(``components``, before the learner) validates but has no ``contexts``: its report has combinations and lift,
no components, and says so in ``notes``.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ALL",
    "Campaign",
    "beta_summary",
    "build_report",
    "campaign_from_config",
    "cmd_report",
    "component_counts",
    "load_campaign",
    "load_stats",
    "memory_weights",
    "render_html",
    "slot_names",
    "variant_effect",
]

DRAWS = 4000
SEED = 20261123
MIN_IMPRESSIONS = 100
Z95 = 1.96  # effect intervals: mean +- Z95 * sqrt(var) (the model's posterior is normal per effect)
ALL = "all"  # the context label of the overall figures


def load_stats(path: str) -> dict[str, Any]:
    """A stats object from a msgpack or JSON file (by content: JSON starts with ``{``), not yet validated."""
    blob = Path(path).read_bytes()
    if blob.lstrip()[:1] == b"{":
        obj = json.loads(blob)
    else:
        import msgpack

        try:
            obj = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise ValueError(f"neither JSON nor msgpack ({exc})") from None
    if not isinstance(obj, Mapping):
        raise ValueError("not a stats object (not a mapping)")
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


# ------------------------------------------------------------------------------------------------ campaign


@dataclass(frozen=True)
class Campaign:
    """What the report takes from a campaign config: per creative its slots in config order with their variant
    ids (``slots``), and a label per ``(creative, slot, variant)`` (``labels``)."""

    slots: Mapping[str, tuple[tuple[str, frozenset[str]], ...]] = field(default_factory=dict)
    labels: Mapping[tuple[str, str, str], str] = field(default_factory=dict)


def campaign_from_config(data: Any) -> Campaign:
    """The :class:`Campaign` of a parsed config (``dco.config.parse_config_text``); anything that is not a
    creative with slots is ignored.

    >>> c = campaign_from_config({"creatives": [{"id": "cr", "slots": {"headline": [{"id": "h1", "text": "Hi"}]}}]})
    >>> c.slots["cr"][0][0], c.labels[("cr", "headline", "h1")]
    ('headline', 'Hi')
    """
    slots: dict[str, tuple[tuple[str, frozenset[str]], ...]] = {}
    labels: dict[tuple[str, str, str], str] = {}
    creatives = data.get("creatives") if isinstance(data, Mapping) else None
    for creative in creatives if isinstance(creatives, list) else []:
        if not isinstance(creative, Mapping) or not isinstance(creative.get("slots"), Mapping):
            continue
        cid = str(creative.get("id"))
        order = []
        for slot, variants in creative["slots"].items():
            ids = []
            for v in variants if isinstance(variants, list) else []:
                if isinstance(v, Mapping) and "id" in v:
                    ids.append(str(v["id"]))
                    labels[(cid, str(slot), str(v["id"]))] = str(v.get("text") or v.get("alt") or v.get("url") or "")
            order.append((str(slot), frozenset(ids)))
        slots[cid] = tuple(order)
    return Campaign(slots=slots, labels=labels)


def load_campaign(path: str | Path | None) -> Campaign | None:
    """The :class:`Campaign` of a config file (YAML or JSON); None without a path. ``ConfigError`` or
    ``OSError`` for a file that cannot be read or parsed."""
    if not path:
        return None
    from dco.config import parse_config_text

    return campaign_from_config(parse_config_text(Path(path).read_bytes()))


def slot_names(creative: str, ids_by_position: Sequence[Iterable[str]], campaign: Campaign | None) -> list[str]:
    """The name of each slot position of a creative's combinations (positions follow the creative's slot order
    in the campaign config).

    Position ``p`` takes the ``p``-th slot of the config when every id seen there is one of that slot's
    variants; otherwise the one slot of the config holding every id seen there (a config whose slots were
    reordered or dropped, as ``dco simulate`` does with a scenario's slots); otherwise, and without a campaign,
    ``slot<p + 1>``.

    >>> slot_names("cr", [{"a"}, {"h1"}], None)
    ['slot1', 'slot2']
    >>> camp = Campaign(slots={"cr": (("headline", frozenset({"h1"})), ("image", frozenset({"a", "b"})))})
    >>> slot_names("cr", [{"a"}, {"h1"}], camp)
    ['image', 'headline']
    """
    config = list((campaign.slots if campaign else {}).get(creative, ()))
    names: list[str] = []
    for p, seen in enumerate(ids_by_position):
        ids = set(seen)
        name = None
        if p < len(config) and ids <= config[p][1]:
            name = config[p][0]
        else:
            fits = [slot for slot, known in config if ids <= known]
            if len(fits) == 1:
                name = fits[0]
        names.append(name if name is not None and name not in names else f"slot{p + 1}")
    return names


# ------------------------------------------------------------------------------------------------ counts


def _add(into: list[float], row: Sequence[Any]) -> None:
    for i in range(4):
        into[i] += float(row[i])


@dataclass
class _Scan:
    """One pass over the ``contexts`` rows: per (creative, width) the ids seen at each position; the sums per
    (creative, width, position, dimension, escaped value, variant) (dimension ``""``: every row) and per
    (combination, dimension, escaped value); the keys that are not context keys."""

    ids: dict[tuple[str, int], list[set[str]]] = field(default_factory=dict)
    cells: dict[tuple[str, int, int, str, str, str], list[float]] = field(default_factory=dict)
    combos: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _scan(contexts: Mapping[str, Sequence[Any]]) -> _Scan:
    from dco.learning.contract import DECAY_SUFFIX, parse_context_key

    out = _Scan()
    zero = [0.0, 0.0, 0.0, 0.0]
    for key, row in contexts.items():
        if DECAY_SUFFIX in key:  # discounted sums of an epoch: weights, not counts
            continue
        parsed = parse_context_key(key)
        if parsed is None:
            out.skipped.append(key)
            continue
        creative, combo, context = parsed
        width = len(combo)
        seen = out.ids.setdefault((creative, width), [set() for _ in range(width)])
        arm = key.partition("@")[0]
        for dim, value in context:
            _add(out.combos.setdefault((arm, dim, value), list(zero)), row)
        for where in (("", ""), *context):
            for p, variant in enumerate(combo):
                _add(out.cells.setdefault((creative, width, p, *where, variant), list(zero)), row)
        for p, variant in enumerate(combo):
            seen[p].add(variant)
    return out


def component_counts(
    contexts: Mapping[str, Sequence[Any]], campaign: Campaign | None = None
) -> dict[tuple[str, str, str, str], dict[str, list[float]]]:
    """``(creative, slot, dimension, value) -> variant -> [impressions, clicks, conversions, value]``: the exact
    marginal sums of the ``contexts`` rows (dimension and value ``""``: every row; values unescaped). A pure
    function of the section; the report's counts.

    >>> rows = {"cr|a.h1@region=pnw": [10, 2, 0, 0.0], "cr|a.h2": [5, 1, 0, 0.0], "cr|a.h2#d9": [9, 9, 9, 0]}
    >>> component_counts(rows)[("cr", "slot1", "", "")]
    {'a': [15.0, 3.0, 0.0, 0.0]}
    >>> component_counts(rows)[("cr", "slot2", "region", "pnw")]
    {'h1': [10.0, 2.0, 0.0, 0.0]}
    """
    return _counts(_scan(contexts), campaign)[0]


def _counts(
    scan: _Scan, campaign: Campaign | None
) -> tuple[dict[tuple[str, str, str, str], dict[str, list[float]]], dict[tuple[str, int], list[str]]]:
    from dco.learning.contract import unescape_value

    names = {(cr, width): slot_names(cr, seen, campaign) for (cr, width), seen in scan.ids.items()}
    out: dict[tuple[str, str, str, str], dict[str, list[float]]] = defaultdict(dict)
    for (creative, width, p, dim, value, variant), row in scan.cells.items():
        slot = names[(creative, width)][p]
        into = out[(creative, slot, dim, unescape_value(value))].setdefault(variant, [0.0, 0.0, 0.0, 0.0])
        _add(into, row)
    return dict(out), names


# ------------------------------------------------------------------------------------------------ model


def memory_weights(model: Mapping[str, Any]) -> list[float]:
    """The weight of each memory of a model: ``log_weights`` normalized (equal weights without them).

    >>> [round(w, 3) for w in memory_weights({"memories": [{}, {}], "log_weights": [0.0, math.log(3.0)]})]
    [0.25, 0.75]
    """
    n = len(model.get("memories") or [])
    lw = [float(x) for x in model.get("log_weights") or []]
    if not n or len(lw) != n:
        return [1.0 / n] * n if n else []
    top = max(lw)
    w = [math.exp(x - top) for x in lw]
    return [x / sum(w) for x in w]


def _normal(mean: float, var: float, seen: bool) -> dict[str, Any]:
    sd = math.sqrt(max(var, 0.0))
    return {"mean": mean, "var": var, "low": mean - Z95 * sd, "high": mean + Z95 * sd, "seen": seen}


def _group_effect(memory: Mapping[str, Any], name: str, index: int | None) -> tuple[float, float, bool] | None:
    """``(mean, var, seen)`` of one effect of a memory; an effect the model does not hold (``index`` None: a
    new variant or value) has its group's prior (mean 0, ``prior_var``); None when the group is absent."""
    from dco.learning.model import prior_var

    group = (memory.get("groups") or {}).get(name)
    if not isinstance(group, Mapping):
        return None
    if index is not None and index < len(group.get("mean", ())) and index < len(group.get("var", ())):
        return float(group["mean"][index]), float(group["var"][index]), True
    grid, mix = memory.get("grid") or (), group.get("mix") or ()
    if len(grid) != len(mix):
        return None
    return 0.0, prior_var(mix, grid), False


def variant_effect(
    model: Mapping[str, Any], position: int, variant: str, dimension: str = "", value: str = "", memory: int = 0
) -> dict[str, Any] | None:
    """What a model (``stats["models"][creative][objective]``) says about one variant, in logit: its main effect
    ``main:<position>``, and with ``dimension``/``value`` (escaped, as in the keys) the effect there, main +
    ``ctx:<dim index>:<position>`` (variances add: the fit's posterior factorizes), with the interaction alone
    under ``"interaction"``. Each figure is ``{mean, var, low, high, seen}`` with ``low``/``high`` =
    mean -+ 1.96 sd; ``seen`` false for a variant or value the model never met (its group's prior). None when
    the model lacks the position or the group.

    >>> model = {"variants": [["a", "b"]], "dims": [], "values": [], "memories": [{"groups": {"main:0": {
    ...     "mean": [0.5, -0.1], "var": [0.01, 0.04], "mix": [1.0]}}, "grid": [0.0]}]}
    >>> e = variant_effect(model, 0, "a")
    >>> e["mean"], round(e["low"], 3), round(e["high"], 3), e["seen"]
    (0.5, 0.304, 0.696, True)
    """
    variants = model.get("variants") or []
    memories = model.get("memories") or []
    if position >= len(variants) or memory >= len(memories):
        return None
    mem = memories[memory]
    ids = list(variants[position])
    j = ids.index(variant) if variant in ids else None
    main = _group_effect(mem, f"main:{position}", j)
    if main is None:
        return None
    if not dimension:
        return _normal(*main)
    dims = list(model.get("dims") or [])
    if dimension not in dims:
        return None  # the model does not learn along this dimension
    d = dims.index(dimension)
    values = list((model.get("values") or [])[d])
    x = values.index(value) if value in values else None
    ctx = _group_effect(mem, f"ctx:{d}:{position}", None if x is None or j is None else x * len(ids) + j)
    if ctx is None:
        return None
    out = _normal(main[0] + ctx[0], main[1] + ctx[1], main[2] and ctx[2])
    out["interaction"] = _normal(*ctx)
    return out


def _model_summary(model: Mapping[str, Any], slots: Sequence[str]) -> dict[str, Any]:
    from dco.learning.contract import unescape_value

    weights = memory_weights(model)
    return {
        "fitted_at": model.get("fitted_at"),
        "impressions": model.get("impressions"),
        "slots": list(slots),
        "dims": list(model.get("dims") or []),
        "values": [[unescape_value(v) for v in vals] for vals in model.get("values") or []],
        "memories": [
            {"half_life_s": mem.get("half_life_s"), "weight": weights[m], "intercept": mem.get("intercept")}
            for m, mem in enumerate(model.get("memories") or [])
        ],
    }


# ------------------------------------------------------------------------------------------------ the report


def _meaningful(
    rows: Mapping[str, Sequence[float]], min_impressions: int
) -> list[tuple[str, float, float, float, int]]:
    """``(combination, CTR mean, low, high, impressions)`` of the meaningful combinations, best first (normal
    approximation of Beta(1 + c, 1 + n - c))."""
    out = []
    for arm, row in rows.items():
        n, c = row[0], min(row[1], row[0])
        if n < min_impressions:
            continue
        a, b = 1.0 + c, 1.0 + n - c
        mean = a / (a + b)
        sd = (a * b / ((a + b) ** 2 * (a + b + 1))) ** 0.5
        low, high = max(0.0, mean - Z95 * sd), mean + Z95 * sd
        if (high - low) < mean:
            out.append((arm, mean, low, high, int(n)))
    out.sort(key=lambda t: (-t[1], t[0]))
    return out


def _named(arm: str, names: Mapping[tuple[str, int], list[str]]) -> str:
    """``image=img01 headline=h01 ...`` for a combination arm (empty when its layout is unknown)."""
    creative, _, combo = arm.partition("|")
    ids = combo.split(".")
    slots = names.get((creative, len(ids)))
    return " ".join(f"{s}={v}" for s, v in zip(slots, ids, strict=True)) if slots else ""


def build_report(
    obj: Mapping[str, Any],
    *,
    campaign: Campaign | None = None,
    min_impressions: int = MIN_IMPRESSIONS,
    draws: int = DRAWS,
    cpm: float | None = None,
    top: int = 5,
) -> dict[str, Any]:
    """Every figure of the report as plain data (the HTML and ``--json`` both come from here). ``obj`` is
    validated first (``ValueError`` naming the problem)."""
    from dco.learning.contract import unescape_value
    from dco.stats import validate_stats

    from dco_local.evaluate import ratio_lift

    version = obj.get("version") if isinstance(obj, Mapping) else None
    stats = validate_stats(obj)
    labels = campaign.labels if campaign else {}
    notes: list[str] = []
    if version == 1:
        notes.append("version 1 stats object: its components are not read (no contexts section); "
                     "combinations and lift only")
    scan = _scan(stats["contexts"])
    if scan.skipped:
        notes.append(f"{len(scan.skipped)} contexts rows are not context keys and were skipped "
                     f"(first: {scan.skipped[0]!r})")
    counts, names = _counts(scan, campaign)
    models = stats.get("models") or {}
    # per creative and objective: its model's slot name -> position (the names of the rows of the model's width)
    model_slots: dict[tuple[str, str], dict[str, int]] = {}
    for creative, per_objective in models.items():
        for objective, model in per_objective.items():
            width = len(model.get("variants") or [])
            if (creative, width) in names:
                model_slots[(creative, objective)] = {s: p for p, s in enumerate(names[(creative, width)])}
    position_of = {(cr, s): p for (cr, _), slots in names.items() for p, s in enumerate(slots)}
    escaped_value = {(dim, unescape_value(v)): v for (_, _, _, dim, v, _) in scan.cells}

    rng = np.random.default_rng(SEED)
    components = []
    for (creative, slot, dim, value), rows in sorted(
        counts.items(), key=lambda kv: (kv[0][0], position_of.get(kv[0][:2], 0), kv[0][1], kv[0][2], kv[0][3])
    ):
        ids = sorted(rows)
        imps = [rows[v][0] for v in ids]
        clicks = [min(rows[v][1], rows[v][0]) for v in ids]
        convs = [rows[v][2] for v in ids]
        values = [rows[v][3] for v in ids]
        ctr = beta_summary(clicks, imps, rng, draws)
        cvr = beta_summary([min(c, k) for c, k in zip(convs, clicks, strict=True)], clicks, rng, draws)
        variants = []
        for i, v in enumerate(ids):
            spend = imps[i] * cpm / 1000.0 if cpm else None
            effects = {}
            for objective, model in (models.get(creative) or {}).items():
                position = model_slots.get((creative, objective), {}).get(slot)
                found = None if position is None else variant_effect(
                    model, position, v, dim, escaped_value.get((dim, value), value))
                if found is not None:
                    effects[objective] = found
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
                    "effects": effects,
                }
            )
        variants.sort(key=lambda r: (-r["ctr_mean"], r["variant"]))
        components.append({
            "creative": creative, "slot": slot, "position": position_of.get((creative, slot)),
            "context": f"{dim}={value}" if dim else ALL, "dimension": dim or None, "value": value if dim else None,
            "variants": variants,
        })

    # combinations: overall from arms (every served decision), per context value from contexts (steered)
    overall = {k: [float(x) for x in row] for k, row in stats["arms"].items() if "|" in k and "@" not in k}
    by_context: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    for (arm, dim, value), row in scan.combos.items():
        if dim:
            by_context[dim][unescape_value(value)][arm] = row
    all_meaningful = _meaningful(overall, min_impressions)
    top_by_context: dict[str, dict[str, list[dict[str, Any]]]] = {}
    meaningful_by_context: dict[str, dict[str, int]] = {}
    for dim in sorted(by_context):
        ranked = {value: _meaningful(rows, min_impressions) for value, rows in sorted(by_context[dim].items())}
        rank_of = {value: {t[0]: i + 1 for i, t in enumerate(rows)} for value, rows in ranked.items()}
        meaningful_by_context[dim] = {value: len(rows) for value, rows in ranked.items()}
        top_by_context[dim] = {
            value: [
                {"combination": arm, "slots": _named(arm, names), "ctr_mean": mean, "ctr_low": low,
                 "ctr_high": high, "impressions": n,
                 "rank_elsewhere": {other: rank_of[other].get(arm) for other in ranked if other != value}}
                for arm, mean, low, high, n in rows[:top]
            ]
            for value, rows in ranked.items()
        }
    model_figures = {}
    for creative, per_objective in sorted(models.items()):
        width = len(next(iter(per_objective.values())).get("variants") or []) if per_objective else 0
        slots = names.get((creative, width)) or [f"slot{p + 1}" for p in range(width)]
        model_figures[creative] = {obj_: _model_summary(m, slots) for obj_, m in per_objective.items()}
    splits = stats.get("splits") or {}
    hold = splits.get("holdout", [0, 0, 0, 0.0])
    opt = splits.get("optimized", [0, 0, 0, 0.0])
    lift = ratio_lift(int(opt[1]), int(opt[0]), int(hold[1]), int(hold[0]))
    return {
        "campaign": stats.get("campaign"),
        "updated_at": stats.get("updated_at"),
        "settings": {"min_impressions": min_impressions, "draws": draws, "seed": SEED, "cpm": cpm,
                     "meaningful": "impressions >= min_impressions and 95% interval width < CTR",
                     "effects": "logit, all-evidence memory (memories[0]); interval mean +- 1.96 sd"},
        "notes": notes,
        "components": components,
        "models": model_figures,
        "combinations": {
            "distinct": len(overall),
            "meaningful": len(all_meaningful),
            "meaningful_by_context": meaningful_by_context,
            "top": [{"combination": a, "slots": _named(a, names), "ctr_mean": m, "impressions": n}
                    for a, m, _, _, n in all_meaningful[:top]],
        },
        "top_by_context": top_by_context,
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
    """``[(title, base64 PNG)]``. Ids and values from the stats are drawn as plain text (no mathtext)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"text.parse_math": False}):
        return _draw(report, plt)


def _draw(report: Mapping[str, Any], plt: Any) -> list[tuple[str, str]]:
    out = []
    for comp in report["components"]:
        if comp["context"] != ALL:
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
        out.append((f"{comp['creative']} / {comp['slot']}: CTR overall", _png(fig)))
        effects = [(r["variant"], r["effects"]["click"]) for r in comp["variants"] if "click" in r["effects"]]
        if effects:
            effects.sort(key=lambda t: -t[1]["mean"])
            effects = effects[:20]
            fig, ax = plt.subplots(figsize=(7, 0.28 * len(effects) + 1))
            y = np.arange(len(effects))[::-1]
            means = np.array([e["mean"] for _, e in effects])
            err = np.array([[e["mean"] - e["low"] for _, e in effects], [e["high"] - e["mean"] for _, e in effects]])
            ax.errorbar(means, y, xerr=err, fmt="o", color="#b05a2a", ecolor="#333", capsize=2)
            ax.axvline(0, color="black", lw=0.8)
            ax.set_yticks(y, [v for v, _ in effects])
            ax.set_xlabel("click effect, logit (posterior mean, mean +- 1.96 sd; all-evidence memory)")
            ax.set_title(f"{comp['creative']} / {comp['slot']}: model effects, top {len(effects)}")
            out.append((f"{comp['creative']} / {comp['slot']}: model effects", _png(fig)))
    # slot x value heatmaps, one per learning dimension: the click model's effect there (main + interaction) when
    # there is a model, else the CTR
    by_slot: dict[tuple[str, int, str, str], dict[str, dict[str, float]]] = defaultdict(dict)
    modelled: set[tuple[str, int, str, str]] = set()
    for comp in report["components"]:
        if comp["dimension"]:
            key = (comp["creative"], comp["position"] or 0, comp["slot"], comp["dimension"])
            effects = {r["variant"]: r["effects"]["click"]["mean"] for r in comp["variants"] if "click" in r["effects"]}
            if effects:
                modelled.add(key)
            by_slot[key][comp["value"]] = effects or {r["variant"]: r["ctr_mean"] for r in comp["variants"]}
    for key, columns in sorted(by_slot.items()):
        creative, _, slot, dim = key
        names = sorted({v for r in columns.values() for v in r})
        cols = sorted(columns)
        grid = np.array([[columns[c].get(v, np.nan) for c in cols] for v in names])
        fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 2, 0.22 * len(names) + 1.5))
        ax.set_xticks(range(len(cols)), cols, rotation=30)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        if key in modelled:
            bound = max(0.1, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.1)
            im = ax.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound)
            title = f"{creative} / {slot}: model effect by {dim}"
            fig.colorbar(im, ax=ax, label="logit effect (red = better)")
        else:
            im = ax.imshow(grid, aspect="auto", cmap="viridis")
            title = f"{creative} / {slot}: CTR by {dim}"
            fig.colorbar(im, ax=ax, label="CTR (posterior mean)")
        ax.set_title(title)
        out.append((title, _png(fig)))
    lift = report.get("lift")
    if lift:
        fig, ax = plt.subplots(figsize=(5, 2.5))
        ax.bar(["holdout", "optimized"], [lift["holdout_ctr"], lift["optimized_ctr"]], color=["#999", "#4878a8"])
        ax.set_ylabel("CTR")
        ax.set_title(f"lift {lift['lift']:+.1%} (95% CI {lift['ci_low']:+.1%} .. {lift['ci_high']:+.1%})")
        out.append(("lift vs holdout", _png(fig)))
    return out


def _effect_cells(effect: Mapping[str, Any] | None) -> str:
    if not effect:
        return "<td></td><td></td>"
    unseen = "" if effect["seen"] else " (prior)"
    return f"<td>{effect['mean']:+.3f}{unseen}</td><td>{effect['low']:+.3f} .. {effect['high']:+.3f}</td>"


def _memory_name(half_life_s: Any) -> str:
    return "all evidence" if not half_life_s else f"half-life {float(half_life_s) / 3600:g} h"


def _time(ts: Any) -> str:
    import datetime

    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return ""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one HTML page, plots embedded; every string from the stats or the campaign is escaped."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>DCO report</title>",
        "<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}"
        "td.l{text-align:left}.note{color:#8a5300}</style></head><body>",
        f"<h1>DCO report: {esc(str(report.get('campaign')))}</h1>",
    ]
    for note in report.get("notes") or []:
        parts.append(f"<p class=note>{esc(note)}</p>")
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
    if report.get("models"):
        parts.append("<h2>Models</h2><p>The learner's fitted model per creative and objective: the weight of each "
                     "memory (all evidence; time-discounted evidence with the given half-life) in decisions. "
                     f"Effects below: {esc(report['settings']['effects'])}.</p><table><tr><th>creative</th>"
                     "<th>objective</th><th>fitted at</th><th>impressions</th><th>slots</th><th>dimensions</th>"
                     "<th>memories: half-life, weight</th></tr>")
        for creative, per_objective in report["models"].items():
            for objective, m in per_objective.items():
                memories = "; ".join(f"{_memory_name(mem['half_life_s'])} {mem['weight']:.1%}" for mem in m["memories"])
                parts.append(
                    f"<tr><td class=l>{esc(creative)}</td><td class=l>{esc(objective)}</td>"
                    f"<td class=l>{esc(_time(m['fitted_at']))}</td><td>{esc(str(m['impressions']))}</td>"
                    f"<td class=l>{esc(', '.join(m['slots']))}</td><td class=l>{esc(', '.join(m['dims']))}</td>"
                    f"<td class=l>{esc(memories)}</td></tr>")
        parts.append("</table>")
    for title, png in _plots(report):
        parts.append(f"<h3>{esc(title)}</h3><img alt='{esc(title)}' src='data:image/png;base64,{png}'>")
    for dim, per_value in report["top_by_context"].items():
        parts.append(f"<h2>Top combinations per {esc(dim)}, and their rank at its other values</h2>")
        for value, entries in per_value.items():
            parts.append(f"<h3>{esc(dim)}={esc(value)}</h3><table><tr><th>combination</th><th>slots</th>"
                         "<th>CTR</th><th>95% interval</th><th>impressions</th><th>rank elsewhere</th></tr>")
            for e in entries:
                elsewhere = ", ".join(f"{esc(r)}: {k if k else '-'}" for r, k in e["rank_elsewhere"].items())
                parts.append(
                    f"<tr><td class=l>{esc(e['combination'])}</td><td class=l>{esc(e['slots'])}</td>"
                    f"<td>{e['ctr_mean']:.3%}</td><td>{e['ctr_low']:.3%} .. {e['ctr_high']:.3%}</td>"
                    f"<td>{e['impressions']:,}</td><td class=l>{elsewhere}</td></tr>"
                )
            parts.append("</table>")
    parts.append("<h2>Components</h2><p>Counts are the exact sums of the steered traffic's context counters. "
                 "Effect: the click model's posterior (logit); in a context, main effect + interaction.</p>")
    for comp in report["components"]:
        in_context = comp["dimension"] is not None
        parts.append(
            f"<h3>{esc(comp['creative'])} / {esc(comp['slot'])} / {esc(comp['context'])}</h3><table><tr>"
            "<th>variant</th><th>label</th><th>impressions</th><th>clicks</th><th>CTR</th><th>95% interval</th>"
            "<th>P(best)</th><th>CVR</th><th>value / 1000 imp</th><th>ROAS</th><th>effect</th><th>95% interval</th>"
            + ("<th>interaction</th><th>95% interval</th>" if in_context else "") + "</tr>"
        )
        for r in comp["variants"]:
            cvr = "" if r["cvr"] is None else f"{r['cvr']:.2%}"
            vpm = "" if r["value_per_mille"] is None else f"{r['value_per_mille']:.2f}"
            roas = "" if r["roas"] is None else f"{r['roas']:.2f}"
            effect = r["effects"].get("click")
            parts.append(
                f"<tr><td class=l>{esc(r['variant'])}</td><td class=l>{esc(r['label'])}</td>"
                f"<td>{r['impressions']:,}</td><td>{r['clicks']:,}</td><td>{r['ctr_mean']:.3%}</td>"
                f"<td>{r['ctr_low']:.3%} .. {r['ctr_high']:.3%}</td><td>{r['p_best']:.1%}</td><td>{cvr}</td>"
                f"<td>{vpm}</td><td>{roas}</td>{_effect_cells(effect)}"
                + (_effect_cells(effect and effect.get("interaction")) if in_context else "") + "</tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------ CLI


def cmd_report(args: argparse.Namespace) -> int:
    from dco.errors import ConfigError

    try:
        obj = load_stats(args.stats)
    except (OSError, ValueError) as exc:
        print(f"dco: {args.stats}: {exc}", file=sys.stderr)
        return 2
    try:
        campaign = load_campaign(args.campaign)
    except (OSError, ConfigError) as exc:
        print(f"dco: {args.campaign}: {exc}", file=sys.stderr)
        return 2
    try:
        report = build_report(obj, campaign=campaign, min_impressions=args.min_impressions, draws=args.draws,
                              cpm=args.cpm)
    except ValueError as exc:
        print(f"dco: {args.stats}: {exc}", file=sys.stderr)
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
    for note in report["notes"]:
        print(f"  note: {note}")
    lift = report["lift"]
    if lift:
        print(f"lift vs holdout {lift['lift']:+.2%} (95% CI {lift['ci_low']:+.2%} .. {lift['ci_high']:+.2%})")
    for creative, per_objective in report["models"].items():
        for objective, m in per_objective.items():
            weights = ", ".join(f"{mem['weight']:.0%}" for mem in m["memories"])
            print(f"  model {creative}/{objective}: {m['impressions']:,} impressions, memory weights {weights}")
    for comp in report["components"]:
        if comp["context"] == ALL:
            best = comp["variants"][0]
            effect = best["effects"].get("click")
            said = "" if effect is None else f"; effect {effect['mean']:+.2f} [{effect['low']:+.2f}, {effect['high']:+.2f}]"
            print(f"  {comp['creative']}/{comp['slot']}: best {best['variant']} CTR {best['ctr_mean']:.3%}"
                  f" [{best['ctr_low']:.3%}, {best['ctr_high']:.3%}] P(best) {best['p_best']:.0%}{said}")
    for dim, per_value in report["top_by_context"].items():
        for value, entries in per_value.items():
            if entries:
                e = entries[0]
                print(f"  top at {dim}={value}: {e['combination']} {e['ctr_mean']:.3%}; elsewhere {e['rank_elsewhere']}")
    if args.out:
        print(f"wrote {Path(args.out) / 'report.html'}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="component and combination performance with credible intervals (HTML)")
    p.add_argument("--stats", required=True, help="stats object (msgpack or JSON)")
    p.add_argument("--campaign", help="campaign config: slot names of the combinations' positions, variant labels")
    p.add_argument("--out", help="directory for report.html and report.json")
    p.add_argument("--min-impressions", type=int, default=MIN_IMPRESSIONS)
    p.add_argument("--draws", type=int, default=DRAWS, help="Monte Carlo draws per context (fixed seed)")
    p.add_argument("--cpm", type=float, default=None, help="media cost per 1000 impressions, for ROAS")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_report)
