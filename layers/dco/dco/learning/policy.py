"""How an assembled creative's variants are chosen: the model's Thompson sampling (the product), and the two
reference learners the simulator plays beside it (docs/learning.md, "Reference learners").

* :func:`choose` - the model (dco.learning.model) through its decision tables (dco.learning.draws).
* :func:`choose_per_arm` - one Beta per full combination per learning context (per-arm Thompson sampling).
* :func:`choose_per_slot` - one Beta per variant per slot per learning context, the slots chosen independently
  (per-slot Thompson sampling), on the combination counters summed per variant.

Each returns an :class:`Assembly`: the variant id chosen per slot (None when no combination is allowed), its
exact propensity, and an explain trace when asked for.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from dco import bandit
from dco._accel import np
from dco.learning.context import model_context
from dco.learning.contract import context_key, split_bucket
from dco.learning.draws import ModelView, Table, build_table, pick, table_seed
from dco.learning.params import DEFAULT_PARAMS, LearningParams
from dco.learning.view import StatsView

__all__ = ["Assembly", "choose", "choose_per_arm", "choose_per_slot", "table_for", "model_view"]


class Assembly(NamedTuple):
    """An assembled creative's choice: ``variants`` per slot (None: nothing allowed), ``propensity``, ``trace``."""

    variants: tuple[str, ...] | None
    propensity: float
    trace: dict[str, Any] | None = None


def model_view(stats: StatsView, creative: str, objective: str, params: LearningParams = DEFAULT_PARAMS) -> ModelView:
    """The :class:`ModelView` of a creative's model for an objective (once per stats object). A conversion
    objective with no conversion model yet learns from the click model (a conversion needs a click first)."""
    key = ("learning.view", creative, objective, params)
    found = stats.memo.get(key)
    if found is None:
        model = stats.model(creative, objective)
        if model is None and objective == "conversion":
            model = stats.model(creative, "click")
        found = stats.memo[key] = ModelView(model, params)
    return found  # type: ignore[no-any-return]


def table_for(
    stats: StatsView, creative: str, eligible: Sequence[Sequence[str]], exclusions: Sequence[tuple[str, str]],
    context: Mapping[str, str], objective: str, params: LearningParams = DEFAULT_PARAMS,
) -> Table:
    """The decision table for this creative, eligible set, exclusions and (raw) learning context; built once per
    stats object."""
    tables = stats.memo.get(("learning.tables", params))
    if tables is None:
        tables = stats.memo[("learning.tables", params)] = {}
    fast = (creative, objective, tuple(context.items()), tuple(eligible), tuple(exclusions))
    table = tables.get(fast)
    if table is None:
        ctx = tuple(sorted(model_context(context).items()))
        key = (creative, objective, ctx, tuple(tuple(e) for e in eligible), tuple(exclusions))
        table = tables.get(key)
        if table is None:
            view = model_view(stats, creative, objective, params)
            table = tables[key] = build_table(view, eligible, dict(ctx), exclusions,
                                              table_seed(getattr(stats, "updated_at", 0), key), params)
        tables[fast] = table
    return table  # type: ignore[no-any-return]


def choose(
    stats: StatsView,
    creative: str,
    eligible: Sequence[Sequence[str]],
    exclusions: Sequence[tuple[str, str]],
    context: Mapping[str, str],
    objective: str,
    rng: Any,
    *,
    params: LearningParams = DEFAULT_PARAMS,
    explain: bool = False,
) -> Assembly:
    """The model's Thompson step: one row of the decision table, picked with ``rng``."""
    table = table_for(stats, creative, eligible, exclusions, context, objective, params)
    winner, propensity, row = pick(table, rng.random())
    trace = None
    if explain:
        top = sorted(table.share.items(), key=lambda item: (-item[1], item[0] or ()))[:5]
        view = model_view(stats, creative, objective, params)
        trace = {
            "method": "model",
            "row": row,
            "rows": table.rows,
            "memory": table.memories[row],
            "memory_weights": [round(w, 4) for w in view.weights],
            "top_combinations": [[list(w) if w else None, round(s, 4)] for w, s in top],
        }
    return Assembly(winner, propensity if winner is not None else 0.0, trace)


def _allowed_combinations(eligible: Sequence[Sequence[str]],
                          exclusions: Sequence[tuple[str, str]]) -> list[tuple[str, ...]]:
    banned = {frozenset(p) for p in exclusions}
    return [
        combo for combo in itertools.product(*eligible)
        if not banned or not any(frozenset(p) in banned for p in itertools.combinations(combo, 2))
    ]


