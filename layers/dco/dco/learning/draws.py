"""Thompson sampling from the published model: one decision table per creative, context and eligible set per
stats refresh, then one random number per decision (docs/learning.md, "Decisions").

A table holds ``pool`` rows. Row ``k`` is one draw from the posterior: it picks a memory with the memories'
weights, draws every effect it needs from that memory's normal posterior, and keeps the combination that
maximizes the drawn click logit over the eligible combinations (the variant rules and exclusions of the request).
The maximization is a hill-climb over slots (Hill et al., KDD 2017): it starts from the best variant of each slot
alone and, when pair effects are in play, also from the best pair of every pair of slots; each start improves
one slot at a time given the others until nothing changes; the best end wins. A decision picks a row uniformly
with its own ``rng``: its propensity is the share of rows whose winner it is (exact for the policy played).

Every random number comes from a counter-based generator: the draw of effect ``e`` in row ``k`` of a table is a
function of ``(table seed, k, e)`` (the SplitMix64 finalizer of one 64-bit sum, its halves fed to Box-Muller),
so numpy computes the same numbers as the
pure-Python path and the same stats give the same table in Lambda, in Pyodide and in ``dco simulate``. The
table seed hashes the stats object's ``updated_at`` and the table's key.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from dco._accel import np
from dco.learning.model import MODEL_VERSION, dirichlet, prior_var
from dco.learning.params import DEFAULT_PARAMS, LearningParams

__all__ = ["ModelView", "Table", "build_table", "pick", "normals_py", "table_seed"]

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_ROW = 0xD1B54A32D192ED03
_MEMORY_ID = 0x2545F4914F6CDD1D
_INV53 = 1.0 / 9007199254740992.0
_INV32 = 1.0 / 4294967296.0
_TWO_PI = 2.0 * math.pi
_ACTIVE = 0.005  # a pair group whose effects all have |mean| and sd below this (logit) is not drawn
_START = 0.05  # the hill-climb also starts from a pair group's best pair when one of its means reaches this
if np is not None:
    _S32 = np.uint64(32)
    _LOW32 = np.uint64(0xFFFFFFFF)
    _MIX_STEPS = ((np.uint64(30), np.uint64(0xBF58476D1CE4E5B9)), (np.uint64(27), np.uint64(0x94D049BB133111EB)),
                  (np.uint64(31), None))


def _mix64(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def table_seed(updated_at: int, key: Any) -> int:
    """The seed of a decision table: its stats object's ``updated_at`` and its key."""
    return _hash64(repr((int(updated_at), key)))


def _uniforms_py(seed: int, row: int, ident: int) -> tuple[float, float]:
    """Two uniforms from one 64-bit hash of ``(seed, row, ident)``: its high half in (0, 1), its low half in
    [0, 1) (32 bits each: a normal from them is bounded by 6.7, which no draw of this learner needs to pass)."""
    a = _mix64((seed + ((row * _ROW) & _M64) + ((ident * _GOLDEN) & _M64)) & _M64)
    return ((a >> 32) + 0.5) * _INV32, (a & 0xFFFFFFFF) * _INV32


def normals_py(seed: int, rows: int, idents: Sequence[int]) -> list[list[float]]:
    """``rows x len(idents)`` standard normals of the counter-based generator (pure Python)."""
    out = []
    for k in range(rows):
        line = []
        for ident in idents:
            u1, u2 = _uniforms_py(seed, k, ident)
            line.append(math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2))
        out.append(line)
    return out


def _uniform_py(seed: int, row: int, ident: int) -> float:
    """A uniform in (0, 1) with 53 bits, from the hash of ``(seed, row, ident)``."""
    a = _mix64((seed + ((row * _ROW) & _M64) + ((ident * _GOLDEN) & _M64)) & _M64)
    return ((a >> 11) + 0.5) * _INV53


