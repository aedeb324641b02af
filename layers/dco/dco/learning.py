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
    arm:<arm key>@region=<value>#e<bucket>          the same within time bucket ``now_s // bucket_s`` (when the
                                                    caller passes now_s): the short-memory fit after a change
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
object), and only the newest :attr:`LearningParams.arm_buckets` buckets of ``arm:...@region=...#e`` keys;
:func:`slot_counts` ignores older buckets anyway.

The component model (docs/learning.md has the reasoning and the figures). For a variant ``v`` of a slot, in a
request whose context is ``{region: pnw, device: mobile}``:

1. Partner adjustment (when the stats carry ``arm:<combination>@region=<value>`` counters): per region value,
   an additive model of the combinations, ``rate(c) = mu * prod_slot f_slot[v]``, fitted by backfitting with a
   Gamma prior of ``partner_strength`` pseudo-successes (:func:`_fit_additive`). ``f_v`` is the variant's
   effect with its partners held fixed: per-variant marginal counts credit a variant with its partners'
   quality (a variant served late, next to the partners the optimizer has learned to pick, looks better than
   one explored early next to random partners) and lock the slots into each other's early picks. The
   variant's rate is ``mu * mean partner effect * f_v`` with ``S_v + k_p`` pseudo-successes.
   Pairs (:func:`_partner_counts`): given the variants already chosen for the earlier slots (``chosen``), the
   rate is multiplied by each pair's residual under the fit, ``(S_uv + pair_strength) / (E_uv +
   pair_strength)``; a slot whose later slots are not chosen yet looks ahead: times its best completion at
   each of them against the best completion in general (residuals shrunk with ``lookahead_strength``), so a
   variant that only shines next to one partner (an interaction) is not lost on its own average.
2. The other context values (device): a shift ``(1 - share_v,d) * log(RR_v,d / RR_slot,d)`` in log-odds, with
   ``RR`` the Mantel-Haenszel rate ratio in ``d`` against elsewhere, compared within each time bucket (the
   same reason: a variant served on one device mostly late would look made for it), shrunk toward the slot's
   ratio with ``context_strength`` pseudo-successes (:func:`_context_shifts`).
3. Without combination counters (or for a slot whose world changed, see below) the back-off on component
   counters::

       m_slot  = (S_slot + 1) / (N_slot + 2)                      all variants of the slot pooled
       m_v     = (S_v + k m_slot) / (N_v + k)                     the variant over all contexts, shrunk to the slot
       c_v,d   = expit(logit m_v + logit m_slot,d - logit m_slot) the centre in context value d
       p_v,d   = (S_v,d + k c_v,d) / (N_v,d + k)                  the variant within d, shrunk to the centre
       logit p = logit m_v + sum_d (logit p_v,d - logit m_v)      context values combine additively in log-odds
       n       = min_d (N_v,d + k)                                the least-informed value sets the spread
       (successes, trials) = (p n, n)

Drift: a slot changed in a context when, in any window of ``recent_buckets`` time buckets within the newest
``arm_buckets``, a variant's clicks miss what the fit predicts for its impressions there (given the partners
served in the same buckets) by more than ``change_z`` Poisson standard errors and ``change_ratio`` of the
prediction (:func:`_value_drifted`); without a fit, when any of its counters fails a two-proportion test of
recent against older rates. A changed slot forgets: it is scored from the short-memory fit (the same backfit
on the time-bucketed combination counters, weighted ``0.5 ** (age_b * bucket_s / arm_half_life_s)``), and its
back-off and context shifts take the time-discounted component counts ``sum_b 0.5 ** (age_b * bucket_s /
half_life_s) * count_b``. Stable slots keep the whole history. Every slot samples from posteriors with the
counts scaled by ``1 / exploration``.
Holdout traffic never enters component or per-region arm counters, so the control group stays clean.
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
    "arm_counter_keys",
    "counter_keys",
    "variant_counter_keys",
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
# Context dimensions that split the per-region combination counters once more (``arm:<arm>@region=<r>@device=<d>``,
# no time bucket): the cells of the region's combination fit, which then carries a device x variant effect per
# slot (:func:`_fits`). Without them a component whose effect differs by device (a CTA made for mobile) confounds
# the region's fit: the variants of the other slots served next to it on one device take its credit or blame.
ARM_CELL_DIMENSIONS: tuple[str, ...] = ("device",)
BUCKET_SUFFIX = "#e"


def cell_suffixes(dims: tuple[tuple[str, str], ...]) -> list[str]:
    """The device cell suffixes (``@device=<d>``) that follow each per-region combination key of a steered
    decision in context ``dims`` (:func:`arm_counter_keys`)."""
    return [f"@{dim}={value}" for dim, value in dims if dim in ARM_CELL_DIMENSIONS]


def cell_host(key: str) -> tuple[str, str] | None:
    """``(host key, cell suffix)`` of a device-cell counter key, None for any other key. The fold stores a cell in
    its host's item (docs/storage.md): the decision's device is constant, so the cell is a sub-counter of the
    decision's per-region combination counter.

    >>> cell_host("arm:cr|h1.c2@region=pnw@device=mobile"), cell_host("arm:cr|h1.c2@region=pnw")
    (('arm:cr|h1.c2@region=pnw', '@device=mobile'), None)
    """
    if not key.startswith("arm:") or BUCKET_SUFFIX in key:
        return None
    head, sep, tail = key.rpartition("@")
    if not sep or tail.partition("=")[0] not in ARM_CELL_DIMENSIONS:
        return None
    if head.rpartition("@")[2].partition("=")[0] not in ARM_CONTEXT_DIMENSIONS:
        return None
    return head, key[len(head):]


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
    Beta posteriors with the counts doubled, i.e. half the variance: more exploitation);
    ``arm_buckets`` and ``arm_half_life_s`` the window and weighting of the short-memory combination fit a
    changed slot is scored from; ``pair_strength`` the pseudo-successes that shrink a pair's residual given the
    variants already chosen (0: no pair terms, no look-ahead); ``lookahead_strength`` the same for an earlier
    slot looking ahead to the slots not chosen yet (0: off).
    """

    strength: float = 20.0
    half_life_s: float = 86400.0
    bucket_s: int = 86400
    buckets: int = 14
    change_z: float = 3.0
    change_ratio: float = 0.3
    recent_buckets: int = 2
    pool: int = 1024
    dims: tuple[str, ...] = ("region", "device")
    exploration: float = 0.5
    partner_strength: float = 2.0
    national_prior: bool = False
    context_strength: float = 5.0
    sweeps: int = 12
    arm_buckets: int = 4
    arm_half_life_s: float = 86400.0
    pair_strength: float = 50.0
    lookahead_strength: float = 10.0
    cell_strength: float = 50.0


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
    time-bucketed component counters and one time-bucketed per-region combination counter that the drift
    handling reads; without it none are emitted. A steered event with a device also counts its per-region
    combination within that device (``...@region=<r>@device=<d>``, the cells of the region's fit; no time
    bucket).

    >>> counter_keys(arm="cr|h1.i2", creative="cr", variants=["headline=h1"], context={"region": "pnw"},
    ...              now_s=86400 * 3)
    ... # doctest: +NORMALIZE_WHITESPACE
    ['arm:cr|h1.i2', 'arm:cr', 'split:optimized', 'arm:cr|h1.i2@region=pnw', 'arm:cr|h1.i2@region=pnw#e3',
     'comp:cr|headline=h1', 'comp:cr|headline=h1#e3', 'comp:cr|headline=h1@region=pnw',
     'comp:cr|headline=h1@region=pnw#e3']
    """
    dims = tuple(sorted((context or {}).items()))
    suffix = None if now_s is None else f"{BUCKET_SUFFIX}{int(now_s) // int(bucket_s)}"
    keys = arm_counter_keys(arm, creative, dims, holdout, suffix)
    if not holdout:
        for item in variants:
            keys += variant_counter_keys(creative, item, dims, suffix)
    return keys


