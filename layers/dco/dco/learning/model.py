"""The learner's model: a Bayesian logistic model of the click (or conversion) probability of an assembled ad,
fitted from the ``contexts`` counters at every stats publication (docs/learning.md has the derivation and the
figures).

For a combination ``c`` (one variant per slot) shown in a context ``x`` (one value per learning dimension, or
none)::

    logit P(click | c, x) = b + sum_d a_d[x_d]                       intercept, context base rates
                              + sum_s f_s[c_s]                       component main effects
                              + sum_d sum_s g_ds[x_d, c_s]           context x component effects
                              + sum_{s<t} h_st[c_s, c_t]             component x component effects

Every effect group (``base:d``, ``main:s``, ``ctx:d:s``, ``pair:s:t``) has its own prior: a scale mixture of normals
over a fixed grid (:data:`dco.learning.params.SCALE_GRID`, a point mass at 0 included) whose weights are learned
from the data (empirical Bayes, "adaptive shrinkage", Stephens 2017), with a Dirichlet prior that presumes the
group empty (``null_weight``). A group that carries no signal ends with nearly all its weight at 0, so its
effects are 0 with (nearly) no spread: it costs (almost) nothing. A few large effects among many zeros keep
their size.

Fit (mean-field coordinate ascent, "backfitting"): for each group in turn, every effect's evidence given the
others is summarised by one Newton step of the logistic likelihood, ``z = f + G / H`` with ``G`` the residual
sum and ``H`` the curvature of its rows; the effect's posterior given that evidence is the closed-form mixture of
normals; the rows' linear predictor moves by the change of its mean. Effects within a group never share a row,
so each group's step is exact in its own coordinates. A fit starts from the previous publication's (``warm``)
and runs ``warm_sweeps`` sweeps (``cold_sweeps`` from nothing).

Drift: two memories are fitted, all evidence and time-discounted evidence (weighted ``0.5 ** (age / half-life)``,
from the fold's discounted sums, dco.learning.contract); decisions draw from each with the weight of how well it
predicted the
outcomes that arrived since the previous publication (fixed-share Bayesian mixture). A stationary world keeps
the first; a changed one moves to the second within a few publications.

The published model (``stats["models"][creative][objective]``)::

    {"version": 1, "fitted_at": <unix s>, "impressions": <rows' impressions>,
     "variants": [[ids of position 0], ...], "dims": ["device", "region"], "values": [[escaped values], ...],
     "log_weights": [<memory 0>, <memory 1>],
     "memories": [{"half_life_s": 0.0 | <s>, "intercept": b, "grid": [prior scales],
                   "groups": {"main:0": {"mean": [...], "var": [...], "mix": [...]}, ...}}, ...]}

``mean``/``var`` are per effect in the group's layout: ``base:d`` by value, ``main:s`` by variant, ``ctx:d:s`` by
``value * len(variants[s]) + variant``, ``pair:s:t`` by ``variant_s * len(variants[t]) + variant_t``; ``mix`` the
group's prior weights over the scale grid. An effect the data never saw is not in ``mean``/``var`` when its
variant or value is new: decide gives it its group's prior (mean 0, variance ``sum(mix * grid ** 2)``).

numpy accelerates the same arithmetic the pure-Python path runs (the same sums in the same order); the two agree
to floating-point rounding (tests/unit/test_learning_parity.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from typing import Any

from dco._accel import np
from dco.learning.contract import RECENT_HALF_LIFE_S, decay_factor, parse_context_key, split_decay
from dco.learning.params import DEFAULT_PARAMS, LearningParams

__all__ = ["MODEL_VERSION", "Patterns", "KeyParser", "build_patterns", "fit_models", "group_names", "prior_var",
           "use_numpy", "validate_models"]

MODEL_VERSION = 1
OBJECTIVES = ("click", "conversion")
_MIN_H = 1e-9  # curvature below which an effect counts as unobserved


# ------------------------------------------------------------------------------------------------ data


class _Registry:
    """One creative's layout (for one combination width): variant ids per position and values per dimension in
    the order first met, and per ``contexts`` key its row: variant indices then value indices (``-1``: absent).
    Append-only, so a key keeps its encoding across publications."""

    __slots__ = ("ident", "creative", "width", "variants", "dims", "values", "rows", "array")

    def __init__(self, ident: int, creative: str, width: int) -> None:
        self.ident = ident
        self.array: Any = None  # (numpy) self.rows as an array, padded with -1; extended as rows come
        self.creative = creative
        self.width = width
        self.variants: list[dict[str, int]] = [{} for _ in range(width)]
        self.dims: dict[str, int] = {}
        self.values: list[dict[str, int]] = []
        self.rows: list[list[int]] = []

    def encode(self, combo: Sequence[str], context: Sequence[tuple[str, str]]) -> int:
        code = [self.variants[p].setdefault(v, len(self.variants[p])) for p, v in enumerate(combo)]
        values = [-1] * len(self.dims)
        for dim, value in context:
            d = self.dims.get(dim)
            if d is None:
                d = self.dims[dim] = len(self.dims)
                self.values.append({})
                values.append(-1)
            values[d] = self.values[d].setdefault(value, len(self.values[d]))
        self.rows.append(code + values)
        return len(self.rows) - 1

    def grid(self) -> Any:
        """(numpy) every row's code as one array (``rows x (width + dims)``, ``-1`` padded)."""
        assert np is not None
        cols = self.width + len(self.dims)
        old = self.array
        if old is not None and old.shape == (len(self.rows), cols):
            return old
        grid = np.full((len(self.rows), cols), -1, dtype=np.intp)
        start = 0
        if old is not None and old.shape[1] == cols:
            grid[: old.shape[0]] = old
            start = old.shape[0]
        for i in range(start, len(self.rows)):
            code = self.rows[i]
            grid[i, : len(code)] = code
        self.array = grid
        return grid