def _normals_np(seed: int, rows: int, idents: Sequence[int]) -> Any:
    """:func:`normals_py` with numpy (uint64 arithmetic wraps like the masked Python ints). In place: a table's
    draws are most of its cost. ``2 pi / 2 ** 32`` in one factor is exact (a power of two)."""
    assert np is not None
    k = (np.arange(rows, dtype=np.uint64) * np.uint64(_ROW))[:, None]
    ids = (np.asarray(idents, dtype=np.uint64) * np.uint64(_GOLDEN) + np.uint64(seed))[None, :]
    x = np.add(k, ids)
    t = np.empty_like(x)
    _mix64_np(x, t)
    np.right_shift(x, _S32, out=t)
    u1 = t.astype(float)
    u1 += 0.5
    u1 *= _INV32
    np.bitwise_and(x, _LOW32, out=t)
    u2 = t.astype(float)
    u2 *= _TWO_PI * _INV32
    np.log(u1, out=u1)
    u1 *= -2.0
    np.sqrt(u1, out=u1)
    np.cos(u2, out=u2)
    u1 *= u2
    return u1


def _mix64_np(x: Any, t: Any | None = None) -> Any:
    """The SplitMix64 finalizer of :func:`_mix64`, in place on ``x`` (``t``: scratch of its shape)."""
    assert np is not None
    if t is None:
        t = np.empty_like(x)
    for shift, factor in _MIX_STEPS:
        np.right_shift(x, shift, out=t)
        np.bitwise_xor(x, t, out=x)
        if factor is not None:
            np.multiply(x, factor, out=x)
    return x


def _uniforms_rows_np(seed: int, rows: int, ident: int) -> Any:
    assert np is not None
    k = np.arange(rows, dtype=np.uint64) * np.uint64(_ROW)
    x = (np.uint64(seed) + k) + np.uint64((ident * _GOLDEN) & _M64)
    a = _mix64_np(x)
    return ((a >> np.uint64(11)).astype(float) + 0.5) * _INV53


# ------------------------------------------------------------------------------------------------ the model


class ModelView:
    """A published model (``stats["models"][creative][objective]``, dco.learning.model) ready for draws: label
    lookups and, per memory, its weight and groups. ``None`` model: the cold start (every effect at its group's
    prior, one memory)."""

    __slots__ = ("variant_ix", "value_ix", "dims", "memories", "weights", "grid", "_idents", "_arrays")

    def __init__(self, model: Mapping[str, Any] | None, params: LearningParams = DEFAULT_PARAMS) -> None:
        self.grid = params.scale_grid
        self._idents: dict[tuple[int, str], int] = {}
        self._arrays: dict[tuple[int, str], Any] = {}
        self.variant_ix: list[dict[str, int]] = []
        self.value_ix: dict[str, dict[str, int]] = {}
        self.dims: list[str] = []
        self.memories: list[tuple[dict[str, tuple[list[float], list[float], float]], float]] = []
        self.weights: list[float] = [1.0]
        if model is not None and model.get("version") == MODEL_VERSION:
            self.variant_ix = [{v: j for j, v in enumerate(ids)} for ids in model.get("variants", [])]
            self.dims = list(model.get("dims", []))
            self.value_ix = {d: {v: j for j, v in enumerate(vals)} for d, vals in zip(self.dims, model.get("values", []), strict=False)}
            for memory in model.get("memories", []):
                groups = {}
                grid = tuple(memory.get("grid") or self.grid)
                for name, g in (memory.get("groups") or {}).items():
                    groups[name] = (list(g.get("mean", [])), list(g.get("var", [])), prior_var(g["mix"], grid)
                                    if len(g.get("mix", [])) == len(grid) else _cold_prior(params))
                self.memories.append((groups, float(memory.get("intercept", 0.0))))
            lw = [float(x) for x in model.get("log_weights", [])]
            if len(lw) == len(self.memories) and lw:
                top = max(lw)
                w = [math.exp(x - top) for x in lw]
                total = sum(w)
                self.weights = [x / total for x in w]
            else:
                self.weights = [1.0 / len(self.memories)] * len(self.memories) if self.memories else [1.0]
        if not self.memories:
            self.memories = [({}, 0.0)]
            self.weights = [1.0]

    def ident(self, slot: int, variant: str) -> int:
        """The generator identity of a slot's variant (its draws' address, the same in every table)."""
        key = (slot, variant)
        found = self._idents.get(key)
        if found is None:
            found = self._idents[key] = _hash64(f"u:{slot}:{variant}")
        return found

    def arrays(self, memory: int, group: str) -> Any:
        """(numpy) ``(means, variances, prior variance)`` of a group as arrays, once per view; None without it."""
        key = (memory, group)
        if key not in self._arrays:
            found = self.memories[memory][0].get(group)
            self._arrays[key] = None if found is None else (
                np.asarray(found[0], dtype=float), np.asarray(found[1], dtype=float), found[2])  # type: ignore[union-attr]
        return self._arrays[key]

    def effect(self, memory: int, group: str, index: int | None, cold: float) -> tuple[float, float]:
        """``(mean, variance)`` of one effect of a memory; an effect the model does not hold (``index`` None, or
        a group or position it never saw) has its group's prior (``cold``: the prior of a group it lacks)."""
        groups = self.memories[memory][0]
        found = groups.get(group)
        if found is None:
            return 0.0, cold
        mean, var, pv = found
        if index is None or index >= len(mean):
            return 0.0, pv
        return mean[index], var[index]


