"""How an assembled creative's variants are chosen: the model's Thompson sampling (the product), and the two
reference learners the simulator plays beside it (docs/learning.md, "Reference learners").

* :func:`choose` - the model (dco.learning.model) through its decision tables (dco.learning.draws).
* :func:`choose_per_arm` - one Beta per full combination per learning context (per-arm Thompson sampling).
* :func:`choose_per_slot` - one Beta per variant per slot per learning context, the slots chosen independently
  (per-slot Thompson sampling), on the combination counters summed per variant.

All three draw a table of ``pool`` joint posterior draws per stats refresh and key, and a decision picks a row:
the same batching, so the comparison is between models, not between ways of sampling them.

Each returns an :class:`Assembly`: the variant id chosen per slot (None when no combination is allowed), its
exact propensity, and an explain trace when asked for.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from dco._accel import np
from dco.learning.context import model_context
from dco.learning.contract import context_key, split_decay
from dco.learning.draws import ModelView, Table, build_table, pick, table_seed
from dco.learning.params import DEFAULT_PARAMS, LearningParams
from dco.learning.view import StatsView
from dco.rng import make_rng

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
    return found


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
    return table


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
    """The model's Thompson step: one row of the decision table, picked with ``rng``.

    Before any model exists for the creative (and without exclusions) every variant's effect has the same prior,
    so every combination is equally likely to win a draw: the step is then exactly uniform over the combinations,
    drawn slot by slot with ``rng`` (propensity ``1 / number of combinations``), and no table is built."""
    if not exclusions and _cold(stats, creative, objective):
        variants = []
        propensity = 1.0
        for ids in eligible:
            if not ids:
                return Assembly(None, 0.0)
            variants.append(ids[min(int(rng.random() * len(ids)), len(ids) - 1)])
            propensity /= len(ids)
        trace = {"method": "model", "cold": True} if explain else None
        return Assembly(tuple(variants), propensity, trace)
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


def _cold(stats: StatsView, creative: str, objective: str) -> bool:
    """No model to draw from yet for this creative and objective (nor a click model for a conversion one)."""
    if stats.model(creative, objective) is not None:
        return False
    return objective != "conversion" or stats.model(creative, "click") is None


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
            base, epoch = split_decay(name)
            if epoch is None:
                t = float(row[0])
                found[base] = (min(float(row[col]), t), t)
        stats.memo[key] = found
    return found


def _beta_winners(rng: Any, succ: Sequence[float], trials: Sequence[float], prior: tuple[float, float],
                  rows: int) -> list[int]:
    """Per row, the arm with the highest Beta posterior draw (``rows`` joint draws). Arms never shown share the
    prior: their best draw is the maximum of as many prior draws, made as one (a Beta(1, 1) prior: ``u ** (1/m)``;
    otherwise drawn), and it goes to one of them chosen uniformly."""
    seen = [i for i, n in enumerate(trials) if n > 0]
    unseen = [i for i, n in enumerate(trials) if n <= 0]
    pa, pb = prior
    a = [succ[i] + pa for i in seen]
    b = [trials[i] - succ[i] + pb for i in seen]
    out: list[int] = []
    if np is not None:
        draws = np.asarray(rng.betas(np.asarray(a), np.asarray(b), rows=rows)).reshape(rows, len(seen)) if seen else None
        best = draws.max(axis=1) if draws is not None else np.full(rows, -1.0)
        at = draws.argmax(axis=1) if draws is not None else np.zeros(rows, dtype=np.intp)
        if unseen:
            if (pa, pb) == (1.0, 1.0):
                group = np.asarray([rng.random() for _ in range(rows)]) ** (1.0 / len(unseen))
            else:
                group = np.asarray(rng.betas(np.full(len(unseen), pa), np.full(len(unseen), pb), rows=rows)).max(axis=1)
            pick = [rng.integers(len(unseen)) for _ in range(rows)]
            for k in range(rows):
                out.append(unseen[pick[k]] if group[k] > best[k] else seen[int(at[k])])
        else:
            out = [seen[i] for i in at.tolist()]
        return out
    for _ in range(rows):
        row = rng.betas(a, b) if seen else []
        top, arm = -1.0, -1
        for j, x in enumerate(row):
            if x > top:
                top, arm = x, seen[j]
        if unseen:
            if (pa, pb) == (1.0, 1.0):
                g = rng.random() ** (1.0 / len(unseen))
            else:
                g = max(rng.betas([pa] * len(unseen), [pb] * len(unseen)))
            u = unseen[rng.integers(len(unseen))]
            if g > top:
                arm = u
        out.append(arm)
    return out


def _pooled(stats: StatsView, key: Any, build: Any, rng: Any) -> Assembly:
    """A reference learner's decision from its table (one per stats object and key), like the model's: a row
    picked with ``rng``, its propensity the share of rows with its winner."""
    found = stats.memo.get(key)
    if found is None:
        found = stats.memo[key] = build()
    if found is None:
        return Assembly(None, 0.0)
    winner, propensity, _ = pick(found, rng.random())
    return Assembly(winner, propensity)


def choose_per_arm(
    stats: StatsView, creative: str, eligible: Sequence[Sequence[str]], exclusions: Sequence[tuple[str, str]],
    context: Mapping[str, str], objective: str, rng: Any, *, prior: tuple[float, float] = (1.0, 1.0),
    params: LearningParams = DEFAULT_PARAMS,
) -> Assembly:
    """Per-arm Thompson sampling: one Beta per allowed combination in this learning context (a table of
    ``params.pool`` joint draws per stats object, as the model's)."""
    ctx = tuple(sorted(context.items()))
    key = ("learning.per_arm", creative, objective, ctx, tuple(tuple(e) for e in eligible), tuple(exclusions))

    def build() -> Table | None:
        combos = _allowed_combinations(eligible, exclusions)
        if not combos:
            return None
        counts = _absolute_counts(stats, objective)
        succ, trials = [], []
        for combo in combos:
            s_, n_ = counts.get(context_key(f"{creative}|" + ".".join(combo), ctx), (0.0, 0.0))
            succ.append(s_)
            trials.append(n_)
        table_rng = make_rng(table_seed(getattr(stats, "updated_at", 0), key))
        winners = _beta_winners(table_rng, succ, trials, prior, params.pool)
        return Table([combos[i] for i in winners], [0] * params.pool)

    return _pooled(stats, key, build, rng)


def choose_per_slot(
    stats: StatsView, creative: str, eligible: Sequence[Sequence[str]], exclusions: Sequence[tuple[str, str]],
    context: Mapping[str, str], objective: str, rng: Any, *, prior: tuple[float, float] = (1.0, 1.0),
    params: LearningParams = DEFAULT_PARAMS,
) -> Assembly:
    """Per-slot Thompson sampling: each slot draws one Beta per variant from the variant's outcomes in this learning
    context (its combinations summed), the slots independently; with exclusions, a slot's variants excluded by an
    earlier slot's winner are left out of its draw (a table of ``params.pool`` joint draws per stats object)."""
    ctx = tuple(sorted(context.items()))
    key = ("learning.per_slot", creative, objective, ctx, tuple(tuple(e) for e in eligible), tuple(exclusions))

    def build() -> Table | None:
        suffix = context_key("", ctx)
        counts = _absolute_counts(stats, objective)
        marginal: dict[tuple[int, str], list[float]] = {}
        prefix = f"{creative}|"
        for name, (s_, n_) in counts.items():
            if not name.startswith(prefix) or not name.endswith(suffix):
                continue
            combo = name[len(prefix):len(name) - len(suffix)] if suffix else name[len(prefix):]
            if "@" in combo:  # a longer context that merely ends like this one
                continue
            for p, v in enumerate(combo.split(".")):
                acc = marginal.setdefault((p, v), [0.0, 0.0])
                acc[0] += s_
                acc[1] += n_
        banned: dict[str, set[str]] = {}
        for a, b in exclusions:
            banned.setdefault(a, set()).add(b)
            banned.setdefault(b, set()).add(a)
        table_rng = make_rng(table_seed(getattr(stats, "updated_at", 0), key))
        per_slot = []
        for p, ids in enumerate(eligible):
            succ = [marginal.get((p, v), (0.0, 0.0))[0] for v in ids]
            trials = [marginal.get((p, v), (0.0, 0.0))[1] for v in ids]
            per_slot.append(_beta_winners(table_rng, succ, trials, prior, params.pool))
        winners: list[tuple[str, ...] | None] = []
        for k in range(params.pool):
            picked = tuple(eligible[p][per_slot[p][k]] for p in range(len(eligible)))
            if banned and any(b in banned.get(a, ()) for a, b in itertools.combinations(picked, 2)):
                winners.append(_first_allowed(picked, eligible, banned))
            else:
                winners.append(picked)
        return Table(winners, [0] * params.pool)

    return _pooled(stats, key, build, rng)


def _first_allowed(combo: tuple[str, ...], eligible: Sequence[Sequence[str]],
                   banned: Mapping[str, set[str]]) -> tuple[str, ...] | None:
    """Keep the earlier slots' winners and move each later slot to its first variant they do not exclude."""
    chosen: list[str] = []
    for p, v in enumerate(combo):
        blocked = set().union(*(banned.get(c, set()) for c in chosen)) if chosen else set()
        if v in blocked:
            v = next((x for x in eligible[p] if x not in blocked), None)  # type: ignore[assignment]
            if v is None:
                return None
        chosen.append(v)
    return tuple(chosen)