class KeyParser:
    """The layout of the ``contexts`` keys met so far: per key ``(registry, row, epoch)`` (False: not a key the
    learner reads), per (creative, width) a :class:`_Registry`. Lives as long as the publisher (a warm
    publish-stats container, a simulation run); bounded."""

    LIMIT = 1_000_000
    _ROW_BITS = 26
    _EPOCH_BITS = 22

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.registries: dict[tuple[str, int], _Registry] = {}
        self.by_ident: list[_Registry] = []
        self.codes: dict[str, int] = {}  # key -> packed (registry, row, epoch + 1); -1: not a learner key

    def code(self, key: str) -> int:
        """The packed code of a key (parsing it on first sight)."""
        found = self.codes.get(key)
        if found is None:
            entry = self(key)
            if not entry:
                found = -1
            else:
                reg, row, epoch = entry
                b = 0 if epoch is None else epoch + 1
                found = -1 if b >= 1 << self._EPOCH_BITS or row >= 1 << self._ROW_BITS else (
                    (reg.ident << (self._ROW_BITS + self._EPOCH_BITS)) | (row << self._EPOCH_BITS) | b)
            self.codes[key] = found
        return found

    def __call__(self, key: str) -> Any:
        found = self.keys.get(key)
        if found is None:
            if len(self.keys) >= self.LIMIT:
                self.keys.clear()
                self.registries.clear()
                self.by_ident.clear()
                self.codes.clear()
            base, epoch = split_decay(key)
            parsed = parse_context_key(base)
            if not parsed:
                found = False
            else:
                base_entry = self.keys.get(base) if epoch is not None else None
                if base_entry:
                    reg, row = base_entry[0], base_entry[1]
                else:
                    creative, combo, context = parsed
                    reg = self.registries.get((creative, len(combo)))
                    if reg is None:
                        reg = self.registries[(creative, len(combo))] = _Registry(len(self.by_ident), creative,
                                                                                   len(combo))
                        self.by_ident.append(reg)
                    row = reg.encode(combo, context)
                    if epoch is not None:
                        self.keys[base] = (reg, row, None)
                found = (reg, row, epoch)
            self.keys[key] = found
        return found


class Patterns:
    """One creative's fitting data: per row a combination and a context, and its counts per memory.

    ``variants[p]`` are the variant ids of position ``p``; ``dims`` the learning dimensions and ``values[d]``
    their (escaped) values; ``var_idx[p][i]`` / ``val_idx[d][i]`` the row's variant / value index (``-1``:
    dimension absent); ``rows[i]`` the row's key in the :class:`KeyParser`; ``keys[i]`` its ``contexts`` key;
    ``counts[memory][objective]`` the pair ``(trials, successes)`` of row arrays (lists without numpy)."""

    __slots__ = ("creative", "variants", "dims", "values", "var_idx", "val_idx", "keys", "counts", "impressions",
                 "numpy")

    def __init__(self, creative: str, numpy: bool) -> None:
        self.numpy = numpy  # the arrays are numpy arrays (the accelerated fit), else lists (the pure-Python fit)
        self.creative = creative
        self.variants: list[list[str]] = []
        self.dims: list[str] = []
        self.values: list[list[str]] = []
        self.var_idx: list[Any] = []
        self.val_idx: list[Any] = []
        self.keys: list[str] = []
        self.counts: list[dict[str, tuple[Any, Any]]] = []
        self.impressions = 0.0

    def __len__(self) -> int:
        return len(self.keys)


def _weights(epochs: Sequence[int], now: float) -> dict[int, float]:
    """Per epoch, the factor that turns its discounted sums into evidence weighted at ``now``."""
    return {e: decay_factor(e, now) for e in epochs}


def indexed_rows(rows: Mapping[str, Sequence[Any]], parser: KeyParser) -> tuple[list[str], Any, Any]:
    """(numpy) ``(keys, codes, counts)`` of ``contexts`` rows: the keys in order, their packed codes
    (:meth:`KeyParser.code`) and a ``rows x 4`` array of their counters."""
    assert np is not None
    keys = list(rows)
    codes = np.fromiter(map(parser.codes.get, keys, repeat(-2)), dtype=np.int64, count=len(keys))
    for i in np.nonzero(codes == -2)[0].tolist():
        codes[i] = parser.code(keys[i])
    flat = np.fromiter(chain.from_iterable(rows.values()), dtype=float, count=4 * len(keys)).reshape(-1, 4)
    return keys, codes, flat


def prune_indexed(rows: dict[str, Any], indexed: tuple[list[str], Any, Any], keep: int) -> tuple[list[str], Any, Any]:
    """(numpy) :func:`dco.learning.contract.prune_epochs` on rows already indexed (:func:`indexed_rows`): the
    same rows dropped from ``rows``; returns the index of the rows kept."""
    assert np is not None
    keys, codes, flat = indexed
    eplus = np.where(codes >= 0, codes & ((1 << KeyParser._EPOCH_BITS) - 1), 0)
    if not (eplus > 0).any():
        return indexed
    newest = int(eplus.max()) - 1
    old = (eplus > 0) & (eplus - 1 <= newest - keep)
    if not old.any():
        return indexed
    for i in np.nonzero(old)[0].tolist():
        del rows[keys[i]]
    live = ~old
    return [k for k, ok in zip(keys, live.tolist(), strict=True) if ok], codes[live], flat[live]