def _cold_prior(params: LearningParams, size: int = 1) -> float:
    """The prior variance of an effect of a group the model does not hold (``size`` effects)."""
    alpha = dirichlet(params, size)
    total = sum(alpha)
    return prior_var([a / total for a in alpha], params.scale_grid)


# ------------------------------------------------------------------------------------------------ tables


class Table:
    """A decision table: per row the winning combination (variant ids, None when no combination is allowed), the
    memory it drew from and its drawn click logit (``scores``; reference learners: empty), and per distinct winner
    its share of rows."""

    __slots__ = ("winners", "share", "rows", "memories", "scores")

    def __init__(self, winners: list[tuple[str, ...] | None], memories: list[int],
                 scores: list[float] | None = None) -> None:
        self.winners = winners
        self.scores = scores or []
        self.rows = len(winners)
        self.memories = memories
        counts: dict[tuple[str, ...] | None, int] = {}
        for w in winners:
            counts[w] = counts.get(w, 0) + 1
        self.share = {w: c / self.rows for w, c in counts.items()}


def pick(table: Table, u: float) -> tuple[tuple[str, ...] | None, float, int]:
    """The decision for uniform ``u``: ``(winner, propensity, row)``."""
    row = min(int(u * table.rows), table.rows - 1)
    winner = table.winners[row]
    return winner, table.share[winner], row