def _absolute_counts(stats: StatsView, objective: str) -> dict[str, tuple[float, float]]:
    """``contexts`` key -> ``(successes, trials)`` of the absolute rows (once per stats object)."""
    key = ("learning.absolute", objective)
    found = stats.memo.get(key)
    if found is None:
        col = 1 if objective == "click" else 2
        found = {}
        for name, row in stats.context_rows().items():
            base, bucket = split_bucket(name)
            if bucket is None:
                t = float(row[0])
                found[base] = (min(float(row[col]), t), t)
        stats.memo[key] = found
    return found  # type: ignore[no-any-return]


def choose_per_arm(
    stats: StatsView, creative: str, eligible: Sequence[Sequence[str]], exclusions: Sequence[tuple[str, str]],
    context: Mapping[str, str], objective: str, rng: Any, *, prior: tuple[float, float] = (1.0, 1.0),
) -> Assembly:
    """Per-arm Thompson sampling: one Beta per allowed combination in this learning context."""
    ctx = tuple(sorted(context.items()))
    key = ("learning.per_arm", creative, objective, ctx, tuple(tuple(e) for e in eligible), tuple(exclusions))
    found = stats.memo.get(key)
    if found is None:
        combos = _allowed_combinations(eligible, exclusions)
        counts = _absolute_counts(stats, objective)
        succ, trials = [], []
        for combo in combos:
            s, n = counts.get(context_key(f"{creative}|" + ".".join(combo), ctx), (0.0, 0.0))
            succ.append(s)
            trials.append(n)
        s_arr, n_arr = _as_arrays(succ, trials)
        found = stats.memo[key] = (combos, s_arr, n_arr, bandit.bounds(s_arr, n_arr, prior=prior))
    combos, succ, trials, bounds = found
    if not combos:
        return Assembly(None, 0.0)
    choice = bandit.thompson(succ, trials, rng, prior=prior, bounds=bounds, top=1)
    return Assembly(combos[choice.index], choice.propensity)


def choose_per_slot(
    stats: StatsView, creative: str, eligible: Sequence[Sequence[str]], exclusions: Sequence[tuple[str, str]],
    context: Mapping[str, str], objective: str, rng: Any, *, prior: tuple[float, float] = (1.0, 1.0),
) -> Assembly:
    """Per-slot Thompson sampling: each slot in turn draws one Beta per variant from the variant's clicks in this
    learning context (its combinations summed), among the variants the earlier picks do not exclude."""
    ctx = tuple(sorted(context.items()))
    key = ("learning.per_slot", creative, objective, ctx)
    found = stats.memo.get(key)
    if found is None:
        suffix = context_key("", ctx)
        counts = _absolute_counts(stats, objective)
        found = {}
        prefix = f"{creative}|"
        for name, (s, n) in counts.items():
            if not name.startswith(prefix) or not name.endswith(suffix):
                continue
            combo = name[len(prefix):len(name) - len(suffix)] if suffix else name[len(prefix):]
            if "@" in combo:  # a longer context that merely ends like this one
                continue
            for p, v in enumerate(combo.split(".")):
                acc = found.setdefault((p, v), [0.0, 0.0])
                acc[0] += s
                acc[1] += n
        stats.memo[key] = found
    banned: dict[str, set[str]] = {}
    for a, b in exclusions:
        banned.setdefault(a, set()).add(b)
        banned.setdefault(b, set()).add(a)
    chosen: list[str] = []
    propensity = 1.0
    for p, ids in enumerate(eligible):
        blocked = set().union(*(banned.get(v, set()) for v in chosen)) if banned and chosen else set()
        options = [v for v in ids if v not in blocked]
        if not options:
            return Assembly(None, 0.0)
        succ = [found.get((p, v), (0.0, 0.0))[0] for v in options]
        trials = [found.get((p, v), (0.0, 0.0))[1] for v in options]
        choice = bandit.thompson(*_as_arrays(succ, trials), rng, prior=prior, top=1)
        chosen.append(options[choice.index])
        propensity *= choice.propensity
    return Assembly(tuple(chosen), propensity)


def _as_arrays(succ: list[float], trials: list[float]) -> tuple[Any, Any]:
    if np is not None:
        return np.asarray(succ, dtype=float), np.asarray(trials, dtype=float)
    return succ, trials