def arm_counter_keys(
    arm: str,
    creative: str,
    dims: tuple[tuple[str, str], ...],
    holdout: bool,
    suffix: str | None,
    with_cells: bool = True,
) -> list[str]:
    """The first part of :func:`counter_keys`: the arm, creative, split and per-region combination counters.

    ``dims`` is the event context as sorted ``(dimension, value)`` pairs; ``suffix`` the time bucket's key
    suffix (``#e<bucket>``) or None. The fold resolves this part once per decision and
    :func:`variant_counter_keys` once per (variant, context, bucket), which many decisions share.
    ``with_cells=False`` leaves out the device cells (the fold adds them to their host's item:
    :func:`cell_suffixes`).
    """
    keys = [f"arm:{arm}"]
    if arm != creative:
        keys.append(f"arm:{creative}")
    keys.append("split:holdout" if holdout else "split:optimized")
    if not holdout and arm != creative:
        cells = cell_suffixes(dims) if with_cells else ()
        for dim, value in dims:
            if dim in ARM_CONTEXT_DIMENSIONS:
                keys.append(f"arm:{arm}@{dim}={value}")
                if suffix is not None:
                    keys.append(f"arm:{arm}@{dim}={value}{suffix}")
                for cell in cells:
                    keys.append(f"arm:{arm}@{dim}={value}{cell}")
    return keys


def variant_counter_keys(
    creative: str, item: str, dims: tuple[tuple[str, str], ...], suffix: str | None
) -> list[str]:
    """The component counters of one ``"slot=variant"`` of a steered (not holdout) event (see
    :func:`arm_counter_keys` for ``dims`` and ``suffix``)."""
    slot, _, variant = item.partition("=")
    base = f"comp:{component_key(creative, slot, variant)}"
    if suffix is None:
        return [base, *(f"{base}@{dim}={value}" for dim, value in dims)]
    keys = [base, base + suffix]
    for dim, value in dims:
        key = f"{base}@{dim}={value}"
        keys.append(key)
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
    changed: set[str] = set()
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
                changed.add(base)
        for base, acc in sums.items():
            out.setdefault(base, (acc[0], acc[1], acc[2]))
        memo[key + ("short",)] = {base: (acc[0], acc[1], acc[2]) for base, acc in sums.items()}
        memo[key + ("recent",)] = recent
        memo[key + ("newest",)] = newest
    memo[key] = out
    memo[key + ("changed",)] = changed
    return out


def _changed_keys(
    stats: Any, params: LearningParams
) -> tuple[set[str], dict[str, tuple[float, float, float]], dict[str, list[float]]]:
    """Base component keys where a change was detected, the discounted counts of every key (short memory) and
    the undiscounted counts of the newest ``recent_buckets`` buckets."""
    _decayed(stats, params)
    key = ("learning.decayed", params.half_life_s, params.bucket_s, params.buckets, params.change_z,
           params.recent_buckets)
    memo = _memo(stats)
    return memo.get(key + ("changed",), set()), memo.get(key + ("short",), {}), memo.get(key + ("recent",), {})


def _drifted(
    stats: Any,
    creative: str,
    slot: str,
    variants: Sequence[str],
    ctx: tuple[tuple[str, str], ...],
    objective: str,
    params: LearningParams,
    located: tuple[_Fit, int, _Fit, str | None] | None,
) -> bool:
    """Whether the world changed for this slot in this context.

    With a fit of the request's arm context value (:func:`_fits`): :func:`_value_drifted` (a test of the
    whole context value that the partners' improvement over time does not trip). Otherwise: any counter of
    the variants failed the two-proportion test of :func:`_decayed`.
    """
    if params.change_z <= 0:
        return True
    if located is None or located[3] is None:
        changed = _changed_keys(stats, params)[0]
        return bool(changed) and any(
            base in changed or any(f"{base}@{d}={v}" in changed for d, v in ctx)
            for base in (component_key(creative, slot, v) for v in variants)
        )
    return _value_drifted(stats, creative, objective, params, located)


def _value_drifted(
    stats: Any, creative: str, objective: str, params: LearningParams, located: tuple[_Fit, int, _Fit, str | None]
) -> bool:
    """Whether the newest ``recent_buckets`` buckets of the located slot in a context value disagree with
    its fit.

    For every variant of the slot: its clicks in those buckets against what the fit predicts for its
    impressions there, given the partners served in the same buckets (their impression mix times their fitted
    effects); a change when any differs by more than ``change_z`` Poisson standard errors and by more than
    ``change_ratio`` of the prediction. Once per stats table, slot and context value.
    """
    fit, slot_position, national, value = located
    memo = _memo(stats)
    key = ("learning.value_drifted", creative, objective, value, slot_position, params)
    found = memo.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return,unused-ignore]
    memo[key] = False
    combined = _combination_windows(stats, creative, objective, params, value) if fit.combos is not None else None
    if combined is not None:
        before, windows = combined
        out = any(_combos_drifted(window, before, fit, slot_position, creative, params) for window in windows)
    else:
        out = any(
            _window_drifted(window, fit, slot_position, national, value, creative, objective, params, stats)
            for window in _windows(stats, params)
        )
    memo[key] = out
    return out


def _combination_windows(
    stats: Any, creative: str, objective: str, params: LearningParams, value: str | None
) -> tuple[tuple[Any, Any], list[tuple[Any, Any, Any]]] | None:
    """The time-bucketed combination counters of one region (``arm:<combination>@region=<value>#e<b>``) in the
    windows of :func:`_windows` (``recent_buckets`` buckets each, newest first, within the newest
    ``arm_buckets``): per window ``(combination ids, impressions, successes)``, and before them, per combination
    id, ``(impressions, successes)`` of the region's history older than the windows (the absolute counters less
    the buckets inside the windows; the stats object may keep older buckets, which are history too). None
    without them (numpy only)."""
    if np is None or value is None:
        return None
    memo = _memo(stats)
    marker = f"@{ARM_CONTEXT_DIMENSIONS[0]}="
    both = memo.get(("learning.arm_rows", creative, marker))
    reg = _COMBOS.get((creative, marker))
    if both is None or reg is None or value not in reg.value_ids:
        return None
    key = ("learning.combination_windows", creative, objective, value, params.recent_buckets, params.arm_buckets)
    found = memo.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return,unused-ignore]
    rows, codes = both
    bucket_plus = codes & ((1 << _BUCKET_BITS) - 1)
    values = (codes >> _BUCKET_BITS) & ((1 << _VALUE_BITS) - 1)
    mine = (bucket_plus > 0) & (values == reg.value_ids[value])
    if not mine.any():
        memo[key] = None
        return None
    b = bucket_plus[mine] - 1
    _changed_keys(stats, params)  # memoizes the newest bucket of the stats (the windows of _windows)
    newest = _newest_bucket(stats, params)
    if newest is None:  # no time-bucketed component counters: the combinations' own newest bucket
        newest = int(b.max())
    width, count = _window_shape(params)
    w = (newest - b) // width
    inside = (w >= 0) & (w < count)
    b, w = b[inside], w[inside]
    cid = (codes[mine] >> (_VALUE_BITS + _BUCKET_BITS)).astype(np.intp)[inside]
    successes, trials = stats.counts_at(rows[mine][inside], objective)
    n = np.asarray(trials, dtype=float)
    s = np.minimum(np.asarray(successes, dtype=float), n)
    size = len(reg.ids)
    whole = (bucket_plus == 0) & (values == reg.value_ids[value])
    s_all, n_all = stats.counts_at(rows[whole], objective)
    cid_all = (codes[whole] >> (_VALUE_BITS + _BUCKET_BITS)).astype(np.intp)
    n_all = np.asarray(n_all, dtype=float)
    n_before = np.bincount(cid_all, weights=n_all, minlength=size) - np.bincount(cid, weights=n, minlength=size)
    s_before = (np.bincount(cid_all, weights=np.minimum(np.asarray(s_all, dtype=float), n_all), minlength=size)
                - np.bincount(cid, weights=s, minlength=size))
    before = (np.maximum(n_before, 0.0), np.maximum(s_before, 0.0))
    out = []
    for i in range(count):
        sel = (w == i) & (n > 0)
        if sel.any():
            out.append((cid[sel], n[sel], s[sel]))
    memo[key] = (before, out)
    return memo[key]  # type: ignore[no-any-return,unused-ignore]