def build_table(
    view: ModelView,
    eligible: Sequence[Sequence[str]],
    context: Mapping[str, str],
    exclusions: Sequence[tuple[str, str]],
    seed: int,
    params: LearningParams = DEFAULT_PARAMS,
    *,
    accelerated: bool | None = None,
) -> Table:
    """The decision table of a creative whose slots (positions) offer ``eligible`` variant ids, in learning
    ``context`` (dimension -> escaped value), with ``exclusions`` (pairs of variant ids never shown together).
    ``accelerated`` forces the numpy (True) or pure-Python (False) path; default: numpy when present."""
    use_np = (np is not None) if accelerated is None else accelerated
    if use_np and np is None:
        raise ValueError("numpy is not available")
    slots = len(eligible)
    rows = params.pool
    sizes = [max(len(view.variant_ix[s]) if s < len(view.variant_ix) else 0, len(eligible[s])) for s in range(slots)]
    # context values present in the model (others have no learned effect: their groups are absent)
    ctx = []
    for d, dim in enumerate(view.dims):
        value = context.get(dim)
        if value is not None:
            ctx.append((d, view.value_ix.get(dim, {}).get(value), max(len(view.value_ix.get(dim, {})), 1)))
    n_mem = len(view.memories)
    # per slot: the model index of each eligible variant (-1: the model never saw it)
    where = [[(view.variant_ix[s] if s < len(view.variant_ix) else {}).get(v, -1) for v in eligible[s]]
             for s in range(slots)]
    gather = _gather_np if use_np else _gather_py
    # per memory and slot: (means, variances) of each eligible variant's score u = main + sum of ctx effects
    u_mean: list[list[Any]] = []
    u_var: list[list[Any]] = []
    for m in range(n_mem):
        means_m, vars_m = [], []
        for s in range(slots):
            mean, var = gather(view, m, f"main:{s}", where[s], _cold_prior(params, sizes[s]))
            width = len(view.variant_ix[s]) if s < len(view.variant_ix) else 0
            for d, x, values in ctx:
                index = [-1 if j < 0 or x is None else x * width + j for j in where[s]]
                cm, cv = gather(view, m, f"ctx:{d}:{s}", index, _cold_prior(params, values * sizes[s]))
                mean = _add(mean, cm)
                var = _add(var, cv)
            means_m.append(mean)
            vars_m.append(var)
        u_mean.append(means_m)
        u_var.append(vars_m)
    # pair groups in play: any memory with a pair effect (eligible) of |mean| or sd at _ACTIVE or more; pair
    # starts for the hill-climb where some pair effect's mean reaches _START
    pairs: list[tuple[int, int]] = []
    starts: list[tuple[int, int]] = []
    p_mean: dict[tuple[int, int], list[Any]] = {}
    p_var: dict[tuple[int, int], list[Any]] = {}
    for s in range(slots):
        for t in range(s + 1, slots):
            width = len(view.variant_ix[t]) if t < len(view.variant_ix) else 0
            index = [-1 if a < 0 or b < 0 else a * width + b for a in where[s] for b in where[t]]
            cold = _cold_prior(params, sizes[s] * sizes[t])
            ms, vs_ = [], []
            live = start = False
            for m in range(n_mem):
                mean, var = gather(view, m, f"pair:{s}:{t}", index, cold)
                top_mean, top_var = _largest(mean, var)
                live = live or top_mean >= _ACTIVE or top_var >= _ACTIVE * _ACTIVE
                start = start or top_mean >= _START
                ms.append(mean)
                vs_.append(var)
            if live:
                pairs.append((s, t))
                p_mean[(s, t)] = ms
                p_var[(s, t)] = vs_
                if start:
                    starts.append((s, t))
    excluded = _exclusion_masks(eligible, exclusions)
    idents_u = [[view.ident(s, v) for v in eligible[s]] for s in range(slots)]
    idents_p = {(s, t): _pair_idents(idents_u[s], idents_u[t], s, t, use_np) for s, t in pairs}
    weights = view.weights
    table = _table_np if use_np else _table_py
    winners, mems, scores = table(seed, rows, weights, u_mean, u_var, pairs, starts, p_mean, p_var, excluded,
                                  idents_u, idents_p, eligible, params.climb_sweeps)
    return Table(winners, mems, scores)


def _gather_py(view: ModelView, memory: int, group: str, index: Sequence[int], cold: float) -> tuple[list[float],
                                                                                                       list[float]]:
    """``(means, variances)`` of a group's effects at ``index`` (``-1``: the group's prior)."""
    found = view.memories[memory][0].get(group)
    if found is None:
        return [0.0] * len(index), [cold] * len(index)
    mean, var, pv = found
    size = len(mean)
    return ([mean[j] if 0 <= j < size else 0.0 for j in index],
            [var[j] if 0 <= j < size else pv for j in index])


