"""What is counted, and how the counts feed the optimizer.

Two halves of one contract:

* :func:`counter_keys` says which counters one event increments (the fold function calls it for every event
  it aggregates): the arm, the creative-level arm of dynamic and assembled creatives, the arm within each
  context value (for per-region reports and the per-combination baseline), every component variant alone and
  per context value (region, device...), the same component counters again in a time bucket (drift), and the
  holdout/optimized split used for lift.
* :func:`slot_counts` turns the published stats into per-variant ``(successes, trials)`` pseudo-counts for the
  engine's component-level Thompson step, and :func:`choose_variant` makes that step (with a per-stats-refresh
  draw table, so a decision costs a few microseconds per slot); :func:`choose_combination` is the
  one-Beta-per-full-combination alternative kept as a baseline.

Counter keys (the ``pk`` suffix in the Counters table, see docs/storage.md)::

    arm:<arm key>                                   e.g. arm:cr-retail|h01.img07.c02.o01, arm:cr-product|SKU-1
    arm:<arm key>@region=<value>                    the arm within one region (non-holdout traffic)
    arm:<creative id>                               the creative-level arm (dynamic/assembled only)
    comp:<creative>|<slot>=<variant>                one component variant, all traffic
    comp:<creative>|<slot>=<variant>@<dim>=<value>  one component variant within one context value
    comp:<...>#e<bucket>                            either of the two above within time bucket
                                                    ``now_s // bucket_s`` (only when the caller passes now_s)
    split:<holdout|optimized>                       all traffic of the campaign, by group (lift)

The stats object publish-stats writes maps them back: ``arms`` (``arm:`` keys without the prefix),
``components`` (``comp:`` keys without the prefix) and ``splits`` (``split:`` keys without the prefix), each
value ``[impressions, clicks, conversions, value]``. Publish-stats should carry only the newest
:attr:`LearningParams.buckets` time buckets of ``comp:...#e`` keys (older ones weigh little and only grow the
object); :func:`slot_counts` ignores older buckets anyway.

The component model (docs/learning.md has the reasoning and the figures). For a variant ``v`` of a slot, in a
request whose context is ``{region: pnw, device: mobile}``::

    m_slot  = (S_slot + 1) / (N_slot + 2)                     all variants of the slot pooled
    m_v     = (S_v + k m_slot) / (N_v + k)                    the variant over all contexts, shrunk to the slot
    p_v,d   = (S_v,d + k m_v) / (N_v,d + k)                   the variant within one context value, shrunk to m_v
    logit p = logit m_v + sum_d (logit p_v,d - logit m_v)     context values combine additively in log-odds
    n       = min_d (N_v,d + k)                               the least-informed context value sets the spread
    (successes, trials) = (p n, n)

With one context dimension this is exactly ``(S_v,d + k m_v, N_v,d + k)``: a Beta prior of strength ``k`` centred
on the variant's history everywhere (cold start), which a data-rich context outweighs. ``S`` and ``N`` are the
counts with drift handling: per counter, the whole history (the absolute counter) while the newest
``recent_buckets`` time buckets agree with the older history (two-proportion z-test at ``change_z``), else the
time-discounted counts ``sum_b 0.5 ** ((newest - b) * bucket_s / half_life_s) * count_b`` over the newest
``buckets`` buckets present in the stats object (absolute counters only, when no bucketed key exists).
Holdout traffic never enters component counters, so the control group stays clean.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dco import bandit
from dco._accel import np
from dco.rng import make_rng

__all__ = [
    "CONTEXT_DIMENSIONS",
    "BUCKET_SUFFIX",
    "LearningParams",
    "DEFAULT_PARAMS",
    "component_key",
    "event_context",
    "counter_keys",
    "slot_counts",
    "choose_variant",
    "choose_combination",
    "stats_object",
]

# Context dimensions that component counters are split by (request signal -> short name in keys).
CONTEXT_DIMENSIONS: dict[str, str] = {"geo.region": "region", "device.type": "device"}
# Context dimensions that arm (combination, product) counters are also split by: the AdTheme dimension of a
# regional campaign; per-region combination reports and the per-combination baseline read them.
ARM_CONTEXT_DIMENSIONS: tuple[str, ...] = ("region",)
BUCKET_SUFFIX = "#e"


@dataclass(frozen=True)
class LearningParams:
    """Knobs of the component model (defaults are the product's).

    ``strength`` is ``k``, the pseudo-trials of each back-off prior; ``half_life_s`` the age at which a count
    weighs half; ``bucket_s`` the width of a time bucket and ``buckets`` how many of the newest buckets count;
    ``pool`` the number of joint Thompson draws kept per (slot, context) and stats refresh (see
    :func:`choose_variant`); ``dims`` the context dimensions (short names) the model conditions on;
    ``change_z`` and ``recent_buckets`` switch between long and short memory per counter: the discounted
    counts are used only where the newest ``recent_buckets`` buckets differ from the older history by more than
    ``change_z`` standard errors, the whole (absolute) history elsewhere; ``change_z = 0`` discounts everything;
    ``exploration`` scales the posterior spread of the draws (1.0 = plain Thompson sampling; 0.5 samples from
    Beta posteriors with the counts doubled, i.e. half the variance: more exploitation).
    """

    strength: float = 20.0
    half_life_s: float = 86400.0
    bucket_s: int = 86400
    buckets: int = 14
    change_z: float = 3.0
    recent_buckets: int = 2
    pool: int = 1024
    dims: tuple[str, ...] = ("region", "device")
    exploration: float = 1.0


DEFAULT_PARAMS = LearningParams()


def component_key(creative: str, slot: str, variant: str, context: tuple[str, str] | None = None) -> str:
    """``<creative>|<slot>=<variant>`` or, within a context value, ``...@<dim>=<value>``."""
    key = f"{creative}|{slot}={variant}"
    return key if context is None else f"{key}@{context[0]}={context[1]}"


def event_context(signals: Mapping[str, str]) -> dict[str, str]:
    """The context values an event records for component counters (``{"region": "pnw", "device": "mobile"}``)."""
    return {short: signals[name] for name, short in CONTEXT_DIMENSIONS.items() if signals.get(name)}


def counter_keys(
    *,
    arm: str,
    creative: str,
    variants: Sequence[str] = (),
    context: Mapping[str, str] | None = None,
    holdout: bool = False,
    now_s: int | None = None,
    bucket_s: int = DEFAULT_PARAMS.bucket_s,
) -> list[str]:
    """Every counter one event of a decision increments (without the campaign prefix).

    ``variants`` are ``"slot=variant"`` strings as carried in tracking tokens; ``context`` is
    :func:`event_context` of the request. Holdout traffic is counted for lift (``split:holdout``) and per arm,
    but not into component or per-context arm counters: the optimizer learns from the traffic it steers, and
    the holdout's uniform traffic stays a clean control group. ``now_s`` (the event's unix time) adds the
    time-bucketed component counters the drift handling reads; without it none are emitted.

    >>> counter_keys(arm="cr|h1.i2", creative="cr", variants=["headline=h1"], context={"region": "pnw"},
    ...              now_s=86400 * 3)
    ... # doctest: +NORMALIZE_WHITESPACE
    ['arm:cr|h1.i2', 'arm:cr', 'split:optimized', 'arm:cr|h1.i2@region=pnw', 'comp:cr|headline=h1',
     'comp:cr|headline=h1#e3', 'comp:cr|headline=h1@region=pnw', 'comp:cr|headline=h1@region=pnw#e3']
    """
    keys = [f"arm:{arm}"]
    if arm != creative:
        keys.append(f"arm:{creative}")
    keys.append("split:holdout" if holdout else "split:optimized")
    if not holdout:
        dims = sorted((context or {}).items())
        if arm != creative:
            for dim, value in dims:
                if dim in ARM_CONTEXT_DIMENSIONS:
                    keys.append(f"arm:{arm}@{dim}={value}")
        suffix = None if now_s is None else f"{BUCKET_SUFFIX}{int(now_s) // int(bucket_s)}"
        for item in variants:
            slot, _, variant = item.partition("=")
            base = f"comp:{component_key(creative, slot, variant)}"
            keys.append(base)
            if suffix is not None:
                keys.append(base + suffix)
            for dim, value in dims:
                key = f"{base}@{dim}={value}"
                keys.append(key)
                if suffix is not None:
                    keys.append(key + suffix)
    return keys


def stats_object(
    counters: Mapping[str, Sequence[float]], *, campaign: str | None = None, updated_at: int = 0
) -> dict[str, Any]:
    """The stats object publish-stats writes, from absolute counters keyed as :func:`counter_keys` names them.

    >>> stats_object({"arm:a": [3, 1, 0, 0.0], "split:holdout": [1, 0, 0, 0.0]}, campaign="c")["splits"]
    {'holdout': [1, 0, 0, 0.0]}
    """
    sections: dict[str, dict[str, list[Any]]] = {"arms": {}, "components": {}, "splits": {}}
    names = {"arm": "arms", "comp": "components", "split": "splits"}
    for key, row in counters.items():
        prefix, _, rest = key.partition(":")
        section = names.get(prefix)
        if section is not None:
            sections[section][rest] = [int(row[0]), int(row[1]), int(row[2]), float(row[3])]
    return {"version": 1, "campaign": campaign, "updated_at": int(updated_at), **sections}


# ------------------------------------------------------------------------------------------- the model


def _memo(stats: Any) -> dict[Any, Any]:
    """Per-stats-table cache for derived data (lives and dies with the table); a throwaway dict otherwise."""
    memo = getattr(stats, "memo", None)
    return memo if isinstance(memo, dict) else {}


def _component_rows(stats: Any) -> Mapping[str, Sequence[Any]]:
    rows = getattr(stats, "component_rows", None)
    if rows is not None:
        return rows()  # type: ignore[no-any-return,unused-ignore]
    return getattr(stats, "_components", {})  # type: ignore[no-any-return,unused-ignore]


def _decayed(stats: Any, params: LearningParams) -> dict[str, tuple[float, float, float]]:
    """Base component key -> discounted ``(impressions, clicks, conversions)``; built once per stats table."""
    memo = _memo(stats)
    key = ("learning.decayed", params.half_life_s, params.bucket_s, params.buckets, params.change_z,
           params.recent_buckets)
    found = memo.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return,unused-ignore]
    absolute: dict[str, tuple[float, float, float]] = {}
    bucketed: list[tuple[str, int, Sequence[Any]]] = []
    newest = None
    for name, row in _component_rows(stats).items():
        base, sep, bucket = name.partition(BUCKET_SUFFIX)
        if sep:
            try:
                b = int(bucket)
            except ValueError:
                continue
            bucketed.append((base, b, row))
            newest = b if newest is None or b > newest else newest
        else:
            imps = float(row[0])
            absolute[base] = (imps, min(float(row[1]), imps), min(float(row[2]), imps))
    out = absolute
    if newest is not None:
        decay = math.log(0.5) * params.bucket_s / params.half_life_s
        weights = [math.exp(decay * age) for age in range(params.buckets)]
        sums: dict[str, list[float]] = {}
        recent: dict[str, list[float]] = {}
        for base, b, row in bucketed:
            age = newest - b
            if 0 <= age < params.buckets:
                w = weights[age]
                imps = float(row[0])
                clicks = min(float(row[1]), imps)
                convs = min(float(row[2]), imps)
                acc = sums.get(base)
                if acc is None:
                    acc = sums[base] = [0.0, 0.0, 0.0]
                acc[0] += w * imps
                acc[1] += w * clicks
                acc[2] += w * convs
                if age < params.recent_buckets:
                    r = recent.get(base)
                    if r is None:
                        r = recent[base] = [0.0, 0.0, 0.0]
                    r[0] += imps
                    r[1] += clicks
                    r[2] += convs
        detect = params.change_z > 0
        out = {}
        for base, total in absolute.items():
            acc = sums.get(base)
            if acc is None:  # no traffic within the horizon: only history is known
                out[base] = total if detect else (0.0, 0.0, 0.0)
            elif detect and not _changed(total, recent.get(base), params.change_z):
                out[base] = total  # stable: keep the whole history (discounting would only add noise)
            else:
                out[base] = (acc[0], acc[1], acc[2])
        for base, acc in sums.items():
            out.setdefault(base, (acc[0], acc[1], acc[2]))
    memo[key] = out
    return out


def _changed(total: tuple[float, float, float], recent: list[float] | None, z: float) -> bool:
    """Whether the recent rate (clicks or conversions per impression) differs from the older rate by more than
    ``z`` standard errors (two-proportion z-test, pooled variance)."""
    if recent is None:
        return False
    n_r = recent[0]
    n_o = total[0] - n_r
    if n_r <= 0 or n_o <= 0:
        return False
    for col in (1, 2):
        s_r = recent[col]
        s_o = max(total[col] - s_r, 0.0)
        p = (s_r + s_o) / (n_r + n_o)
        if 0.0 < p < 1.0:
            diff = s_r / n_r - s_o / n_o
            if diff * diff > z * z * p * (1.0 - p) * (1.0 / n_r + 1.0 / n_o):
                return True
    return False


_SIGNAL_OF: dict[str, str] = {short: name for name, short in CONTEXT_DIMENSIONS.items()}


_LAST_CONTEXT: tuple[Any, Any, tuple[tuple[str, str], ...]] = (None, None, ())


def _context_values(signals: Mapping[str, str], params: LearningParams) -> tuple[tuple[str, str], ...]:
    """``((dim, value), ...)`` of ``params.dims`` present in ``signals``, in ``params.dims`` order.

    The slots of one decision share one signals mapping: the last answer is kept by identity.
    """
    global _LAST_CONTEXT
    last = _LAST_CONTEXT
    if last[0] is signals and last[1] is params:
        return last[2]
    out = []
    for dim in params.dims:
        value = signals.get(_SIGNAL_OF.get(dim, dim))
        if value:
            out.append((dim, value))
    ctx = tuple(out)
    _LAST_CONTEXT = (signals, params, ctx)
    return ctx


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def slot_counts(
    stats: Any,
    creative: str,
    slot: str,
    variants: Sequence[str],
    signals: Mapping[str, str],
    objective: str,
    params: LearningParams = DEFAULT_PARAMS,
) -> tuple[list[float], list[float]]:
    """Per-variant ``(successes, trials)`` pseudo-counts for the component-level Thompson step.

    The back-off of the module docstring: slot -> variant overall -> variant within each context value of
    ``signals`` (those among ``params.dims``), on discounted counts. Pass the result to
    :func:`dco.bandit.thompson` with the campaign prior.
    """
    table = _decayed(stats, params)
    col = 1 if objective == "click" else 2
    k = params.strength
    zero = (0.0, 0.0, 0.0)
    bases = [component_key(creative, slot, v) for v in variants]
    overall = [table.get(b, zero) for b in bases]
    s_slot = sum(r[col] for r in overall)
    n_slot = sum(r[0] for r in overall)
    m_slot = (s_slot + 1.0) / (n_slot + 2.0)
    ctx = _context_values(signals, params)
    successes: list[float] = []
    trials: list[float] = []
    for base, row in zip(bases, overall, strict=True):
        m_v = (row[col] + k * m_slot) / (row[0] + k)
        if not ctx:
            successes.append(row[col] + k * m_slot)
            trials.append(row[0] + k)
            continue
        if len(ctx) == 1:
            r = table.get(f"{base}@{ctx[0][0]}={ctx[0][1]}", zero)
            successes.append(r[col] + k * m_v)
            trials.append(r[0] + k)
            continue
        base_logit = _logit(m_v)
        total = base_logit
        n = math.inf
        for dim, value in ctx:
            r = table.get(f"{base}@{dim}={value}", zero)
            n_d = r[0] + k
            total += _logit((r[col] + k * m_v) / n_d) - base_logit
            n = min(n, n_d)
        p = 1.0 / (1.0 + math.exp(-total))
        successes.append(p * n)
        trials.append(n)
    return successes, trials


# ------------------------------------------------------------------------------------------- choosing


class _Table:
    """The per-(slot, context, stats refresh) draw table of :func:`choose_variant`."""

    __slots__ = ("kind", "winners", "propensity", "draws", "index", "means", "contenders")

    def __init__(self) -> None:
        self.kind = "pool"  # pool | uniform | clear
        self.winners: list[int] = []
        self.propensity: list[float] = []
        self.draws: Any = None
        self.index = 0
        self.means: list[float] = []
        self.contenders: list[int] = []


def _pool_seed(stats: Any, key: tuple[Any, ...]) -> int:
    material = repr((getattr(stats, "updated_at", 0), key)).encode()
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big")


def _build_table(
    stats: Any,
    key: tuple[Any, ...],
    successes: Sequence[float],
    trials: Sequence[float],
    prior: tuple[float, float],
    pool: int,
) -> _Table:
    pa, pb = float(prior[0]), float(prior[1])
    t = _Table()
    k = len(successes)
    t.means = [(s + pa) / (n + pa + pb) for s, n in zip(successes, trials, strict=True)]
    lower, upper = bandit.bounds(successes, trials, prior=(pa, pb))
    lower = [float(x) for x in lower]
    upper = [float(x) for x in upper]
    best = max(range(k), key=lower.__getitem__)
    contenders = [i for i in range(k) if upper[i] >= lower[best]]
    t.contenders = contenders
    if len(contenders) == 1:
        t.kind = "clear"
        t.index = contenders[0]
        return t
    shapes = {(successes[i], trials[i]) for i in contenders}
    if len(shapes) == 1:  # the contenders share one posterior (cold start): exactly uniform among them
        t.kind = "uniform"
        return t
    rng = make_rng(_pool_seed(stats, key))
    a = [successes[i] + pa for i in contenders]
    b = [trials[i] - successes[i] + pb for i in contenders]
    propensity = [0.0] * k
    if np is not None:
        draws = np.asarray(rng.betas(np.broadcast_to(np.asarray(a), (pool, len(a))), np.broadcast_to(np.asarray(b), (pool, len(b)))))
        draws = draws.reshape(pool, len(a))
        local = draws.argmax(axis=1)
        t.winners = [contenders[j] for j in local.tolist()]
        for j, c in enumerate(np.bincount(local, minlength=len(a)).tolist()):
            propensity[contenders[j]] = c / pool
    else:  # pure Python (Pyodide without wheels): a smaller table keeps the per-refresh cost near 10 ms
        pool = min(pool, 256)
        draws = [rng.betas(a, b) for _ in range(pool)]
        t.winners = [contenders[max(range(len(a)), key=row.__getitem__)] for row in draws]
        for w in t.winners:
            propensity[w] += 1.0 / pool
    t.draws = draws
    t.propensity = propensity
    return t


def choose_variant(
    stats: Any,
    creative: str,
    slot: str,
    variants: Sequence[str],
    signals: Mapping[str, str],
    objective: str,
    rng: Any,
    *,
    prior: tuple[float, float] = (1.0, 1.0),
    params: LearningParams = DEFAULT_PARAMS,
    explain: bool = False,
) -> bandit.Choice:
    """The component-level Thompson step for one slot: a :class:`dco.bandit.Choice` over ``variants``.

    Posteriors come from :func:`slot_counts`; arms that cannot win are pruned with :func:`dco.bandit.bounds`
    (one survivor: a clear winner, propensity 1). The first time a (slot, eligible variants, context) is met
    with a given stats table, ``params.pool`` joint Thompson draws are made at once (seeded from the table's
    ``updated_at`` and the key, so the same stats give the same table) and each row's winner is kept; a
    decision then picks one row with its own ``rng``. The propensity is exact for this policy: the share of
    rows the chosen variant wins. Contenders that share one posterior are chosen uniformly (``1 / c``).
    Per decision this costs one random number and a lookup; the table costs ``pool x contenders`` Beta draws
    once per stats refresh.
    """
    ctx = _context_values(signals, params)
    memo = _memo(stats)
    tables: Any = memo.get(("learning.tables", id(params)))
    if tables is None or tables[0] is not params:
        tables = memo[("learning.tables", id(params))] = (params, {}, {})
    # Fast path: the same variants object as last time for this (creative, slot, context) (the engine passes
    # one cached tuple per slot when no rule or exclusion narrows it), no need to hash 40 ids.
    short = (creative, slot, ctx, objective, prior)
    last = tables[2].get(short)
    if last is not None and last[0] is variants:
        table = last[1]
    else:
        key = (creative, slot, tuple(variants), ctx, objective, prior)
        table = tables[1].get(key)
        if table is not None:
            tables[2][short] = (variants, table)
    if table is None:
        successes, trials = slot_counts(stats, creative, slot, variants, signals, objective, params)
        if params.exploration != 1.0:
            scale = 1.0 / params.exploration
            successes = [x * scale for x in successes]
            trials = [x * scale for x in trials]
        table = tables[1][key] = _build_table(stats, key, successes, trials, prior, params.pool)
        tables[2][short] = (variants, table)
    if table.kind == "clear":
        i = table.index
        return bandit.Choice(i, 1.0, "thompson", ((i, table.means[i]),), True)
    u = rng.random()
    sampled: tuple[tuple[int, float], ...] = ()
    if table.kind == "uniform":
        c = len(table.contenders)
        i = table.contenders[min(int(u * c), c - 1)]
        sampled = tuple((j, table.means[j]) for j in table.contenders[:5]) if explain else ()
        return bandit.Choice(i, 1.0 / c, "thompson", sampled, False)
    r = min(int(u * len(table.winners)), len(table.winners) - 1)
    i = table.winners[r]
    if explain:
        row = [float(x) for x in table.draws[r]]
        top = sorted(range(len(row)), key=lambda j: -row[j])[:5]
        sampled = tuple((table.contenders[j], row[j]) for j in top)
    return bandit.Choice(i, table.propensity[i], "thompson", sampled, False)


def combination_arm(creative: str, variant_ids: Sequence[str]) -> str:
    """The arm key of an assembled combination (as :func:`dco.engine.combination_arm` writes it)."""
    return f"{creative}|" + ".".join(variant_ids)


def choose_combination(
    stats: Any,
    creative: str,
    slots: Sequence[tuple[str, Sequence[str]]],
    exclusions: Sequence[tuple[str, str]],
    signals: Mapping[str, str],
    objective: str,
    rng: Any,
    *,
    prior: tuple[float, float] = (1.0, 1.0),
    dim: str = "region",
) -> tuple[tuple[tuple[str, str], ...], bandit.Choice]:
    """The baseline: one Beta per full combination (per value of context dimension ``dim``, i.e. per AdTheme
    in a campaign whose tree maps one region to one theme), Thompson sampling over every allowed combination.

    Reads ``arm:<combination>@<dim>=<value>`` counters (all traffic when the request has no such value). The
    combination list and its row numbers in the stats table are computed once per stats table.
    """
    value = event_context(signals).get(dim)
    suffix = "" if value is None else f"@{dim}={value}"
    key = ("learning.combos", creative, tuple((s, tuple(v)) for s, v in slots), tuple(exclusions), suffix)
    memo = _memo(stats)
    found = memo.get(key)
    if found is None:
        banned = {frozenset(p) for p in exclusions}
        combos = [
            combo
            for combo in itertools.product(*(v for _, v in slots))
            if not banned or not any(frozenset(p) in banned for p in itertools.combinations(combo, 2))
        ]
        if not combos:
            raise ValueError("no allowed combination")
        idx = stats.indices([combination_arm(creative, c) + suffix for c in combos])
        found = memo[key] = (combos, idx)
    combos, idx = found
    successes, trials = stats.counts_at(idx, objective)
    choice = bandit.thompson(successes, trials, rng, prior=prior, bounds=stats.bounds_at(idx, objective, prior))
    names = [s for s, _ in slots]
    return tuple(zip(names, combos[choice.index], strict=True)), choice