def _combos_drifted(window: tuple[Any, Any, Any], before: tuple[Any, Any], fit: _Fit, slot_position: int,
                    creative: str, params: LearningParams) -> bool:
    """:func:`_value_drifted` for one window of combination counters: per variant of the slot, its clicks in
    the window against what each combination it was served in earned before the windows (its own history,
    shrunk toward the fit's rate for it with ``pair_strength`` pseudo-successes: a combination seen little
    before is expected to earn what the fit says), times that combination's impressions in the window. The
    partners are exact (the combinations served) and a combination's history carries its interactions and
    the devices it is served on, so neither the partners' improvement over time, nor an interaction the
    additive fit misses, nor a partner's device-specific effect trips it."""
    assert np is not None
    reg_columns = _COMBOS[(creative, f"@{ARM_CONTEXT_DIMENSIONS[0]}=")].position_arrays()[1:]
    if slot_position >= len(reg_columns):
        return False
    cid, n, s = window
    n_before, s_before = before
    fitted = fit.combos
    seen = cid < fitted.shape[0]  # (n_before has a row per combination id of the registry)
    cid, n, s = cid[seen], n[seen], s[seen]
    known = fitted[cid] > 0
    if not known.any():
        return False
    cid, n, s = cid[known], n[known], s[known]
    a = max(params.pair_strength, 1.0)
    rates = (s_before[cid] + a) / (n_before[cid] + a / fitted[cid])
    variant = reg_columns[slot_position][cid]
    size = int(variant.max()) + 1
    clicks = np.bincount(variant, weights=s, minlength=size)
    expected = np.bincount(variant, weights=n * rates, minlength=size)
    diff = clicks - expected
    z2 = params.change_z * params.change_z
    flagged = (diff * diff > z2 * np.maximum(expected, 1.0)) & (np.abs(diff) > params.change_ratio * expected)
    return bool(flagged.any())


def _newest_bucket(stats: Any, params: LearningParams) -> int | None:
    """The newest time bucket of the stats' component counters, as :func:`_decayed` found it (None before
    :func:`_decayed` ran for ``params``, or without time-bucketed counters)."""
    key = ("learning.decayed", params.half_life_s, params.bucket_s, params.buckets, params.change_z,
           params.recent_buckets, "newest")
    newest: int | None = _memo(stats).get(key)
    return newest