def _gather_np(view: ModelView, memory: int, group: str, index: Sequence[int], cold: float) -> tuple[Any, Any]:
    """:func:`_gather_py` with numpy: the same numbers, gathered from the group's arrays."""
    assert np is not None
    found = view.arrays(memory, group)
    ix = np.asarray(index, dtype=np.intp)
    if found is None:
        return np.zeros(len(ix)), np.full(len(ix), cold)
    mean, var, pv = found
    ok = (ix >= 0) & (ix < len(mean))
    safe = np.where(ok, ix, 0)
    if len(mean) == 0:
        return np.zeros(len(ix)), np.full(len(ix), pv)
    return np.where(ok, mean[safe], 0.0), np.where(ok, var[safe], pv)


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, list):
        return [x + y for x, y in zip(a, b, strict=True)]
    return a + b


def _largest(mean: Any, var: Any) -> tuple[float, float]:
    if not len(mean):
        return 0.0, 0.0
    if isinstance(mean, list):
        return max(abs(x) for x in mean), max(var)
    return float(np.abs(mean).max()), float(var.max())  # type: ignore[union-attr]


def _pair_idents(ids_a: Sequence[int], ids_b: Sequence[int], s: int, t: int, use_np: bool) -> Any:
    """The generator identities of a pair group's cells (``a`` major), from its variants' identities."""
    salt = _mix64(((s + 1) * _ROW + (t + 1) * _GOLDEN) & _M64)
    if use_np:
        assert np is not None
        a = np.asarray(ids_a, dtype=np.uint64)[:, None]
        b = (np.asarray(ids_b, dtype=np.uint64) * np.uint64(_GOLDEN))[None, :]
        return _mix64_np((a ^ b) + np.uint64(salt)).reshape(-1).tolist()
    return [_mix64(((a ^ ((b * _GOLDEN) & _M64)) + salt) & _M64) for a in ids_a for b in ids_b]


def _exclusion_masks(eligible: Sequence[Sequence[str]],
                     exclusions: Sequence[tuple[str, str]]) -> dict[tuple[int, int], set[tuple[int, int]]]:
    """Per ordered pair of slots ``(s, t)``: the excluded ``(index in s, index in t)`` pairs."""
    out: dict[tuple[int, int], set[tuple[int, int]]] = {}
    if not exclusions:
        return out
    where: dict[str, list[tuple[int, int]]] = {}
    for s, ids in enumerate(eligible):
        for i, v in enumerate(ids):
            where.setdefault(v, []).append((s, i))
    for a, b in exclusions:
        for s, i in where.get(a, []):
            for t, j in where.get(b, []):
                if s != t:
                    out.setdefault((s, t), set()).add((i, j))
                    out.setdefault((t, s), set()).add((j, i))
    return out


def _memory_of(u: float, weights: Sequence[float]) -> int:
    acc = 0.0
    for m, w in enumerate(weights):
        acc += w
        if u < acc:
            return m
    return len(weights) - 1