def _build_patterns_np(indexed: tuple[list[str], Any, Any], now: float, params: LearningParams,
                       parser: KeyParser) -> dict[str, Patterns]:
    """(numpy) :func:`build_patterns` on rows already indexed: the same patterns, with vector gathers."""
    assert np is not None
    keys, codes, flat = indexed
    shift = KeyParser._ROW_BITS + KeyParser._EPOCH_BITS
    valid = codes >= 0
    reg_id = np.where(valid, codes >> shift, -1)
    row = (codes >> KeyParser._EPOCH_BITS) & ((1 << KeyParser._ROW_BITS) - 1)
    eplus = codes & ((1 << KeyParser._EPOCH_BITS) - 1)
    absolute = valid & (eplus == 0)
    best: dict[str, tuple[float, _Registry]] = {}
    for r in sorted(set(reg_id[absolute].tolist())):
        reg = parser.by_ident[r]
        imps = float(np.cumsum(flat[absolute & (reg_id == r), 0])[-1])
        if reg.creative not in best or imps > best[reg.creative][0]:
            best[reg.creative] = (imps, reg)
    out: dict[str, Patterns] = {}
    for creative, (imps, reg) in best.items():
        at = np.nonzero(absolute & (reg_id == reg.ident))[0]
        reg_rows = row[at]
        n = len(at)
        pat = Patterns(creative, True)
        pat.keys = [keys[i] for i in at.tolist()]
        pat.impressions = imps
        pat.variants = [list(ix) for ix in reg.variants]
        pat.dims = list(reg.dims)
        pat.values = [list(ix) for ix in reg.values]
        grid = reg.grid()[reg_rows]
        pat.var_idx = [grid[:, p].copy() for p in range(reg.width)]
        pat.val_idx = [grid[:, reg.width + d].copy() for d in range(len(reg.dims))]
        trials = flat[at, 0].copy()
        clicks = np.minimum(flat[at, 1], trials)
        convs = np.minimum(flat[at, 2], trials)
        pos = np.full(len(reg.rows), -1, dtype=np.intp)
        pos[reg_rows] = np.arange(n)
        ib = np.nonzero(valid & (reg_id == reg.ident) & (eplus > 0))[0]
        target = pos[row[ib]]
        ib, target = ib[target >= 0], target[target >= 0]
        epochs = eplus[ib] - 1
        r = np.zeros((3, n))
        if len(ib):
            lo = int(epochs.min())
            table = _weights(range(lo, int(epochs.max()) + 1), now)
            w = np.asarray([table[b] for b in range(lo, int(epochs.max()) + 1)])[epochs - lo]
            t = flat[ib, 0]
            r[0] = np.bincount(target, weights=w * t, minlength=n)
            r[1] = np.bincount(target, weights=w * np.minimum(flat[ib, 1], t), minlength=n)
            r[2] = np.bincount(target, weights=w * np.minimum(flat[ib, 2], t), minlength=n)
        pat.counts = [
            {"click": (trials, clicks), "conversion": (trials, convs)},
            {"click": (r[0], r[1]), "conversion": (r[0], r[2])},
        ]
        out[creative] = pat
    return out


def use_numpy(accelerated: bool | None) -> bool:
    """Whether to take the numpy path: ``accelerated`` None follows the accelerators' presence; True requires numpy
    (``ValueError`` without it); False forces the pure-Python path (the parity tests compare both)."""
    if accelerated is None:
        return np is not None
    if accelerated and np is None:
        raise ValueError("numpy is not available")
    return bool(accelerated)


def build_patterns(
    rows: Mapping[str, Sequence[Any]], now: float, params: LearningParams = DEFAULT_PARAMS,
    parser: KeyParser | None = None, *, accelerated: bool | None = None,
) -> dict[str, Patterns]:
    """Per creative, its :class:`Patterns` from the ``contexts`` rows of a stats object (absolute rows and their
    ``#d<epoch>`` rows) at time ``now``. Two memories: ``counts[0]`` all evidence (the absolute rows),
    ``counts[1]`` the discounted sums brought to ``now``. A creative whose keys have several widths (its slots changed)
    keeps the width with the most impressions. Rows keep the order of ``rows``."""
    parse = parser or KeyParser()
    if use_numpy(accelerated):
        return _build_patterns_np(indexed_rows(rows, parse), now, params, parse)
    absolute: dict[_Registry, tuple[list[int], list[str], list[Sequence[Any]]]] = {}
    discounted: dict[_Registry, list[tuple[int, int, Sequence[Any]]]] = {}
    for key, row in rows.items():
        found = parse(key)
        if not found:
            continue
        reg, at, epoch = found
        if epoch is None:
            part = absolute.get(reg)
            if part is None:
                part = absolute[reg] = ([], [], [])
            part[0].append(at)
            part[1].append(key)
            part[2].append(row)
        else:
            discounted.setdefault(reg, []).append((at, epoch, row))
    best: dict[str, tuple[float, _Registry]] = {}
    for reg, (_, _, counts) in absolute.items():
        imps = 0.0
        for row in counts:
            imps += float(row[0])
        if reg.creative not in best or imps > best[reg.creative][0]:
            best[reg.creative] = (imps, reg)
    out: dict[str, Patterns] = {}
    for creative, (imps, reg) in best.items():
        at_rows, keys, counts = absolute[reg]
        n = len(at_rows)
        pat = Patterns(creative, False)
        pat.keys = keys
        pat.impressions = imps
        pat.variants = [list(ix) for ix in reg.variants]
        pat.dims = list(reg.dims)
        pat.values = [list(ix) for ix in reg.values]
        width, n_dims = reg.width, len(reg.dims)
        index_of = {a: i for i, a in enumerate(at_rows)}
        weights = _weights(sorted({b for _, b, _ in discounted.get(reg, [])}), now)
        codes = [reg.rows[a] + [-1] * (width + n_dims - len(reg.rows[a])) for a in at_rows]
        pat.var_idx = [[c[p] for c in codes] for p in range(width)]
        pat.val_idx = [[c[width + d] for c in codes] for d in range(n_dims)]
        trials = [float(row[0]) for row in counts]
        clicks = [min(float(row[1]), t) for row, t in zip(counts, trials, strict=True)]
        convs = [min(float(row[2]), t) for row, t in zip(counts, trials, strict=True)]
        rt, rc, rv = [0.0] * n, [0.0] * n, [0.0] * n
        for a, epoch, row in discounted.get(reg, []):
            i = index_of.get(a)
            if i is None:
                continue
            w = weights[epoch]
            t = float(row[0])
            rt[i] += w * t
            rc[i] += w * min(float(row[1]), t)
            rv[i] += w * min(float(row[2]), t)
        pat.counts = [
            {"click": (trials, clicks), "conversion": (trials, convs)},
            {"click": (rt, rc), "conversion": (rt, rv)},
        ]
        out[creative] = pat
    return out