def _window_shape(params: LearningParams) -> tuple[int, int]:
    """``(buckets per window, windows)``: disjoint windows of ``recent_buckets`` buckets covering the newest
    ``arm_buckets`` (:func:`_windows`, :func:`_combination_windows`)."""
    width = max(1, params.recent_buckets)
    return width, max(1, -(-params.arm_buckets // width))


def _windows(stats: Any, params: LearningParams) -> list[dict[str, list[float]]]:
    """Component counts of disjoint windows of ``recent_buckets`` time buckets, newest first, as far back as
    the short-memory fit reads (``arm_buckets``): base component key -> ``[impressions, clicks, conversions]``.

    Testing every window, not only the newest, keeps a change detected while its buckets are in the short
    memory: otherwise the test goes quiet as soon as the old winners stop being served (no recent impressions,
    no evidence), the long memory takes over, serves them again, and the slot oscillates."""
    memo = _memo(stats)
    key = ("learning.windows", params.recent_buckets, params.arm_buckets, params.bucket_s)
    found = memo.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return,unused-ignore]
    recent = _changed_keys(stats, params)[2]
    newest = _newest_bucket(stats, params)
    width, count = _window_shape(params)
    out: list[dict[str, list[float]]] = [recent] if recent else []
    if newest is not None and count > 1:
        older: list[dict[str, list[float]]] = [{} for _ in range(count - 1)]
        for name, row in _component_rows(stats).items():
            base, sep, bucket = name.partition(BUCKET_SUFFIX)
            if not sep:
                continue
            try:
                w = (newest - int(bucket)) // width - 1
            except ValueError:
                continue
            if 0 <= w < count - 1:
                acc = older[w].get(base)
                if acc is None:
                    acc = older[w][base] = [0.0, 0.0, 0.0]
                imps = float(row[0])
                acc[0] += imps
                acc[1] += min(float(row[1]), imps)
                acc[2] += min(float(row[2]), imps)
        out.extend(w for w in older if w)
    memo[key] = out
    return out


def _window_drifted(
    recent: Mapping[str, Sequence[float]],
    fit: _Fit,
    slot_position: int,
    national: _Fit,
    value: str | None,
    creative: str,
    objective: str,
    params: LearningParams,
    stats: Any,
) -> bool:
    """:func:`_value_drifted` for one window of component counts."""
    col = 1 if objective == "click" else 2
    dim = ARM_CONTEXT_DIMENSIONS[0]
    slots = _slot_names(stats, creative)
    # per position: [(impressions, clicks, fitted effect)] of its variants in the window
    seen: list[list[tuple[float, float, float]]] = []
    mix: list[float] = []
    for q in range(fit.main):
        known = fit.positions[q]
        eff = fit.effect[q]
        prior = national.effect[q] if q < len(national.effect) else {}
        rows = []
        for v in known.keys() | prior.keys():
            name = slots.get(v)
            if name is None:
                continue
            r = recent.get(f"{creative}|{name}={v}@{dim}={value}")
            if r is not None and r[0] > 0:
                rows.append((float(r[0]), float(r[col]), eff.get(v, prior.get(v, 1.0))))
        seen.append(rows)
        imps = sum(r[0] for r in rows)
        mix.append(sum(r[0] * r[2] for r in rows) / imps if imps > 0 else 1.0)
    z2 = params.change_z * params.change_z
    p = slot_position
    if p >= len(seen):
        return False
    partners = math.prod(m for q, m in enumerate(mix) if q != p)
    mu = fit.ref[p] / max(fit.partner[p], 1e-12)
    for n_v, clicks, effect_v in seen[p]:
        expected = n_v * mu * effect_v * partners
        diff = clicks - expected
        if diff * diff > z2 * max(expected, 1.0) and abs(diff) > params.change_ratio * expected:
            return True
    return False


def _slot_names(stats: Any, creative: str) -> dict[str, str]:
    """Variant id -> slot name of ``creative``, from its component counters (once per stats table)."""
    memo = _memo(stats)
    key = ("learning.slots", creative)
    found = memo.get(key)
    if found is None:
        found = memo[key] = {}
        prefix = f"{creative}|"
        for name in _component_rows(stats):
            if name.startswith(prefix) and "@" not in name and BUCKET_SUFFIX not in name:
                slot, _, v = name[len(prefix):].partition("=")
                found.setdefault(v, slot)
    return found  # type: ignore[no-any-return,unused-ignore]


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


# ------------------------------------------------------------------------------------------- partner adjustment


class _Fit:
    """An additive (log-linear) model of one creative's combination counters within one context value.

    ``positions[p]`` maps a variant id to its row at position ``p`` of the combination key; ``shape[p][j]`` and
    ``rate[p][j]`` are the Gamma posterior of that variant's multiplicative effect (mean ``shape / rate``);
    ``ref[p]`` turns an effect into a click rate (the base rate times the average effect of the partners).
    ``cells`` (a fit of device cells): slot position -> the position of its device x variant effects, whose
    names are ``<variant>@<dim>=<value>``; the slot positions come first (``main`` of them).
    """

    __slots__ = ("positions", "shape", "rate", "ref", "effect", "partner", "data", "pairs", "cells", "main", "combos")

    def __init__(self) -> None:
        self.combos: Any = None  # (numpy path) per combination id of :class:`_Combos`: the fitted click rate
        self.cells: dict[int, int] = {}
        self.main = 0
        self.data: Any = None  # (index per position, impressions, successes, fitted successes) per row
        self.pairs: dict[tuple[Any, ...], Any] = {}  # pair tables, factors and look-aheads, by kind and positions
        self.positions: list[dict[str, int]] = []
        self.shape: list[list[float]] = []
        self.rate: list[list[float]] = []
        self.ref: list[float] = []
        self.partner: list[float] = []
        self.effect: list[dict[str, float]] = []


def _fit_additive(
    rows: Sequence[tuple[tuple[str, ...], float, float]],
    prior: _Fit | None,
    k: float,
    sweeps: int,
    indexed: tuple[list[dict[str, int]], list[Any], Any, Any] | None = None,
    strengths: Sequence[float] | None = None,
) -> _Fit:
    """Fit ``rate(combination) = mu * prod_p f_p[v_p]`` to ``(variant ids, impressions, successes)`` rows.

    Backfitting (iterative proportional fitting with a Gamma prior): for each position ``p`` in turn,
    ``f_p[v] = (S_p[v] + k g_p[v]) / (X_p[v] + k)`` where ``S_p[v]`` are the successes of the combinations with
    ``v`` at ``p``, ``X_p[v] = mu * sum N_c prod_{q != p} f_q`` their exposure adjusted for the partners they
    were served with (in expected successes at ``f = 1``), and ``g_p[v]`` the prior centre (``prior``'s effect,
    1 without one). The partners' adjustment is what per-variant marginal counts lack: a variant served mostly
    next to strong partners looks better than it is, one explored early next to random partners worse.

    ``indexed`` (numpy only, instead of ``rows``): the rows already laid out as ``(positions, index arrays per
    position, impressions, successes)`` (:func:`_fits`). ``strengths`` (numpy only): the prior strength per
    position instead of ``k``.
    """
    fit = _Fit()
    if indexed is not None:
        fit.positions, index, n_given, s_given = indexed
        width = len(fit.positions)
    else:
        width = len(rows[0][0])
        fit.positions = [{} for _ in range(width)]
        index = [[fit.positions[p].setdefault(parts[p], len(fit.positions[p])) for parts, _, _ in rows]
                 for p in range(width)]
    sizes = [len(d) for d in fit.positions]
    centre = []
    for p in range(width):
        g = [1.0] * sizes[p]
        if prior is not None and p < len(prior.effect):
            known = prior.effect[p]
            for v, j in fit.positions[p].items():
                g[j] = known.get(v, 1.0)
        centre.append(g)
    if indexed is not None:
        imps, succ = n_given, s_given
        total_s = float(s_given.sum())
    else:
        imps = [float(r[1]) for r in rows]
        succ = [float(r[2]) for r in rows]
        total_s = sum(succ)
    if np is not None:
        n_arr = np.asarray(imps, dtype=float)
        s_arr = np.asarray(succ, dtype=float)
        idx = [np.asarray(ix, dtype=np.intp) for ix in index]
        g_arr = [np.asarray(g) for g in centre]
        s_pos = [np.bincount(idx[p], weights=s_arr, minlength=sizes[p]) for p in range(width)]
        f = [g.copy() for g in g_arr]
        prod = np.ones(len(n_arr))
        for p in range(width):
            prod = prod * f[p][idx[p]]
        mu = max(total_s, 0.5) / max(float(n_arr @ prod), 1.0)
        x_pos = [np.zeros(sizes[p]) for p in range(width)]
        ref = [1.0] * width
        ks = list(strengths) if strengths is not None else [k] * width
        for _ in range(sweeps):
            for p in range(width):
                partner = prod / f[p][idx[p]]
                w = n_arr * partner
                x_pos[p] = mu * np.bincount(idx[p], weights=w, minlength=sizes[p])
                f[p] = (s_pos[p] + ks[p] * g_arr[p]) / (x_pos[p] + ks[p])
                prod = partner * f[p][idx[p]]
                ref[p] = float(w.sum()) / max(float(n_arr.sum()), 1.0)
            mu = max(total_s, 0.5) / max(float(n_arr @ prod), 1.0)
        fit.data = (idx, n_arr, s_arr, n_arr * prod * mu)
        fit.shape = [(s_pos[p] + ks[p] * g_arr[p]).tolist() for p in range(width)]
        fit.rate = [(x_pos[p] + ks[p]).tolist() for p in range(width)]
        fit.ref = [mu * r for r in ref]
        fit.partner = list(ref)
    else:
        s_pos = []
        for p in range(width):
            acc = [0.0] * sizes[p]
            for j, s in zip(index[p], succ, strict=True):
                acc[j] += s
            s_pos.append(acc)
        fl = [list(g) for g in centre]
        prod_l = [1.0] * len(rows)
        for p in range(width):
            prod_l = [x * fl[p][j] for x, j in zip(prod_l, index[p], strict=True)]
        mu = max(total_s, 0.5) / max(sum(n * x for n, x in zip(imps, prod_l, strict=True)), 1.0)
        x_l = [[0.0] * sizes[p] for p in range(width)]
        ref = [1.0] * width
        for _ in range(sweeps):
            for p in range(width):
                fp = fl[p]
                partner = [x / fp[j] for x, j in zip(prod_l, index[p], strict=True)]
                acc = [0.0] * sizes[p]
                wsum = 0.0
                for j, n, x in zip(index[p], imps, partner, strict=True):
                    acc[j] += n * x
                    wsum += n * x
                x_l[p] = [mu * a for a in acc]
                fl[p] = [(s + k * g) / (x + k) for s, g, x in zip(s_pos[p], centre[p], x_l[p], strict=True)]
                fp = fl[p]
                prod_l = [x * fp[j] for x, j in zip(partner, index[p], strict=True)]
                ref[p] = wsum / max(sum(imps), 1.0)
            mu = max(total_s, 0.5) / max(sum(n * x for n, x in zip(imps, prod_l, strict=True)), 1.0)
        fit.data = (index, imps, succ, [n * x * mu for n, x in zip(imps, prod_l, strict=True)])
        fit.shape = [[s + k * g for s, g in zip(s_pos[p], centre[p], strict=True)] for p in range(width)]
        fit.rate = [[x + k for x in x_l[p]] for p in range(width)]
        fit.ref = [mu * r for r in ref]
        fit.partner = list(ref)
    fit.effect = [
        {v: fit.shape[p][j] / fit.rate[p][j] for v, j in fit.positions[p].items()} for p in range(width)
    ]
    fit.main = width
    return fit


def _fits(
    stats: Any, creative: str, objective: str, params: LearningParams, recent: bool = False
) -> dict[str | None, _Fit]:
    """Context value (``None``: all of them) -> :class:`_Fit` of the creative's ``arm:<combination>@<dim>=<value>``
    counters; built once per stats table. Empty when the table carries no such counters.

    ``recent``: the fit of the time-bucketed copies (``...@<dim>=<value>#e<bucket>``) instead, the newest
    ``arm_buckets`` buckets weighted ``0.5 ** (age * bucket_s / half_life_s)``: the short memory a slot whose
    world changed is scored from (empty without bucketed combination counters).
    """
    memo = _memo(stats)
    key = ("learning.fits", creative, objective, params.partner_strength, params.sweeps, params.national_prior,
           recent, params.arm_buckets if recent else 0, params.arm_half_life_s, params.bucket_s, params.cell_strength)
    found = memo.get(key)
    if found is not None:
        return found  # type: ignore[no-any-return,unused-ignore]
    out: dict[str | None, _Fit] = {}
    memo[key] = out
    items = getattr(stats, "items_with_separator", None)
    if items is None or params.partner_strength <= 0:
        return out
    if np is not None:
        out.update(_fits_np(stats, creative, objective, params, recent))
        return out
    prefix = f"{creative}|"
    dim = ARM_CONTEXT_DIMENSIONS[0]
    marker = f"@{dim}="
    names: list[str] = []
    buckets: list[int] = []
    for name, _row in items(marker):
        if not name.startswith(prefix):
            continue
        base, sep, bucket = name.partition(BUCKET_SUFFIX)
        if bool(sep) != recent:
            continue
        if sep:
            try:
                buckets.append(int(bucket))
            except ValueError:
                continue
        names.append(name)
    if not names:
        return out
    weights = [1.0] * len(names)
    if recent:
        newest = max(buckets)
        decay = math.log(0.5) * params.bucket_s / params.arm_half_life_s
        weights = [math.exp(decay * (newest - b)) if newest - b < params.arm_buckets else 0.0 for b in buckets]
    successes, trials = stats.counts_at(stats.indices(names), objective)
    if hasattr(successes, "tolist"):
        successes, trials = successes.tolist(), trials.tolist()
    by_value: dict[str, dict[tuple[str, ...], list[float]]] = {}
    pooled: dict[tuple[str, ...], list[float]] = {}
    width = None
    for name, s, n, w in zip(names, successes, trials, weights, strict=True):
        combo, _, value = name[len(prefix):].partition(BUCKET_SUFFIX)[0].rpartition(marker)
        if "@" in value:  # a device cell (ARM_CELL_DIMENSIONS): read by the numpy path only
            continue
        parts = tuple(combo.split("."))
        if width is None:
            width = len(parts)
        if len(parts) != width or n <= 0 or w <= 0:
            continue
        n = float(n) * w
        s = min(float(s) * w, n)
        for acc_map in (by_value.setdefault(value, {}), pooled):
            acc = acc_map.get(parts)
            if acc is None:
                acc_map[parts] = [n, s]
            else:
                acc[0] += n
                acc[1] += s
    if not pooled:
        return out
    k = params.partner_strength
    national = _fit_additive([(p, v[0], v[1]) for p, v in pooled.items()], None, k, params.sweeps)
    out[None] = national
    for value, rs in by_value.items():
        out[value] = _fit_additive(
            [(p, v[0], v[1]) for p, v in rs.items()], national if params.national_prior else None, k, params.sweeps
        )
    return out


class _Combos:
    """Combination arm keys seen by this process, parsed once: ``<creative>|<v1>.<v2>...`` -> an id, and per
    position the variant of each id as an id into ``names``. Lives across stats tables (the keys of a campaign
    recur at every refresh); :func:`_combos` starts over when it grows past a bound."""

    LIMIT = 200_000

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.widths: list[int] = []  # per combination id: its number of positions
        self.columns: list[list[int]] = []  # per position: variant id per combination id (-1: no such position)
        self.variant_ids: dict[str, int] = {}
        self.names: list[str] = []
        self.names_array: Any = None
        self.arrays: tuple[int, list[Any]] = (0, [])
        self.parsed: dict[str, int] = {}  # arm key -> packed (combination id, value id, bucket + 1), -1: not one
        self.value_ids: dict[str, int] = {}  # context value -> id
        self.values: list[str] = []

    def combo(self, head: str, prefix_len: int) -> int:
        found = self.ids.get(head)
        if found is None:
            parts = head[prefix_len:].split(".")
            while len(self.columns) < len(parts):
                self.columns.append([-1] * len(self.widths))
            for p, column in enumerate(self.columns):
                if p < len(parts):
                    v = self.variant_ids.get(parts[p])
                    if v is None:
                        v = self.variant_ids[parts[p]] = len(self.names)
                        self.names.append(parts[p])
                    column.append(v)
                else:
                    column.append(-1)
            found = self.ids[head] = len(self.widths)
            self.widths.append(len(parts))
        return found

    def position_arrays(self) -> list[Any]:
        """``[widths, column of position 0, column of position 1, ...]`` as index arrays."""
        assert np is not None
        size, arrays = self.arrays
        if size != len(self.ids):
            arrays = [np.asarray(self.widths, dtype=np.intp)] + [np.asarray(c, dtype=np.intp) for c in self.columns]
            self.arrays = (len(self.ids), arrays)
            self.names_array = np.asarray(self.names, dtype=object)
        return arrays


_COMBOS: dict[tuple[str, str], _Combos] = {}


def _combos(creative: str, marker: str) -> _Combos:
    found = _COMBOS.get((creative, marker))
    if found is None or len(found.parsed) > _Combos.LIMIT:
        found = _COMBOS[(creative, marker)] = _Combos()
    return found


_BUCKET_BITS = 26  # the packed parse of a combination key: combination id, context value id, bucket + 1
_VALUE_BITS = 12


def _arm_rows(stats: Any, reg: _Combos, prefix: str, marker: str) -> tuple[Any, Any]:
    """The creative's combination counters in one pass over the stats keys: ``(stats rows, codes)``, a code
    packing ``(combination id, context value id, bucket + 1)`` (bucket + 1 = 0: no time bucket) of
    :class:`_Combos`; keys of other creatives or with a malformed bucket are left out."""
    assert np is not None
    items = stats.items_with_separator(marker)
    get = reg.parsed.get
    codes = np.fromiter((get(name, -2) for name, _ in items), dtype=np.int64, count=len(items))
    for at in np.nonzero(codes == -2)[0].tolist():  # keys not met before: parsed once per process
        name = items[at][0]
        code = -1
        if name.startswith(prefix):
            base, sep, bucket = name.partition(BUCKET_SUFFIX)
            b = 0
            if sep:
                try:
                    b = int(bucket) + 1
                except ValueError:
                    b = -1
            if 0 <= b < 1 << _BUCKET_BITS:
                head, _, value = base.rpartition(marker)
                v = reg.value_ids.get(value)
                if v is None:
                    v = reg.value_ids[value] = len(reg.values)
                    reg.values.append(value)
                if v < 1 << _VALUE_BITS:
                    code = (reg.combo(head, len(prefix)) << (_VALUE_BITS + _BUCKET_BITS)) | (v << _BUCKET_BITS) | b
        reg.parsed[name] = code
        codes[at] = code
    rows = np.fromiter((row for _, row in items), dtype=np.intp, count=len(items))
    keep = codes >= 0
    return rows[keep], codes[keep]


def _fits_np(
    stats: Any, creative: str, objective: str, params: LearningParams, recent: bool
) -> dict[str | None, _Fit]:
    """:func:`_fits` with numpy: the keys parsed once per process (:class:`_Combos`), the counts summed per
    (context value, combination) with ``bincount``, the rows handed to :func:`_fit_additive` already indexed."""
    assert np is not None
    out: dict[str | None, _Fit] = {}
    prefix = f"{creative}|"
    dim = ARM_CONTEXT_DIMENSIONS[0]
    marker = f"@{dim}="
    reg = _combos(creative, marker)
    memo = _memo(stats)
    both = memo.get(("learning.arm_rows", creative, marker))
    if both is None:
        both = memo[("learning.arm_rows", creative, marker)] = _arm_rows(stats, reg, prefix, marker)
    rows, codes = both
    bucket_plus = codes & ((1 << _BUCKET_BITS) - 1)
    mine = bucket_plus > 0 if recent else bucket_plus == 0
    if not mine.any():
        return out
    rows, codes, bucket_plus = rows[mine], codes[mine], bucket_plus[mine]
    cid = (codes >> (_VALUE_BITS + _BUCKET_BITS)).astype(np.intp)
    values = ((codes >> _BUCKET_BITS) & ((1 << _VALUE_BITS) - 1)).astype(np.intp)
    widths, *columns = reg.position_arrays()
    successes, trials = stats.counts_at(rows, objective)
    if recent:
        b_arr = bucket_plus - 1
        age = b_arr.max() - b_arr
        decay = math.log(0.5) * params.bucket_s / params.arm_half_life_s
        w = np.where(age < params.arm_buckets, np.exp(decay * age), 0.0)
        n = trials * w
        s = np.minimum(successes * w, n)
    else:
        n = np.asarray(trials, dtype=float)
        s = np.minimum(successes, n)
    width = int(widths[cid[0]])  # the first key's number of positions: a combination of another is skipped
    columns = columns[:width]
    keep = (n > 0) & (widths[cid] == width)
    cid, n, s, vals = cid[keep], n[keep], s[keep], values[keep]
    size = len(reg.ids)
    k = params.partner_strength

    def fit_of(n_c: Any, s_c: Any, prior: _Fit | None) -> _Fit | None:
        used = np.nonzero(n_c > 0)[0]
        if used.size == 0:
            return None
        positions: list[dict[str, int]] = []
        index: list[Any] = []
        for column in columns:
            uniq, inv = np.unique(column[used], return_inverse=True)
            positions.append(dict(zip(reg.names_array[uniq].tolist(), range(len(uniq)), strict=True)))
            index.append(inv.reshape(-1))
        fit = _fit_additive((), prior, k, params.sweeps, (positions, index, n_c[used], s_c[used]))
        fit.combos = _combo_rates(used, fit, size)
        return fit

    # a key's context value is a region ("pnw") or a device cell of one ("pnw@device=mobile", no time bucket)
    cell_of = [value.partition("@") for value in reg.values]
    is_cell = np.asarray([bool(sep) for _, sep, _ in cell_of], dtype=bool)
    plain = ~is_cell[vals]
    national = fit_of(np.bincount(cid[plain], weights=n[plain], minlength=size),
                      np.bincount(cid[plain], weights=s[plain], minlength=size), None)
    if national is None:
        return out
    out[None] = national
    flat = vals * size + cid
    n_vc = np.bincount(flat, weights=n, minlength=size * len(reg.values)).reshape(-1, size)
    s_vc = np.bincount(flat, weights=s, minlength=size * len(reg.values)).reshape(-1, size)
    cells: dict[str, list[int]] = {}
    if not recent and params.cell_strength > 0:
        for v in np.unique(vals[~plain]).tolist():
            cells.setdefault(cell_of[v][0], []).append(v)
    for v in np.unique(vals[plain]).tolist():
        value = reg.values[v]
        fit = None
        if value in cells:
            fit = _cell_fit(reg, columns, v, cells[value], n_vc, s_vc, national if params.national_prior else None,
                            params)
        if fit is None:
            fit = fit_of(n_vc[v], s_vc[v], national if params.national_prior else None)
        if fit is not None:
            out[value] = fit
    return out


def _cell_fit(reg: _Combos, columns: list[Any], region: int, cell_values: list[int], n_vc: Any, s_vc: Any,
              prior: _Fit | None, params: LearningParams) -> _Fit | None:
    """The fit of one region from its device cells: the rows are (combination, device), and every slot ``p``
    has, besides its effect ``f_p[v]``, a device x variant effect ``h_p[d, v]`` (a position of its own, named
    ``<v>@device=<d>``) with a Gamma prior of ``cell_strength`` pseudo-successes centred on 1: the slot's effect
    is shared by the devices unless the data says otherwise, and the other slots' effects, the pair residuals
    and the look-ahead are no longer confounded by one slot's device-specific effect.

    The region's traffic outside its cells (counted before the cells existed, or served without a device) is one
    more block of rows, device ``<dim>=`` (no request has an empty device, so its effects only absorb that
    traffic's difference): nothing the region's counters hold is left out. ``prior``: the national fit when
    ``national_prior`` is on (the cell effects are centred on 1 either way)."""
    assert np is not None
    size = n_vc.shape[1]
    rest_n = np.maximum(n_vc[region] - n_vc[cell_values].sum(axis=0), 0.0)
    rest_s = np.minimum(np.maximum(s_vc[region] - s_vc[cell_values].sum(axis=0), 0.0), rest_n)
    n_rows = np.concatenate([*(n_vc[v] for v in cell_values), rest_n])
    s_rows = np.concatenate([*(s_vc[v] for v in cell_values), rest_s])
    used = np.nonzero(n_rows > 0)[0]
    if used.size == 0:
        return None
    cid = used % size
    dev = used // size
    names = [reg.values[v].partition("@")[2] for v in cell_values] + [f"{ARM_CELL_DIMENSIONS[0]}="]
    positions: list[dict[str, int]] = []
    index: list[Any] = []
    inverse: list[tuple[Any, Any]] = []
    for column in columns:
        uniq, inv = np.unique(column[cid], return_inverse=True)
        inv = inv.reshape(-1)
        positions.append(dict(zip(reg.names_array[uniq].tolist(), range(len(uniq)), strict=True)))
        index.append(inv)
        inverse.append((uniq, inv))
    width = len(columns)
    for uniq, inv in inverse:
        code = dev * len(uniq) + inv
        cu, ci = np.unique(code, return_inverse=True)
        variant_names = reg.names_array[uniq[cu % len(uniq)]].tolist()
        devices = (cu // len(uniq)).tolist()
        positions.append({f"{v}@{names[d]}": j for j, (v, d) in enumerate(zip(variant_names, devices, strict=True))})
        index.append(ci.reshape(-1))
    strengths = [params.partner_strength] * width + [params.cell_strength] * width
    fit = _fit_additive((), prior, params.partner_strength, params.sweeps,
                        (positions, index, n_rows[used], s_rows[used]), strengths)
    fit.main = width
    fit.cells = {p: width + p for p in range(width)}
    fit.combos = _combo_rates(cid, fit, size)
    return fit


def _combo_rates(cid: Any, fit: _Fit, size: int) -> Any:
    """The fit's click rate per combination id (rows of one combination pooled: its fitted successes over its
    impressions, i.e. over the devices it was served on); 0 for a combination the fit has not seen."""
    assert np is not None
    _, n_rows, _, pred = fit.data
    n_c = np.bincount(cid, weights=n_rows, minlength=size)
    e_c = np.bincount(cid, weights=pred, minlength=size)
    return np.divide(e_c, n_c, out=np.zeros(size), where=n_c > 0)


def _pair_table(fit: _Fit, q: int, p: int) -> Any:
    """``(successes, fitted successes)`` of every (variant at ``q``, variant at ``p``) pair in ``fit``'s rows, as
    ``[j_q][j_p]`` matrices: what the additive fit misses about a pair is their ratio. Once per fit and pair."""
    found = fit.pairs.get((q, p))
    if found is not None:
        return found
    index, imps, succ, pred = fit.data
    width_p = len(fit.positions[p])
    size = len(fit.positions[q]) * width_p
    if np is not None and hasattr(imps, "shape"):
        flat = index[q] * width_p + index[p]
        s_m = np.bincount(flat, weights=succ, minlength=size).reshape(-1, width_p).tolist()
        e_m = np.bincount(flat, weights=pred, minlength=size).reshape(-1, width_p).tolist()
    else:
        s_flat = [0.0] * size
        e_flat = [0.0] * size
        for jq, jp, s, e in zip(index[q], index[p], succ, pred, strict=True):
            s_flat[jq * width_p + jp] += s
            e_flat[jq * width_p + jp] += e
        s_m = [s_flat[i:i + width_p] for i in range(0, size, width_p)]
        e_m = [e_flat[i:i + width_p] for i in range(0, size, width_p)]
    found = fit.pairs[(q, p)] = (s_m, e_m)
    return found


def _position(fit: _Fit, variants: Sequence[str]) -> int | None:
    """The position of the combination key that holds ``variants`` (the one naming most of them)."""
    best, hits = None, 0
    for p, known in enumerate(fit.positions):
        h = sum(1 for v in variants if v in known)
        if h > hits:
            best, hits = p, h
    return best


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


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def slot_counts(
    stats: Any,
    creative: str,
    slot: str,
    variants: Sequence[str],
    signals: Mapping[str, str],
    objective: str,
    params: LearningParams = DEFAULT_PARAMS,
    chosen: Sequence[str] = (),
) -> tuple[list[float], list[float]]:
    """Per-variant ``(successes, trials)`` pseudo-counts for the component-level Thompson step.

    The back-off of the module docstring: slot -> variant overall -> variant within each context value of
    ``signals`` (those among ``params.dims``), on discounted counts. Pass the result to
    :func:`dco.bandit.thompson` with the campaign prior.
    """
    ctx = _context_values(signals, params)
    return _slot_pseudo(stats, creative, slot, variants, ctx, objective, params, chosen)


def _slot_base(
    stats: Any,
    creative: str,
    slot: str,
    variants: Sequence[str],
    ctx: tuple[tuple[str, str], ...],
    objective: str,
    params: LearningParams,
) -> tuple[Any, ...]:
    """Everything of :func:`slot_counts` but the pair terms (the same for every set of chosen partners): the
    located fit (None: the component back-off), the variants' overall rows, the slot's mean, the per context
    value rows and shifts and the other context values' shifts. Once per stats table."""
    memo = _memo(stats)
    mkey = ("learning.slot_base", creative, slot, tuple(variants), ctx, objective, params)
    found = memo.get(mkey)
    if found is None:
        table = _decayed(stats, params)
        col = 1 if objective == "click" else 2
        zero = (0.0, 0.0, 0.0)
        bases = [component_key(creative, slot, v) for v in variants]
        located = _locate_fit(stats, creative, variants, ctx, objective, params)
        drifted = _drifted(stats, creative, slot, variants, ctx, objective, params, located)
        if drifted:  # a change: short memory for every variant (stale certainty forgotten)
            table = _changed_keys(stats, params)[1]
            located = _locate_fit(stats, creative, variants, ctx, objective, params, recent=True)
        overall = [table.get(b, zero) for b in bases]
        s_slot = sum(r[col] for r in overall)
        n_slot = sum(r[0] for r in overall)
        m_slot = (s_slot + 1.0) / (n_slot + 2.0)
        # per context value: the slot's shift in log-odds (all variants pooled), the centre of each variant's
        # own shift, so a variant seen little in a context is not pulled toward the context's average rate
        rows_d = {(dim, value): [table.get(f"{b}@{dim}={value}", zero) for b in bases] for dim, value in ctx}
        shift = {}
        for dv, rs in rows_d.items():
            m_d = (sum(r[col] for r in rs) + 1.0) / (sum(r[0] for r in rs) + 2.0)
            shift[dv] = _logit(m_d) - _logit(m_slot)
        other = {}
        if located is not None:
            for dv in rows_d:
                if dv[0] in ARM_CELL_DIMENSIONS and located[0].cells:  # the fit has the device x variant effects
                    other[dv] = [0.0] * len(bases)
                elif dv[0] not in ARM_CONTEXT_DIMENSIONS:
                    other[dv] = _context_shifts(stats, bases, dv, col, params)
        found = memo[mkey] = (located, overall, m_slot, rows_d, shift, other)
    return found


def _slot_pseudo(
    stats: Any,
    creative: str,
    slot: str,
    variants: Sequence[str],
    ctx: tuple[tuple[str, str], ...],
    objective: str,
    params: LearningParams,
    chosen: Sequence[str] = (),
) -> tuple[list[float], list[float]]:
    """:func:`slot_counts` for the context values ``ctx`` (already resolved from the signals)."""
    located, overall, m_slot, rows_d, shift, other = _slot_base(stats, creative, slot, variants, ctx, objective, params)
    col = 1 if objective == "click" else 2
    k = params.strength
    cell = next((f"{d}={v}" for d, v in ctx if d in ARM_CELL_DIMENSIONS), None)
    adjusted = None if located is None else _partner_counts(located, variants, params, chosen, cell)
    successes: list[float] = []
    trials: list[float] = []
    for i, row in enumerate(overall):
        m_v = (row[col] + k * m_slot) / (row[0] + k)
        base_logit = _logit(m_v)
        if adjusted is not None:
            # the partner-adjusted rate in the arm context value, moved by the other context values
            a, rate = adjusted[i]
            total = _logit(rate)
            n = a / rate
            for dv, shifts in other.items():
                total += shifts[i]
                n = min(n, rows_d[dv][i][0] + k)
            p = _expit(total)
            successes.append(p * n)
            trials.append(n)
            continue
        if not ctx:
            successes.append(row[col] + k * m_slot)
            trials.append(row[0] + k)
            continue
        total = base_logit
        n = math.inf
        for dv, rs in rows_d.items():
            r = rs[i]
            centre = _expit(base_logit + shift[dv])
            n_d = r[0] + k
            total += _logit((r[col] + k * centre) / n_d) - base_logit
            n = min(n, n_d)
        p = _expit(total)
        successes.append(p * n)
        trials.append(n)
    return successes, trials


def _context_shifts(
    stats: Any, bases: Sequence[str], dv: tuple[str, str], col: int, params: LearningParams
) -> list[float]:
    """Per variant: how much more (log scale) it earns in context value ``dv`` than elsewhere, beyond what the
    whole slot does, from time-bucketed counters compared within each bucket (a Mantel-Haenszel rate ratio).

    Comparing within a bucket is what keeps the partners out: a variant served in one context mostly late
    (next to strong partners) and in the others mostly early would otherwise look made for that context.
    The ratio is shrunk toward the slot's with ``context_strength`` pseudo-successes; the shift applied to the
    variant's rate is ``(1 - share of its traffic in dv) * log(ratio / slot ratio)``.
    """
    newest = _newest_bucket(stats, params)
    rows = _component_rows(stats)
    dim, value = dv
    zero = (0.0, 0.0, 0.0)
    nums: list[float] = []
    dens: list[float] = []
    shares: list[float] = []
    for base in bases:
        num = den = 0.0
        if newest is not None:
            for b in range(newest - params.buckets + 1, newest + 1):
                r_all = rows.get(f"{base}{BUCKET_SUFFIX}{b}")
                if r_all is None:
                    continue
                r_in = rows.get(f"{base}@{dim}={value}{BUCKET_SUFFIX}{b}", zero)
                n_in = float(r_in[0])
                n_out = float(r_all[0]) - n_in
                if n_in <= 0 or n_out <= 0:
                    continue
                s_in = min(float(r_in[col]), n_in)
                s_out = max(min(float(r_all[col]), float(r_all[0])) - s_in, 0.0)
                total = n_in + n_out
                num += s_in * n_out / total
                den += s_out * n_in / total
        nums.append(num)
        dens.append(den)
        r_all = rows.get(base, zero)
        r_in = rows.get(f"{base}@{dim}={value}", zero)
        shares.append(float(r_in[0]) / float(r_all[0]) if float(r_all[0]) > 0 else 0.0)
    c = params.context_strength
    slot_ratio = (sum(nums) + 1.0) / (sum(dens) + 1.0)
    return [
        (1.0 - sh) * math.log(((nu + c * slot_ratio) / (de + c)) / slot_ratio)
        for nu, de, sh in zip(nums, dens, shares, strict=True)
    ]


def _locate_fit(
    stats: Any,
    creative: str,
    variants: Sequence[str],
    ctx: tuple[tuple[str, str], ...],
    objective: str,
    params: LearningParams,
    recent: bool = False,
) -> tuple[_Fit, int, _Fit, str | None] | None:
    """``(fit, position of the slot, national fit, arm context value)`` for a request, or None without
    combination counters (the fit of the request's value, the national one when the value has none).
    ``recent``: from the time-bucketed combination counters (:func:`_fits`)."""
    if params.partner_strength <= 0:
        return None
    fits = _fits(stats, creative, objective, params, recent)
    if not fits:
        return None
    value = next((v for d, v in ctx if d in ARM_CONTEXT_DIMENSIONS), None)
    national = fits[None]
    fit = fits.get(value) if value is not None else None
    if fit is None:
        fit, value = national, None
    p = _position(fit, variants)
    if p is None:
        return None
    return fit, p, national, value


def _partner_counts(
    located: tuple[_Fit, int, _Fit, str | None],
    variants: Sequence[str],
    params: LearningParams,
    chosen: Sequence[str] = (),
    cell: str | None = None,
) -> list[tuple[float, float]]:
    """Per variant ``(shape, rate)``: the partner-adjusted posterior of :func:`_locate_fit`'s fit as
    pseudo-successes and a click rate (a variant the fit never saw: the national effect, or 1, as prior).

    ``cell`` (``"device=mobile"``): with a fit of device cells, the rate is multiplied by the variant's device
    effect ``h[d, v]`` and the look-ahead compares completions in that device (``f_u h[d, u]``).

    ``chosen``: the variants already picked for other slots of the decision. Each moves the rate by the pair's
    residual under the additive fit, ``(S_uv + k2) / (E_uv + k2)`` (successes of the combinations holding both
    against what the fit predicts for them, ``k2 = pair_strength``): an interaction between slots that the
    per-slot effects cannot express."""
    fit, p, national, _ = located
    k2 = params.pair_strength
    factors: list[list[float]] = []
    if chosen and k2 > 0 and fit.data is not None:
        for u in chosen:
            for q, known_q in enumerate(fit.positions):
                ju = known_q.get(u) if q != p else None
                if ju is not None:
                    factors.append(_pair_factors(fit, q, p, k2)[ju])
                    break
    if cell is None or not fit.cells:
        cell = None
    ahead: list[list[float]] = []
    k3 = params.lookahead_strength
    if k3 > 0 and k2 > 0 and fit.data is not None:
        done = _done_positions(fit, chosen)
        for q in range(fit.main):
            if q != p and q not in done and fit.effect[q]:
                ahead.append(_lookahead(fit, p, q, k3, cell))
    device: dict[str, float] = {}
    device_shape: list[float] = []
    device_index: dict[str, int] = {}
    if cell is not None and p in fit.cells:
        device = fit.effect[fit.cells[p]]
        device_shape = fit.shape[fit.cells[p]]
        device_index = fit.positions[fit.cells[p]]
    known = fit.positions[p]
    prior = national.effect[p] if params.national_prior and fit is not national and p < len(national.effect) else {}
    k = params.partner_strength
    ref = fit.ref[p]
    shape, rate = fit.shape[p], fit.rate[p]
    out = []
    for v in variants:
        j = known.get(v)
        if j is None:
            a, b = k * prior.get(v, 1.0), k
        else:
            a, b = shape[j], rate[j]
            for row in factors:
                b *= row[j]
            for row in ahead:  # the best completion at a later slot, given v, against the best
                b /= row[j]
            if device:
                name = f"{v}@{cell}"
                b /= device.get(name, 1.0)
                # the rate is f_v h[d, v]: two uncertain factors, their relative variances add (Gamma shapes)
                jd = device_index.get(name)
                a_h = device_shape[jd] if jd is not None else params.cell_strength
                if a_h > 0:
                    b *= 1.0 / (a * (1.0 / a + 1.0 / a_h))
                    a = 1.0 / (1.0 / a + 1.0 / a_h)
        out.append((a, min(max(ref * a / b, 1e-9), 0.5)))
    return out


def _pair_factors(fit: _Fit, q: int, p: int, k2: float) -> list[list[float]]:
    """``(E_uv + k2) / (S_uv + k2)`` for every (``u`` at ``q``, ``v`` at ``p``), ``[j_q][j_p]``: what a chosen ``u``
    multiplies ``v``'s Gamma rate by (:func:`_partner_counts`). Once per fit, pair of positions and ``k2``."""
    key = ("factors", q, p, k2)
    found = fit.pairs.get(key)
    if found is None:
        s_m, e_m = _pair_table(fit, q, p)
        found = fit.pairs[key] = [
            [(e + k2) / (s + k2) for s, e in zip(s_row, e_row, strict=True)] for s_row, e_row in zip(s_m, e_m, strict=True)
        ]
    return found


def _lookahead(fit: _Fit, p: int, q: int, k3: float, cell: str | None = None) -> list[float]:
    """Per variant at ``p``: its best completion at ``q`` against the best completion in general,
    ``max_u f_u (S_vu + k3) / (E_vu + k3) / max_u f_u`` (:func:`_partner_counts`); with a device ``cell`` of a
    fit of device cells, ``f_u`` times ``u``'s device effect there. Once per fit, pair, ``k3`` and cell."""
    key = ("ahead", p, q, k3, cell)
    found = fit.pairs.get(key)
    if found is None:
        s_m, e_m = _pair_table(fit, p, q)
        eff_q = [fit.shape[q][j] / fit.rate[q][j] for j in range(len(fit.positions[q]))]
        if cell is not None and q in fit.cells:
            device = fit.effect[fit.cells[q]]
            for u, j in fit.positions[q].items():
                eff_q[j] *= device.get(f"{u}@{cell}", 1.0)
        best = max(eff_q)
        found = fit.pairs[key] = [
            max(f * (s + k3) / (e + k3) for f, s, e in zip(eff_q, s_row, e_row, strict=True)) / best
            for s_row, e_row in zip(s_m, e_m, strict=True)
        ]
    return found


def _done_positions(fit: _Fit, chosen: Sequence[str]) -> frozenset[int]:
    """The positions of ``fit`` that hold one of the ``chosen`` variants (no look-ahead to them)."""
    return frozenset(q for q, known_q in enumerate(fit.positions) if any(u in known_q for u in chosen))


# ------------------------------------------------------------------------------------------- choosing


class _Table:
    """The per-(slot, context, stats refresh) draw table of :func:`choose_variant`."""

    __slots__ = ("kind", "winners", "propensity", "draws", "index", "means", "contenders", "choices")

    def __init__(self) -> None:
        self.choices: Any = None  # the Choice records handed out (frozen, so shared between decisions)
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
        draws = np.asarray(rng.betas(np.asarray(a), np.asarray(b), rows=pool))
        draws = draws.reshape(pool, len(a))
        local = draws.argmax(axis=1)
        t.winners = np.asarray(contenders, dtype=np.intp)[local].tolist()
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


def _explore(
    successes: Sequence[float], trials: Sequence[float], params: LearningParams
) -> tuple[list[float], list[float]]:
    """The pseudo-counts scaled by ``1 / exploration`` (the posterior spread the draws are made with)."""
    if params.exploration == 1.0:
        return list(successes), list(trials)
    scale = 1.0 / params.exploration
    return [x * scale for x in successes], [x * scale for x in trials]


# (stats table, params, its draw tables) of the last choose_variant call: a decision's slots and the decisions
# after it share one stats table, no need to look the tables up in its memo every time. Holds the table alive
# until the next one is used (one stats table per campaign and refresh).
_LAST_TABLES: tuple[Any, Any, Any] = (None, None, None)


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
    chosen: Sequence[str] = (),
) -> bandit.Choice:
    """The component-level Thompson step for one slot: a :class:`dco.bandit.Choice` over ``variants``.

    Posteriors come from :func:`slot_counts`; arms that cannot win are pruned with :func:`dco.bandit.bounds`
    (one survivor: a clear winner, propensity 1). The first time a (slot, eligible variants, context) is met
    with a given stats table, ``params.pool`` joint Thompson draws are made at once (seeded from the table's
    ``updated_at`` and the key, so the same stats give the same table) and each row's winner is kept; a
    decision then picks one row with its own ``rng``. The propensity is exact for this policy: the share of
    rows the chosen variant wins. Contenders that share one posterior are chosen uniformly (``1 / c``).
    Per decision this costs one random number and a lookup; the table costs ``pool x contenders`` Beta draws
    once per stats refresh. ``chosen``: the variant ids already picked for the other slots of this decision
    (pair terms, see :func:`_partner_counts`); the tables are kept per set of chosen partners, with
    ``pool // 4`` rows.
    """
    global _LAST_TABLES
    ctx = _context_values(signals, params)
    last_tables = _LAST_TABLES
    if last_tables[0] is stats and last_tables[1] is params:  # the slots of one decision, and the next decisions
        tables = last_tables[2]
    else:
        memo = _memo(stats)
        tables = memo.get(("learning.tables", id(params)))
        if tables is None or tables[0] is not params:
            tables = memo[("learning.tables", id(params))] = (params, {}, {})
        _LAST_TABLES = (stats, params, tables) if memo is getattr(stats, "memo", None) else (None, None, None)
    # Fast path: the same variants object as last time for this (creative, slot, context) (the engine passes
    # one cached tuple per slot when no rule or exclusion narrows it), no need to hash 40 ids.
    partners = tuple(chosen) if params.pair_strength > 0 else ()
    short = (creative, slot, ctx, objective, prior, partners)
    last = tables[2].get(short)
    if last is not None and last[0] is variants:
        table = last[1]
    else:
        key = (creative, slot, tuple(variants), ctx, objective, prior, partners)
        table = tables[1].get(key)
        if table is None:
            successes, trials = _slot_pseudo(stats, creative, slot, variants, ctx, objective, params, partners)
            successes, trials = _explore(successes, trials, params)
            # a table per set of chosen partners: smaller, there are many more of them
            pool = params.pool if not partners else max(64, params.pool // 4)
            table = tables[1][key] = _build_table(stats, key, successes, trials, prior, pool)
        tables[2][short] = (variants, table)
    if table.kind == "clear":
        if table.choices is None:
            i = table.index
            table.choices = bandit.Choice(i, 1.0, "thompson", ((i, table.means[i]),), True)
        return table.choices
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
    # without an explain trace every decision that picks i from this table gets the same (frozen) Choice
    if table.choices is None:
        table.choices = {}
    choice = table.choices.get(i)
    if choice is None:
        choice = table.choices[i] = bandit.Choice(i, table.propensity[i], "thompson", (), False)
    return choice


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