def _table_py(seed, rows, weights, u_mean, u_var, pairs, starts, p_mean, p_var, excluded, idents_u, idents_p,
              eligible, sweeps):
    slots = len(eligible)
    winners: list[tuple[str, ...] | None] = []
    mems: list[int] = []
    scores: list[float] = []
    neg = -math.inf
    for k in range(rows):
        m = _memory_of(_uniform_py(seed, k, _MEMORY_ID), weights) if len(weights) > 1 else 0
        mems.append(m)
        u = []
        for s in range(slots):
            line = []
            for i, ident in enumerate(idents_u[s]):
                u1, u2 = _uniforms_py(seed, k, ident)
                zz = math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)
                line.append(u_mean[m][s][i] + math.sqrt(u_var[m][s][i]) * zz)
            u.append(line)
        pd: dict[tuple[int, int], list[list[float]]] = {}
        for s, t in pairs:
            width = len(eligible[t])
            mean, var = p_mean[(s, t)][m], p_var[(s, t)][m]
            ids = idents_p[(s, t)]
            grid = []
            for i in range(len(eligible[s])):
                line = []
                for j in range(width):
                    u1, u2 = _uniforms_py(seed, k, ids[i * width + j])
                    zz = math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)
                    line.append(mean[i * width + j] + math.sqrt(var[i * width + j]) * zz)
                grid.append(line)
            pd[(s, t)] = grid

        def allowed(s: int, i: int, c: list[int], fixed: Sequence[int]) -> bool:
            for t in fixed:  # noqa: SIM110 - hot path: all() over a generator takes twice as long
                if t != s and c[t] >= 0 and (i, c[t]) in excluded.get((s, t), ()):
                    return False
            return True

        # gain and score take this row's draws as defaults (bound here; they run only within this row)
        def gain(s: int, i: int, c: list[int], fixed: Sequence[int], u: list[list[float]] = u,
                 pd: dict[tuple[int, int], list[list[float]]] = pd) -> float:
            total = u[s][i]
            for a, b in pairs:
                if a == s and b in fixed and c[b] >= 0:
                    total += pd[(a, b)][i][c[b]]
                elif b == s and a in fixed and c[a] >= 0:
                    total += pd[(a, b)][c[a]][i]
            return total

        def fill(c: list[int], order: Sequence[int], fixed: list[int]) -> bool:
            for s in order:
                best, best_i = neg, -1
                for i in range(len(eligible[s])):
                    if allowed(s, i, c, fixed):
                        g = gain(s, i, c, fixed)
                        if g > best:
                            best, best_i = g, i
                if best_i < 0:
                    return False
                c[s] = best_i
                fixed.append(s)
            return True

        def climb(c: list[int]) -> None:
            every = list(range(slots))
            for _ in range(sweeps):
                changed = False
                for s in range(slots):
                    best, best_i = neg, -1
                    for i in range(len(eligible[s])):
                        if allowed(s, i, c, every):
                            g = gain(s, i, c, every)
                            if g > best:
                                best, best_i = g, i
                    current = gain(s, c[s], c, every) if allowed(s, c[s], c, every) else neg
                    if best_i >= 0 and best > current:
                        c[s] = best_i
                        changed = True
                if not changed:
                    break

        def score(c: list[int], u: list[list[float]] = u,
                  pd: dict[tuple[int, int], list[list[float]]] = pd) -> float:
            total = 0.0
            for s in range(slots):
                total += u[s][c[s]]
            for a, b in pairs:
                total += pd[(a, b)][c[a]][c[b]]
            return total

        best_c: list[int] | None = None
        best_score = neg
        c = [-1] * slots
        if fill(c, range(slots), []):
            if pairs or excluded:
                climb(c)
            best_c, best_score = c, score(c)
        for a, b in starts:
            c = [-1] * slots
            top, at = neg, (-1, -1)
            for i in range(len(eligible[a])):
                for j in range(len(eligible[b])):
                    if (i, j) in excluded.get((a, b), ()):
                        continue
                    g = u[a][i] + u[b][j] + pd[(a, b)][i][j]
                    if g > top:
                        top, at = g, (i, j)
            if at[0] < 0:
                continue
            c[a], c[b] = at
            if not fill(c, [s for s in range(slots) if s not in (a, b)], [a, b]):
                continue
            climb(c)
            sc = score(c)
            if sc > best_score:
                best_c, best_score = c, sc
        winners.append(None if best_c is None else tuple(eligible[s][best_c[s]] for s in range(slots)))
        scores.append(best_score)
    return winners, mems, scores