# ------------------------------------------------------------------------------------------------ groups


def group_names(slots: int, dims: int) -> list[str]:
    """The effect groups of a model with ``slots`` positions and ``dims`` learning dimensions, in fit order."""
    names = [f"base:{d}" for d in range(dims)]
    names += [f"main:{s}" for s in range(slots)]
    names += [f"ctx:{d}:{s}" for d in range(dims) for s in range(slots)]
    names += [f"pair:{s}:{t}" for s in range(slots) for t in range(s + 1, slots)]
    return names


def _group_size(name: str, variants: Sequence[Sequence[str]], values: Sequence[Sequence[str]]) -> int:
    kind, *at = name.split(":")
    if kind == "base":
        return len(values[int(at[0])])
    if kind == "main":
        return len(variants[int(at[0])])
    if kind == "ctx":
        return len(values[int(at[0])]) * len(variants[int(at[1])])
    return len(variants[int(at[0])]) * len(variants[int(at[1])])


def _labels(name: str, variants: Sequence[Sequence[str]], values: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """Per effect of a group, its label (the ids it is about), in the group's layout."""
    kind, *at = name.split(":")
    if kind == "base":
        return [(v,) for v in values[int(at[0])]]
    if kind == "main":
        return [(v,) for v in variants[int(at[0])]]
    if kind == "ctx":
        return [(x, v) for x in values[int(at[0])] for v in variants[int(at[1])]]
    return [(v, w) for v in variants[int(at[0])] for w in variants[int(at[1])]]


def _row_index(name: str, pat: Patterns) -> Any:
    """The effect index of every row in group ``name`` (``-1``: the row has no effect there)."""
    kind, *at = name.split(":")
    if kind == "base":
        return pat.val_idx[int(at[0])]
    if kind == "main":
        return pat.var_idx[int(at[0])]
    if kind == "ctx":
        d, s = int(at[0]), int(at[1])
        size = len(pat.variants[s])
        x, v = pat.val_idx[d], pat.var_idx[s]
        if pat.numpy:
            assert np is not None
            return np.where(x >= 0, x * size + v, -1)
        return [xi * size + vi if xi >= 0 else -1 for xi, vi in zip(x, v, strict=True)]
    s, t = int(at[0]), int(at[1])
    size = len(pat.variants[t])
    a, b = pat.var_idx[s], pat.var_idx[t]
    if pat.numpy:
        return a * size + b
    return [ai * size + bi for ai, bi in zip(a, b, strict=True)]


def prior_var(mix: Sequence[float], grid: Sequence[float]) -> float:
    """The variance of an effect under its group's prior alone (an effect the data never saw)."""
    return sum(w * s * s for w, s in zip(mix, grid, strict=True))


def dirichlet(params: LearningParams, size: int) -> list[float]:
    """The Dirichlet prior of a group's mixture weights: ``null_weight`` pseudo-effects of "no effect" per effect
    of the group (a group is presumed to hold only a few effects, however large it is: its unobserved effects
    are then nearly surely nothing), one on every other component (docs/learning.md, "Parameters", has the
    comparison with other scalings)."""
    return [max(1.0, params.null_weight * size)] + [1.0] * (len(params.scale_grid) - 1)


def memory_grid(params: LearningParams, memory: int) -> tuple[float, ...]:
    """The prior scale grid of a memory: the all-evidence memory's starts with a point mass at 0 (an effect can be
    exactly nothing); the recent memory's smallest scale is ``recent_scale_floor`` (in a world that changes, no
    effect is known to be exactly nothing, so a variant judged worthless is still tried now and then)."""
    if memory == 0:
        return params.scale_grid
    return tuple(max(s, params.recent_scale_floor) for s in params.scale_grid)


# ------------------------------------------------------------------------------------------------ the fit


class _State:
    """One memory's posterior during a fit: intercept, and per group mean, variance and mixture weights."""

    __slots__ = ("intercept", "mean", "var", "mix")

    def __init__(self) -> None:
        self.intercept: float | None = None
        self.mean: dict[str, Any] = {}
        self.var: dict[str, Any] = {}
        self.mix: dict[str, list[float]] = {}


def _carry(previous: Mapping[str, Any] | None, memory: int, pat: Patterns, names: list[str],
           params: LearningParams) -> tuple[_State, bool]:
    """The state a fit starts from: the previous model's memory mapped onto ``pat``'s layout by ids (an effect
    whose variant or value is new starts at 0 with its group's prior variance); cold (zeros, prior weights) without
    one. Returns ``(state, warm)``."""
    state = _State()
    grid = memory_grid(params, memory)
    prev_mem = None
    if previous and previous.get("version") == MODEL_VERSION:
        mems = previous.get("memories") or []
        prev_mem = mems[memory] if memory < len(mems) else None
    warm = prev_mem is not None and len(previous.get("variants", [])) == len(pat.variants)  # type: ignore[union-attr]
    prev_groups = prev_mem.get("groups", {}) if warm and prev_mem is not None else {}
    prev_dims = list(previous.get("dims", [])) if warm and previous else []
    for name in names:
        size = _group_size(name, pat.variants, pat.values)
        mean = [0.0] * size
        alpha = dirichlet(params, size)
        mix = [a / sum(alpha) for a in alpha]
        found = prev_groups.get(_prev_name(name, pat.dims, prev_dims)) if warm else None
        if found is not None and len(found.get("mix", [])) == len(grid):
            mix = [float(w) for w in found["mix"]]
        pv = prior_var(mix, grid)
        var = [pv] * size  # an effect the previous model did not hold: its group's prior
        if found is not None and previous is not None:
            old_labels = _labels(_prev_name(name, pat.dims, prev_dims) or name, previous["variants"],
                                 previous.get("values", []))
            old_mean, old_var = found.get("mean", []), found.get("var", [])
            index = {lab: j for j, lab in enumerate(old_labels)}
            for j, lab in enumerate(_labels(name, pat.variants, pat.values)):
                k = index.get(lab)
                if k is not None and k < len(old_mean):
                    mean[j] = float(old_mean[k])
                    var[j] = float(old_var[k])
        state.mix[name] = mix
        if pat.numpy:
            assert np is not None
            state.mean[name] = np.asarray(mean, dtype=float)
            state.var[name] = np.asarray(var, dtype=float)
        else:
            state.mean[name] = mean
            state.var[name] = var
    if warm and prev_mem is not None and isinstance(prev_mem.get("intercept"), int | float):
        state.intercept = float(prev_mem["intercept"])
    return state, warm


def _prev_name(name: str, dims: Sequence[str], prev_dims: Sequence[str]) -> str | None:
    """The name of group ``name`` (numbered by ``dims``) in a model numbered by ``prev_dims``."""
    kind, *at = name.split(":")
    if kind in ("base", "ctx"):
        dim = dims[int(at[0])]
        if dim not in prev_dims:
            return None
        return ":".join([kind, str(prev_dims.index(dim)), *at[1:]])
    return name


def _ash_py(z: Sequence[float], h: Sequence[float], mix: list[float], alpha: Sequence[float],
            grid: Sequence[float]) -> tuple[list[float], list[float], list[float]]:
    """Posterior means and variances of a group's effects from their evidence ``(z, h)``, and the group's new
    mixture weights (3 EM steps). Pure Python; :func:`_ash_np` is the same arithmetic."""
    k = len(grid)
    g2 = [s * s for s in grid]
    obs = [j for j in range(len(z)) if h[j] > _MIN_H]
    pv = sum(w * s for w, s in zip(mix, g2, strict=True))
    mean = [0.0] * len(z)
    var = [pv] * len(z)
    if not obs:
        return mean, var, mix
    log_l = []
    for j in obs:
        inv = 1.0 / h[j]
        zz = z[j] * z[j]
        log_l.append([-0.5 * (math.log(g + inv) + zz / (g + inv)) for g in g2])
    total_alpha = sum(alpha)
    resp: list[list[float]] = []
    for _ in range(3):
        logs = [math.log(w) for w in mix]
        resp = []
        for row in log_l:
            lw = [a + b for a, b in zip(logs, row, strict=True)]
            top = max(lw)
            e = [math.exp(x - top) for x in lw]
            s = 0.0
            for x in e:
                s += x
            resp.append([x / s for x in e])
        sums = [0.0] * k
        for r in resp:
            for c in range(k):
                sums[c] += r[c]
        mix = [(a + s) / (total_alpha + len(obs)) for a, s in zip(alpha, sums, strict=True)]
    for r, j in zip(resp, obs, strict=True):
        inv = 1.0 / h[j]
        m = 0.0
        second = 0.0
        for c in range(k):
            s2 = g2[c] + inv
            mk = z[j] * g2[c] / s2
            vk = g2[c] * inv / s2
            m += r[c] * mk
            second += r[c] * (vk + mk * mk)
        mean[j] = m
        var[j] = max(second - m * m, 0.0)
    pv = sum(w * s for w, s in zip(mix, g2, strict=True))
    for j in range(len(z)):
        if h[j] <= _MIN_H:
            var[j] = pv
    return mean, var, mix


def _ash_np(z: Any, h: Any, mix: list[float], alpha: Sequence[float], grid: Sequence[float]) -> tuple[Any, Any, list[float]]:
    """:func:`_ash_py` with numpy (sums in the same order: components one by one, effects in index order)."""
    assert np is not None
    g2 = np.asarray([s * s for s in grid])
    obs = h > _MIN_H
    pv = float(sum(w * s for w, s in zip(mix, g2.tolist(), strict=True)))
    mean = np.zeros(len(z))
    var = np.full(len(z), pv)
    if not obs.any():
        return mean, var, mix
    zo, ho = z[obs], h[obs]
    inv = 1.0 / ho
    s2 = g2[:, None] + inv[None, :]
    log_l = -0.5 * (np.log(s2) + (zo * zo)[None, :] / s2)
    total_alpha = sum(alpha)
    n_obs = int(obs.sum())
    r = None
    for _ in range(3):
        lw = np.log(np.asarray(mix))[:, None] + log_l
        lw = lw - lw.max(axis=0)
        e = np.exp(lw)
        s = e[0].copy()
        for c in range(1, len(g2)):
            s += e[c]
        r = e / s
        sums = np.cumsum(r, axis=1)[:, -1].tolist()
        mix = [(a + x) / (total_alpha + n_obs) for a, x in zip(alpha, sums, strict=True)]
    assert r is not None
    mk = zo[None, :] * g2[:, None] / s2
    vk = g2[:, None] * inv[None, :] / s2
    m = r[0] * mk[0]
    second = r[0] * (vk[0] + mk[0] * mk[0])
    for c in range(1, len(g2)):
        m = m + r[c] * mk[c]
        second = second + r[c] * (vk[c] + mk[c] * mk[c])
    mean[obs] = m
    var[obs] = np.maximum(second - m * m, 0.0)
    var[~obs] = float(sum(w * s for w, s in zip(mix, g2.tolist(), strict=True)))
    return mean, var, mix


def _stages(names: list[str]) -> tuple[list[str], list[str]]:
    """The fit's two stages: the intercept, base, main and context x component groups first (they explain all
    they can, the pair groups held at 0), then the pair groups on what remains (effect hierarchy: a combination
    that does well is credited to its components before it is credited to their pairing)."""
    return [n for n in names if not n.startswith("pair:")], [n for n in names if n.startswith("pair:")]


def _fit_np(pat: Patterns, names: list[str], index: dict[str, Any], state: _State, trials: Any, succ: Any,
            sweeps: int, params: LearningParams, grid: Sequence[float]) -> None:
    assert np is not None
    keep = trials > 0
    n = trials[keep]
    y = succ[keep]
    idx = {name: index[name][keep] for name in names}
    mask = {name: idx[name] >= 0 for name in names}
    total_n = float(np.cumsum(n)[-1]) if len(n) else 0.0
    if total_n <= 0:
        return
    if state.intercept is None:
        total_y = float(np.cumsum(y)[-1])
        state.intercept = math.log(max(total_y, 0.5) / max(total_n - total_y, 0.5))
    first, pairs = _stages(names)

    def sweep(group_names: list[str], eta: Any, intercept: bool) -> None:
        if intercept:
            p = 1.0 / (1.0 + np.exp(-eta))
            grad = float(np.cumsum(y - n * p)[-1])
            curv = float(np.cumsum(n * p * (1.0 - p))[-1])
            if curv > _MIN_H:
                step = grad / curv
                assert state.intercept is not None  # set above, before any sweep
                state.intercept += step
                eta += step
        for name in group_names:
            ok = mask[name]
            ix = idx[name][ok]
            size = len(state.mean[name])
            e = eta[ok]
            p = 1.0 / (1.0 + np.exp(-e))
            nn = n[ok]
            g = np.bincount(ix, weights=y[ok] - nn * p, minlength=size)
            h = np.bincount(ix, weights=nn * p * (1.0 - p), minlength=size)
            old = state.mean[name]
            z = np.where(h > _MIN_H, old + g / np.where(h > _MIN_H, h, 1.0), 0.0)
            mean, var, mix = _ash_np(z, h, state.mix[name], dirichlet(params, size), grid)
            eta[ok] = e + (mean - old)[ix]
            state.mean[name] = mean
            state.var[name] = var
            state.mix[name] = mix

    eta = np.full(len(n), state.intercept)
    for name in first:
        ok = mask[name]
        eta[ok] += state.mean[name][idx[name][ok]]
    for _ in range(sweeps):
        sweep(first, eta, True)
    for name in pairs:
        ok = mask[name]
        eta[ok] += state.mean[name][idx[name][ok]]
    for _ in range(sweeps):
        sweep(pairs, eta, False)


def _fit_py(pat: Patterns, names: list[str], index: dict[str, Any], state: _State, trials: Any, succ: Any,
            sweeps: int, params: LearningParams, grid: Sequence[float]) -> None:
    rows = [i for i in range(len(trials)) if trials[i] > 0]
    n = [float(trials[i]) for i in rows]
    y = [float(succ[i]) for i in rows]
    idx = {name: [index[name][i] for i in rows] for name in names}
    total_n = 0.0
    for x in n:
        total_n += x
    if total_n <= 0:
        return
    if state.intercept is None:
        total_y = 0.0
        for x in y:
            total_y += x
        state.intercept = math.log(max(total_y, 0.5) / max(total_n - total_y, 0.5))
    first, pairs = _stages(names)

    def sweep(group_names: list[str], eta: list[float], intercept: bool) -> None:
        if intercept:
            grad = 0.0
            curv = 0.0
            for i in range(len(n)):
                p = 1.0 / (1.0 + math.exp(-eta[i]))
                grad += y[i] - n[i] * p
                curv += n[i] * p * (1.0 - p)
            if curv > _MIN_H:
                step = grad / curv
                state.intercept += step  # type: ignore[operator]
                for i in range(len(eta)):
                    eta[i] = eta[i] + step
        for name in group_names:
            old = state.mean[name]
            size = len(old)
            g = [0.0] * size
            h = [0.0] * size
            ix = idx[name]
            for i in range(len(n)):
                j = ix[i]
                if j >= 0:
                    p = 1.0 / (1.0 + math.exp(-eta[i]))
                    g[j] += y[i] - n[i] * p
                    h[j] += n[i] * p * (1.0 - p)
            z = [old[j] + g[j] / h[j] if h[j] > _MIN_H else 0.0 for j in range(size)]
            mean, var, mix = _ash_py(z, h, state.mix[name], dirichlet(params, size), grid)
            for i in range(len(n)):
                j = ix[i]
                if j >= 0:
                    eta[i] = eta[i] + (mean[j] - old[j])
            state.mean[name] = mean
            state.var[name] = var
            state.mix[name] = mix

    def add_means(group_names: list[str], eta: list[float]) -> None:
        for name in group_names:
            mean = state.mean[name]
            for i, j in enumerate(idx[name]):
                if j >= 0:
                    eta[i] += mean[j]

    eta = [state.intercept] * len(n)
    add_means(first, eta)
    for _ in range(sweeps):
        sweep(first, eta, True)
    add_means(pairs, eta)
    for _ in range(sweeps):
        sweep(pairs, eta, False)


def _predictive_loglik(pat: Patterns, names: list[str], index: dict[str, Any], state: _State,
                       new_trials: Sequence[float], new_succ: Sequence[float]) -> float:
    """Log-likelihood of new outcomes under a memory's posterior predictive: per row, its successes among its
    trials are beta-binomial, the Beta matched to the logistic-normal of the row's logit (mean: the probit
    approximation; variance: the delta method), so the trials of one row share its uncertainty (a confident memory
    is punished for being wrong, an uncertain one is not credited for luck). Constant terms (the binomial
    coefficient) are left out: they cancel between memories."""
    if state.intercept is None:
        return 0.0
    if pat.numpy:
        assert np is not None
        t = np.asarray(new_trials, dtype=float)
        mu = np.full(len(t), state.intercept)
        var = np.zeros(len(t))
        for name in names:
            ix = index[name]
            ok = ix >= 0
            mu[ok] += state.mean[name][ix[ok]]
            var[ok] += state.var[name][ix[ok]]
        live = np.nonzero(t > 0)[0].tolist()
        mus, vars_ = mu.tolist(), var.tolist()
    else:
        mus = [state.intercept] * len(new_trials)
        vars_ = [0.0] * len(new_trials)
        for name in names:
            ix = index[name]
            mean, v = state.mean[name], state.var[name]
            for i in range(len(new_trials)):
                j = ix[i]
                if j >= 0:
                    mus[i] += mean[j]
                    vars_[i] += v[j]
        live = [i for i in range(len(new_trials)) if new_trials[i] > 0]
    total = 0.0
    for i in live:
        n = float(new_trials[i])
        y = min(max(float(new_succ[i]), 0.0), n)
        total += _beta_binomial(y, n, mus[i], vars_[i])
    return total


def _beta_binomial(y: float, n: float, mu: float, var: float) -> float:
    """log P(y of n | logit ~ N(mu, var)) up to the binomial coefficient, through a moment-matched Beta."""
    p = 1.0 / (1.0 + math.exp(-(mu / math.sqrt(1.0 + math.pi * var / 8.0))))
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    q = p * (1.0 - p)
    vp = min(q * q * var, 0.99 * q)
    kappa = q / vp - 1.0 if vp > 0.0 else math.inf
    if kappa > 1e8:  # no spread to speak of: binomial
        return y * math.log(p) + (n - y) * math.log(1.0 - p)
    a, b = p * kappa, (1.0 - p) * kappa
    lg = math.lgamma
    return lg(y + a) + lg(n - y + b) - lg(n + a + b) - lg(a) - lg(b) + lg(a + b)


def _new_outcomes(pat: Patterns, objective: str, col: int,
                  previous_rows: Mapping[str, Sequence[Any]]) -> tuple[list[float], list[float]]:
    """Per row, the trials and successes counted since the previous publication (its absolute rows)."""
    trials, succ = pat.counts[0][objective]
    now_t = trials.tolist() if hasattr(trials, "tolist") else list(trials)
    now_s = succ.tolist() if hasattr(succ, "tolist") else list(succ)
    get = previous_rows.get
    new_t: list[float] = []
    new_s: list[float] = []
    for i, key in enumerate(pat.keys):
        old = get(key)
        if old is None:
            new_t.append(now_t[i])
            new_s.append(now_s[i])
        else:
            ot = float(old[0])
            new_t.append(max(now_t[i] - ot, 0.0))
            new_s.append(max(now_s[i] - min(float(old[col]), ot), 0.0))
    return new_t, new_s


def _fixed_share(log_weights: Sequence[float], gains: Sequence[float], rate: float) -> list[float]:
    """Bayes' rule on the memories' predictive log-likelihoods, then the fixed share: a share ``rate`` of the
    weight is spread evenly (the chance that the better memory changed since)."""
    lw = [a + b for a, b in zip(log_weights, gains, strict=True)]
    top = max(lw)
    w = [math.exp(x - top) for x in lw]
    total = sum(w)
    m = len(w)
    return [math.log((1.0 - rate) * x / total + rate / m) for x in w]


def fit_models(
    rows: Mapping[str, Sequence[Any]],
    now: float,
    *,
    previous: Mapping[str, Any] | None = None,
    previous_rows: Mapping[str, Sequence[Any]] | None = None,
    params: LearningParams = DEFAULT_PARAMS,
    parser: KeyParser | None = None,
    patterns: Mapping[str, Patterns] | None = None,
    accelerated: bool | None = None,
) -> dict[str, dict[str, Any]]:
    """The ``models`` section for a stats object whose ``contexts`` section is ``rows``, at time ``now``
    (``patterns``: :func:`build_patterns` of them, when the caller has it).

    ``previous`` is the previous publication's ``models`` section (warm start, memory weights) and
    ``previous_rows`` its ``contexts`` rows: the outcomes that came in since are what each memory is scored on. A
    conversion model is fitted only for a creative whose rows hold conversions.
    """
    out: dict[str, dict[str, Any]] = {}
    if patterns is None:
        patterns = build_patterns(rows, now, params, parser, accelerated=accelerated)
    for creative, pat in patterns.items():
        if not len(pat):
            continue
        names = group_names(len(pat.variants), len(pat.dims))
        index = {name: _row_index(name, pat) for name in names}
        models: dict[str, Any] = {}
        for objective in OBJECTIVES:
            col = 1 if objective == "click" else 2
            if objective == "conversion":
                convs = pat.counts[0]["conversion"][1]
                if not (bool((convs > 0).any()) if pat.numpy else any(x > 0 for x in convs)):
                    continue
            prev_model = ((previous or {}).get(creative) or {}).get(objective)
            memories = []
            log_weights = [math.log(0.5), math.log(0.5)]
            states = []
            warm_all = True
            for memory in (0, 1):
                state, warm = _carry(prev_model, memory, pat, names, params)
                states.append(state)
                warm_all = warm_all and warm
            if prev_model and warm_all and len(prev_model.get("log_weights", [])) == 2:
                log_weights = [float(x) for x in prev_model["log_weights"]]
                if previous_rows is not None:
                    new_t, new_s = _new_outcomes(pat, objective, col, previous_rows)
                    if any(t > 0 for t in new_t):
                        gains = [_predictive_loglik(pat, names, index, st, new_t, new_s) for st in states]
                        elapsed = max(0.0, float(now) - float(prev_model.get("fitted_at", now)))
                        rate = 1.0 - math.exp(-params.switches_per_day * elapsed / 86_400.0)
                        log_weights = _fixed_share(log_weights, gains, min(rate, 0.5))
            for memory, state in enumerate(states):
                trials, succ = pat.counts[memory][objective]
                sweeps = params.warm_sweeps if warm_all and state.intercept is not None else params.cold_sweeps
                fit = _fit_np if pat.numpy else _fit_py
                grid = memory_grid(params, memory)
                fit(pat, names, index, state, trials, succ, sweeps, params, grid)
                memories.append(_memory_dict(state, names, 0.0 if memory == 0 else float(RECENT_HALF_LIFE_S), grid))
            models[objective] = {
                "version": MODEL_VERSION,
                "fitted_at": int(now),
                "impressions": int(pat.impressions),
                "variants": [list(v) for v in pat.variants],
                "dims": list(pat.dims),
                "values": [list(v) for v in pat.values],
                "log_weights": log_weights,
                "memories": memories,
            }
        if models:
            out[creative] = models
    return out


def _memory_dict(state: _State, names: list[str], half_life_s: float, grid: Sequence[float]) -> dict[str, Any]:
    groups = {}
    for name in names:
        mean = state.mean[name]
        var = state.var[name]
        groups[name] = {
            "mean": [float(x) for x in (mean.tolist() if hasattr(mean, "tolist") else mean)],
            "var": [float(x) for x in (var.tolist() if hasattr(var, "tolist") else var)],
            "mix": [float(x) for x in state.mix[name]],
        }
    return {"half_life_s": float(half_life_s), "intercept": float(state.intercept or 0.0), "grid": list(grid),
            "groups": groups}


# ------------------------------------------------------------------------------------------------ validation


def _floats(value: Any, path: str, size: int | None = None, *, nonneg: bool = False) -> list[float]:
    if not isinstance(value, list | tuple) or not set(map(type, value)) <= {int, float}:
        raise ValueError(f"stats {path} must be a list of numbers")
    if size is not None and len(value) != size:
        raise ValueError(f"stats {path} must have {size} numbers, got {len(value)}")
    if any(not math.isfinite(x) or (nonneg and x < 0) for x in value):
        raise ValueError(f"stats {path} must hold finite{' non-negative' if nonneg else ''} numbers")
    return list(value)


def _strings(value: Any, path: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"stats {path} must be a list of strings")
    return list(value)


def validate_models(models: Any) -> dict[str, dict[str, Any]]:
    """Check the ``models`` section of a stats object (shape, sizes, finite numbers); ``ValueError`` names the
    path of the first problem. Returns it (a plain dict)."""
    if not isinstance(models, Mapping):
        raise ValueError(f"stats models must be a mapping, got {type(models).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for creative, per_objective in models.items():
        where = f"models[{creative!r}]"
        if not isinstance(creative, str) or not isinstance(per_objective, Mapping):
            raise ValueError(f"stats {where} must map an objective to a model")
        out[creative] = {}
        for objective, model in per_objective.items():
            path = f"{where}[{objective!r}]"
            if objective not in OBJECTIVES or not isinstance(model, Mapping):
                raise ValueError(f"stats {path}: objective must be click or conversion, with a model mapping")
            if model.get("version") != MODEL_VERSION:
                raise ValueError(f"stats {path}.version must be {MODEL_VERSION}, got {model.get('version')!r}")
            variants = model.get("variants")
            if not isinstance(variants, list | tuple) or not variants:
                raise ValueError(f"stats {path}.variants must be a non-empty list of lists of ids")
            variants = [_strings(v, f"{path}.variants[{i}]") for i, v in enumerate(variants)]
            dims = _strings(model.get("dims", []), f"{path}.dims")
            values = model.get("values", [])
            if not isinstance(values, list | tuple) or len(values) != len(dims):
                raise ValueError(f"stats {path}.values must have one list per dimension")
            values = [_strings(v, f"{path}.values[{i}]") for i, v in enumerate(values)]
            memories = model.get("memories")
            if not isinstance(memories, list | tuple) or not memories:
                raise ValueError(f"stats {path}.memories must be a non-empty list")
            _floats(model.get("log_weights", []), f"{path}.log_weights", len(memories))
            names = group_names(len(variants), len(dims))
            for m, memory in enumerate(memories):
                mpath = f"{path}.memories[{m}]"
                if not isinstance(memory, Mapping) or not isinstance(memory.get("groups"), Mapping):
                    raise ValueError(f"stats {mpath} must be a mapping with groups")
                _floats([memory.get("intercept", 0.0)], f"{mpath}.intercept")
                grid = _floats(memory.get("grid", [0.0, 1.0]), f"{mpath}.grid", None, nonneg=True)
                for name, group in memory["groups"].items():
                    gpath = f"{mpath}.groups[{name!r}]"
                    if name not in names or not isinstance(group, Mapping):
                        raise ValueError(f"stats {gpath} is not a group of this model")
                    size = _group_size(name, variants, values)
                    _floats(group.get("mean"), f"{gpath}.mean", size)
                    _floats(group.get("var"), f"{gpath}.var", size, nonneg=True)
                    _floats(group.get("mix"), f"{gpath}.mix", len(grid) if "grid" in memory else None, nonneg=True)
            out[creative][objective] = model
    return out