def _table_np(seed, rows, weights, u_mean, u_var, pairs, starts, p_mean, p_var, excluded, idents_u, idents_p,
              eligible, sweeps):
    """:func:`_table_py` with numpy: the same draws, starts and climbing order, vectorized over rows."""
    assert np is not None
    slots = len(eligible)
    if len(weights) > 1:
        uu = _uniforms_rows_np(seed, rows, _MEMORY_ID)
        mem = np.zeros(rows, dtype=np.intp)
        acc = 0.0
        for m, w in enumerate(weights[:-1]):
            acc += w
            mem = np.where((mem == m) & (uu >= acc), m + 1, mem)
    else:
        mem = np.zeros(rows, dtype=np.intp)
    u = []
    for s in range(slots):
        mean = np.asarray([u_mean[m][s] for m in range(len(u_mean))])[mem]
        sd = np.sqrt(np.asarray([u_var[m][s] for m in range(len(u_var))]))[mem]
        u.append(mean + sd * _normals_np(seed, rows, idents_u[s]))
    pd = {}
    for s, t in pairs:
        shape = (rows, len(eligible[s]), len(eligible[t]))
        mean = np.asarray(p_mean[(s, t)])[mem]
        sd = np.sqrt(np.asarray(p_var[(s, t)]))[mem]
        pd[(s, t)] = (mean + sd * _normals_np(seed, rows, idents_p[(s, t)])).reshape(shape)
    ex = {}
    for (s, t), cells in excluded.items():
        mask = np.zeros((len(eligible[s]), len(eligible[t])), dtype=bool)
        for i, j in cells:
            mask[i, j] = True
        ex[(s, t)] = mask
    ar = np.arange(rows)
    neg = -np.inf

    def gain(s: int, c: Any, fixed: Sequence[int]) -> Any:
        total = u[s].copy()
        for a, b in pairs:
            if a == s and b in fixed:
                total = total + pd[(a, b)][ar, :, c[:, b]]
            elif b == s and a in fixed:
                total = total + pd[(a, b)][ar, c[:, a], :]
        for t in fixed:
            if t != s and (s, t) in ex:
                total = np.where(ex[(s, t)][:, c[:, t]].T, neg, total)
        return total

    def fill(c: Any, ok: Any, order: Sequence[int], fixed: list[int]) -> Any:
        for s in order:
            g = gain(s, c, fixed)
            best = g.argmax(axis=1)
            ok = ok & np.isfinite(g[ar, best])
            c[:, s] = best
            fixed.append(s)
        return ok

    def climb(c: Any) -> None:
        every = list(range(slots))
        for _ in range(sweeps):
            changed = False
            for s in range(slots):
                g = gain(s, c, every)
                best = g.argmax(axis=1)
                better = g[ar, best] > g[ar, c[:, s]]
                if better.any():
                    c[:, s] = np.where(better, best, c[:, s])
                    changed = True
            if not changed:
                break

    def score(c: Any) -> Any:
        total = u[0][ar, c[:, 0]].copy()
        for s in range(1, slots):
            total = total + u[s][ar, c[:, s]]
        for a, b in pairs:
            total = total + pd[(a, b)][ar, c[:, a], c[:, b]]
        return total

    c = np.zeros((rows, slots), dtype=np.intp)
    ok = fill(c, np.ones(rows, dtype=bool), range(slots), [])
    if pairs or excluded:
        climb(c)
    best_c = c
    best_score = np.where(ok, score(c), neg)
    for a, b in starts:
        joint = u[a][:, :, None] + u[b][:, None, :] + pd[(a, b)]
        if (a, b) in ex:
            joint = np.where(ex[(a, b)][None, :, :], neg, joint)
        flat = joint.reshape(rows, -1).argmax(axis=1)
        okp = np.isfinite(joint.reshape(rows, -1)[ar, flat])
        c = np.zeros((rows, slots), dtype=np.intp)
        c[:, a] = flat // len(eligible[b])
        c[:, b] = flat % len(eligible[b])
        okp = fill(c, okp, [s for s in range(slots) if s not in (a, b)], [a, b])
        climb(c)
        sc = np.where(okp, score(c), neg)
        better = sc > best_score
        best_c = np.where(better[:, None], c, best_c)
        best_score = np.where(better, sc, best_score)
    valid = np.isfinite(best_score)
    ids = [np.asarray(e, dtype=object) for e in eligible]
    cols = [ids[s][best_c[:, s]] for s in range(slots)]
    winners: list[tuple[str, ...] | None] = [
        tuple(col[k] for col in cols) if valid[k] else None for k in range(rows)
    ]
    return winners, mem.tolist(), best_score.tolist()
