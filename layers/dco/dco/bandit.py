"""Tier 2: choose one arm among the eligible arms with the creative group's rotation method.

Data flow: targeting and the catalog give the eligible arm keys; :class:`dco.stats.StatsTable` turns them into
``(successes, trials)``; one of the functions below turns those (or the weights, or the viewer key) into a
:class:`Choice`, a frozen record the decision carries into the explain trace and the impression event (the
propensity is what offline evaluation needs). Randomness comes only from the ``rng`` argument
(:func:`dco.rng.make_rng`), so the same seed gives the same choice.

Rotation methods (docs/rotation.md has the reasoning and the numbers):

* :func:`thompson` (default): Beta(successes + a, trials - successes + b) per arm, argmax of one draw each.
  Before sampling, arms that cannot realistically win are pruned: with the posterior mean ``m``, standard
  deviation ``sd`` and ``N = trials + a + b``, an arm's bounds are ``m -/+ (5.48 sd + 15 / N)`` (a Bernstein,
  sub-gamma style tail bound at about 3e-7 per side, conservative for skewed small-count posteriors). Arms whose
  upper bound is below the best lower bound are never sampled; the change to the choice distribution is at most
  a few 1e-7 per pruned arm. If only one arm survives it is a *clear winner*: no sampling, propensity 1.0.
  Otherwise the propensity of the chosen arm is estimated with a Gaussian approximation of each surviving
  posterior and 12-node Gauss-Hermite quadrature of ``P(chosen is max) = E[prod_j Phi((x - m_j) / sd_j)]``
  (exact ``1/k`` when all k surviving arms are unseen and share the prior; plain Python with ``math.erfc`` for
  up to 8 survivors). :func:`thompson_propensities` gives Monte Carlo propensities for offline use.
* :func:`weighted`: advertiser percentages; propensity ``w / sum(w)`` exactly.
* :func:`sequential`: a stateless rotation; position from :func:`sequence_position`; propensity 1.0.
* :func:`uniform` (the ``random`` rotation): propensity ``1 / n`` exactly.
* :func:`in_holdout`: a stable hash decides whether a viewer is in the campaign's holdout.

Ties in a draw go to the lowest index. With numpy (``dco._accel.np``) Thompson is vectorized; without it the
same rules run in plain Python with ``random.Random.betavariate`` (different numbers, same behaviour).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dco._accel import np
from dco.rng import Rng

__all__ = [
    "Choice",
    "bounds",
    "thompson",
    "thompson_propensities",
    "weighted",
    "sequential",
    "uniform",
    "in_holdout",
    "sequence_position",
]

# Pruning / clear-winner bound: m -/+ (_Z * sd + _X / N); _X = ln(1 / 3e-7), _Z = sqrt(2 * _X).
_X = 15.0
_Z = math.sqrt(2.0 * _X)
_TOP = 5
_SMALL = 8  # up to this many contenders, the numpy path finishes in plain Python
_SQRT2 = math.sqrt(2.0)

# Probabilists' Gauss-Hermite nodes and normalized weights (16-node rule, the 4 outer nodes with weight
# < 1e-6 dropped): E[f(Z)] ~= sum(w * f(x)) for Z ~ N(0, 1).
_GH_X = (
    -4.492955302520011,
    -3.600873624171549,
    -2.760245047630701,
    -1.951980345716333,
    -1.163829100554965,
    -0.386760604500557,
    0.386760604500557,
    1.163829100554965,
    1.951980345716333,
    2.760245047630701,
    3.600873624171549,
    4.492955302520011,
)
_GH_W = (
    1.530003216248732e-05,
    0.0005259849265739087,
    0.007266937601184749,
    0.04728475235401406,
    0.1583383727509497,
    0.286568521238012,
    0.286568521238012,
    0.1583383727509497,
    0.04728475235401406,
    0.007266937601184749,
    0.0005259849265739087,
    1.530003216248732e-05,
)
_GH_NORM = 1.0 / math.fsum(_GH_W)
_PHI_C1 = -2.0 * math.sqrt(2.0 / math.pi)
_PHI_C3 = _PHI_C1 * 0.044715

if np is not None:
    _NP_GH_W = np.array(_GH_W) * _GH_NORM
    _NP_GH_X_COL = np.array(_GH_X)[:, None]


@dataclass(frozen=True)
class Choice:
    """One rotation decision.

    ``index`` is the position in the eligible arms; ``propensity`` the probability this method had of choosing
    it (exact or estimated, see the module docstring); ``sampled`` the top ``(index, value)`` pairs of the draw
    (at most 5, best first; for a clear winner the posterior mean; empty for non-Thompson methods);
    ``skipped_sampling`` is true when no random draw was made (single arm, clear winner, sequential).
    """

    index: int
    propensity: float
    method: str
    sampled: tuple[tuple[int, float], ...] = ()
    skipped_sampling: bool = False


# --------------------------------------------------------------------------------------------------- thompson


def _check_prior(prior: tuple[float, float]) -> tuple[float, float]:
    pa, pb = float(prior[0]), float(prior[1])
    if not (pa > 0.0 and pb > 0.0):
        raise ValueError(f"prior must be two positive numbers, got {prior!r}")
    return pa, pb


def thompson(
    successes: Any,
    trials: Any,
    rng: Rng,
    *,
    prior: tuple[float, float] = (1.0, 1.0),
    bounds: tuple[Any, Any] | None = None,
    top: int = _TOP,
) -> Choice:
    """Thompson sampling over the eligible arms (``successes[i]`` of ``trials[i]``; 0/0 means the prior).

    ``bounds``, when given, is ``bounds(successes, trials, prior=prior)`` computed earlier (for instance once
    per stats refresh); it must match the counts and the prior. ``top`` is how many ``(index, draw)`` pairs
    :attr:`Choice.sampled` keeps (the chosen arm first); a decision without an explain trace asks for 1.

    Counts must satisfy ``0 <= successes <= trials`` (:class:`dco.stats.StatsTable` guarantees it). The hot
    path checks no more than it gets for free: a violation raises ``ValueError`` when it reaches a sampled
    arm; the pure-Python path checks every arm.

    >>> from dco.rng import make_rng
    >>> thompson([5000, 1], [10000, 10000], make_rng(1)).index
    0
    """
    pa, pb = _check_prior(prior)
    if np is not None:
        return _thompson_np(successes, trials, rng, pa, pb, bounds, max(1, top))
    return _thompson_py(successes, trials, rng, pa, pb, bounds, max(1, top))


def bounds(successes: Any, trials: Any, *, prior: tuple[float, float] = (1.0, 1.0)) -> tuple[Any, Any]:
    """The pruning bounds ``(lower, upper)`` of each arm's posterior (see the module docstring).

    They depend only on the counts and the prior, so a caller that serves many decisions from one stats object
    can compute them once per stats refresh (:meth:`dco.stats.StatsTable.bounds_at`) and pass them to
    :func:`thompson`, which then skips the per-arm arithmetic.
    """
    pa, pb = _check_prior(prior)
    if np is not None:
        a = np.asarray(successes, dtype=float) + pa
        inv = 1.0 / (np.asarray(trials, dtype=float) + (pa + pb))
        m = a * inv
        w = np.sqrt(m * (1.0 - m) * inv)  # sd with N for N + 1: a hair wider, still conservative
        w *= _Z
        w += inv * _X
        return m - w, m + w
    lower: list[float] = []
    upper: list[float] = []
    for s, n in zip(successes, trials, strict=True):
        big_n = float(n) + pa + pb
        m = (float(s) + pa) / big_n
        w = _Z * math.sqrt(m * (1.0 - m) / big_n) + _X / big_n
        lower.append(m - w)
        upper.append(m + w)
    return lower, upper


_BAD_COUNTS = "thompson needs 0 <= successes <= trials for every arm"
_TAIL = math.exp(-_X)  # the bounds' one-sided tail probability, ~3.06e-7


def _gauss_legendre01(k: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Gauss-Legendre nodes and weights mapped to [0, 1] (Newton on the Legendre recurrence; stdlib only)."""
    nodes: list[float] = []
    weights: list[float] = []
    for i in range(1, k + 1):
        x = math.cos(math.pi * (i - 0.25) / (k + 0.5))
        for _ in range(100):
            p0, p1 = 1.0, x
            for m in range(2, k + 1):
                p0, p1 = p1, ((2 * m - 1) * x * p1 - (m - 1) * p0) / m
            dp = k * (x * p1 - p0) / (x * x - 1.0)
            step = p1 / dp
            x -= step
            if abs(step) < 1e-15:
                break
        nodes.append((1.0 - x) / 2.0)
        weights.append(1.0 / ((1.0 - x * x) * dp * dp))
    return tuple(nodes), tuple(weights)


_GL_P, _GL_W = _gauss_legendre01(16)
if np is not None:
    _NP_GL_P = np.array(_GL_P)
    _NP_GL_W = np.array(_GL_W)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)``: the CDF of Beta(a, b) at ``x``.

    >>> round(beta_cdf(0.4, 2.0, 3.0), 12)  # 6x^2(1-x)^2 + 4x^3(1-x) + x^4
    0.5248
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


class _Prior:
    """CDF and quantile function of the Beta prior that every unseen arm shares.

    Beta(1, 1) (the default) is the uniform distribution: both are the identity. Any other prior is tabulated
    once per process on 2,049 points of ``x = sin^2(pi t / 2)`` (dense near 0 and 1, where shapes below 1 put
    their mass) and interpolated linearly.
    """

    __slots__ = ("uniform", "xs", "cs", "_xs_np", "_cs_np")

    def __init__(self, a: float, b: float) -> None:
        self.uniform = a == 1.0 and b == 1.0
        self.xs: list[float] = []
        self.cs: list[float] = []
        self._xs_np: Any = None
        self._cs_np: Any = None
        if self.uniform:
            return
        xs = [math.sin(math.pi * i / 4096.0) ** 2 for i in range(2049)]
        cs = [beta_cdf(x, a, b) for x in xs]
        for i in range(1, len(cs)):  # monotone despite rounding
            cs[i] = max(cs[i], cs[i - 1])
        cs[0], cs[-1] = 0.0, 1.0
        self.xs, self.cs = xs, cs
        if np is not None:
            self._xs_np, self._cs_np = np.array(xs), np.array(cs)

    def quantile(self, p: float) -> float:
        if self.uniform:
            return p
        return _interp(p, self.cs, self.xs)

    def quantiles(self, ps: Any) -> Any:
        assert np is not None
        if self.uniform:
            return ps
        return np.interp(ps, self._cs_np, self._xs_np)

    def cdf(self, x: float) -> float:
        if self.uniform:
            return min(1.0, max(0.0, x))
        return _interp(x, self.xs, self.cs)

    def cdfs(self, xs: Any) -> Any:
        assert np is not None
        if self.uniform:
            return np.clip(xs, 0.0, 1.0)
        return np.interp(xs, self._xs_np, self._cs_np)


def _interp(v: float, xp: list[float], fp: list[float]) -> float:
    """Linear interpolation of ``fp`` over the non-decreasing ``xp``, clamped at the ends."""
    if v <= xp[0]:
        return fp[0]
    if v >= xp[-1]:
        return fp[-1]
    i = bisect.bisect_right(xp, v)
    x0, x1 = xp[i - 1], xp[i]
    if x1 == x0:
        return fp[i]
    return fp[i - 1] + (fp[i] - fp[i - 1]) * (v - x0) / (x1 - x0)


_PRIORS: dict[tuple[float, float], _Prior] = {}


def _prior(pa: float, pb: float) -> _Prior:
    found = _PRIORS.get((pa, pb))
    if found is None:
        found = _PRIORS[(pa, pb)] = _Prior(pa, pb)
    return found


def _thompson_np(
    successes: Any, trials: Any, rng: Rng, pa: float, pb: float, given: tuple[Any, Any] | None, top: int
) -> Choice:
    assert np is not None
    s = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    k = s.shape[0]
    if k == 0 or n.shape[0] != k:
        raise ValueError("thompson needs as many trials as successes, and at least one arm")
    if k == 1:
        return Choice(0, 1.0, "thompson", (), True)
    lower, upper = bounds(s, n, prior=(pa, pb)) if given is None else given
    unseen = n == 0.0
    kg = int(np.count_nonzero(unseen))
    if kg >= 2:
        return _group_np(s, n, lower, upper, unseen, kg, rng, pa, pb, top)
    best = int(lower.argmax())
    contenders = (upper >= lower[best]).nonzero()[0]
    c = contenders.shape[0]
    if c == 0:  # NaN bounds: no arm compares; costs nothing on valid input
        raise ValueError(_BAD_COUNTS)
    if c == 1:
        return Choice(best, 1.0, "thompson", ((best, float((s[best] + pa) / (n[best] + pa + pb))),), True)
    ac, nc = _shapes_np(s, n, contenders, pa, pb)
    draws = _draw(rng, ac, nc)
    if c <= _SMALL:  # a few contenders: plain Python beats another twenty numpy calls
        return _finish(contenders.tolist(), ac.tolist(), nc.tolist(), draws.tolist(), pa + pb, top)
    j = int(draws.argmax())
    chosen = int(contenders[j])
    sampled = _top_np(contenders, draws, j, top)
    # (At most one arm is unseen here: several unseen arms take the group path above.)
    # Gaussian approximation of the contenders that can still beat the chosen arm (upper bound above its lower
    # bound: the others contribute Phi ~= 1 within the bound's 3e-7 tail).
    near = upper[contenders] >= lower[chosen]
    if not near.all():
        j = int(near[:j].sum())
        ac = ac[near]
        nc = nc[near]
        if ac.shape[0] == 1:
            return Choice(chosen, 1.0, "thompson", sampled, False)
    return Choice(chosen, _clip(_quadrature_np(ac, nc, j, None, 0)), "thompson", sampled, False)


def _shapes_np(s: Any, n: Any, idx: Any, pa: float, pb: float) -> tuple[Any, Any]:
    """Beta shapes of the arms at ``idx`` as ``(alpha, alpha + beta)`` (new arrays)."""
    ac = s[idx]
    ac += pa
    nc = n[idx]
    nc += pa + pb
    return ac, nc


def _draw(rng: Rng, ac: Any, nc: Any) -> Any:
    try:
        return rng.betas(ac, nc - ac)
    except ValueError:  # a non-positive Beta shape: negative counts, or successes above trials
        raise ValueError(_BAD_COUNTS) from None


def _clip(p: float) -> float:
    return min(1.0, max(p, 1e-9))


def _top_np(indices: Any, draws: Any, j: int, top: int) -> tuple[tuple[int, float], ...]:
    """The chosen ``(index, draw)`` first, then the next best draws, ``top`` pairs at most."""
    assert np is not None
    first = ((int(indices[j]), float(draws[j])),)
    c = draws.shape[0]
    if top <= 1 or c <= 1:
        return first
    t = min(top, c)
    part = draws.argpartition(c - t)[c - t :]  # the top draws, unordered
    pairs = sorted(zip(part.tolist(), draws[part].tolist(), strict=True), key=lambda p: (-p[1], p[0]))
    return first + tuple((int(indices[i]), d) for i, d in pairs if i != j)[: t - 1]


def _phi_matrix_np(x: Any, mr: Any, isd: Any) -> Any:
    """``Phi((x[q] - m[r]) / sd[r])`` for nodes x (column) and arms r, float32, logistic-cubic approximation.

    ``isd`` is ``1 / sd`` and ``mr`` is ``m / sd``. exp() in float32 is about 4x faster than in float64 and the
    approximation (|error| < 2e-4) needs no more.
    """
    assert np is not None
    z = x.astype(np.float32) * isd.astype(np.float32)  # (x - m_r) / sd_r
    z -= mr.astype(np.float32)
    np.maximum(z, -9.0, out=z)  # keeps exp() finite in float32 below (Phi(-9) ~ 1e-19)
    # Phi(z) ~= 1 / (1 + exp(-2 sqrt(2/pi) (z + 0.044715 z^3))); all in place.
    y = z * z
    y *= _PHI_C3
    y += _PHI_C1
    y *= z
    np.exp(y, out=y)
    y += 1.0
    np.reciprocal(y, out=y)
    return y


def _quadrature_np(ac: Any, nc: Any, j: int, prior: _Prior | None, kg: int) -> float:
    """P(arm j beats the arms with Beta shapes ``(ac, nc - ac)`` [and ``kg`` unseen arms with ``prior``]).

    Gauss-Hermite over arm j's normal approximation; each other arm contributes ``Phi((x - m) / sd)``, the
    unseen group ``F_prior(x) ** kg``.
    """
    assert np is not None
    mr = ac / nc
    isd = mr * (1.0 - mr)
    isd /= nc + 1.0
    np.sqrt(isd, out=isd)
    np.reciprocal(isd, out=isd)  # 1 / sd
    x_col = _NP_GH_X_COL * (1.0 / float(isd[j]))
    x_col += float(mr[j])
    mr *= isd
    y = _phi_matrix_np(x_col, mr, isd)
    y[:, j] = 1.0
    prod = y.prod(axis=1, dtype=np.float64)
    if kg:
        assert prior is not None
        prod *= prior.cdfs(x_col[:, 0]) ** kg
    return float(np.dot(_NP_GH_W, prod))


def _group_np(
    s: Any, n: Any, lower: Any, upper: Any, unseen: Any, kg: int, rng: Rng, pa: float, pb: float, top: int
) -> Choice:
    """Thompson when ``kg >= 2`` arms are unseen: they share the prior, so they are sampled as one group.

    The maximum of ``kg`` independent prior draws is ``F^-1(U ** (1 / kg))`` and which of them attains it is
    uniform: one draw replaces ``kg`` (exact, not an approximation). Seen arms whose upper bound is below that
    draw (or below the best lower bound) are pruned as usual; the rest are sampled from their posteriors.
    """
    assert np is not None
    if s[unseen].any():
        raise ValueError(_BAD_COUNTS)
    prior = _prior(pa, pb)
    d0 = prior.quantile(rng.random() ** (1.0 / kg))
    seen = ~unseen
    cont = ((upper >= max(d0, float(lower.max()))) & seen).nonzero()[0]
    c = cont.shape[0]
    if c:
        ac, nc = _shapes_np(s, n, cont, pa, pb)
        draws = _draw(rng, ac, nc)
        j = int(draws.argmax())
    if not c or float(draws[j]) <= d0:  # an unseen arm wins; which one is uniform
        members = unseen.nonzero()[0]
        chosen = int(members[rng.integers(kg)])
        sampled = ((chosen, d0),) + (_top_np(cont, draws, j, top - 1) if c and top > 1 else ())
        return Choice(chosen, _group_win_np(s, n, upper, seen, prior, kg, pa, pb), "thompson", sampled, False)
    chosen = int(cont[j])
    sampled = _top_np(cont, draws, j, top)
    near = ((upper >= lower[chosen]) & seen).nonzero()[0]
    an, nn = _shapes_np(s, n, near, pa, pb)
    jn = int(np.searchsorted(near, chosen))
    if near.shape[0] <= _SMALL:
        ml, sl = _normal_py(an.tolist(), nn.tolist())
        others = [(ml[i], sl[i] * _SQRT2) for i in range(len(ml)) if i != jn]
        p = _seen_win_py(ml[jn], sl[jn], others, prior, kg)
    else:
        p = _quadrature_np(an, nn, jn, prior, kg)
    return Choice(chosen, _clip(p), "thompson", sampled, False)


def _group_win_np(s: Any, n: Any, upper: Any, seen: Any, prior: _Prior, kg: int, pa: float, pb: float) -> float:
    """Propensity of one given unseen arm: ``P(group maximum beats every seen arm) / kg``."""
    assert np is not None
    floor = prior.quantile(_TAIL ** (1.0 / kg))  # the group maximum is above this but for a 3e-7 tail
    near = ((upper >= floor) & seen).nonzero()[0]
    if not near.shape[0]:
        return 1.0 / kg
    an, nn = _shapes_np(s, n, near, pa, pb)
    if near.shape[0] <= _SMALL:
        ml, sl = _normal_py(an.tolist(), nn.tolist())
        return _clip(_group_win_py(prior, kg, [(m, sd * _SQRT2) for m, sd in zip(ml, sl, strict=True)]))
    mr = an / nn
    isd = mr * (1.0 - mr)
    isd /= nn + 1.0
    np.sqrt(isd, out=isd)
    np.reciprocal(isd, out=isd)
    mr *= isd
    x_col = np.asarray(prior.quantiles(_NP_GL_P ** (1.0 / kg)), dtype=float)[:, None]
    y = _phi_matrix_np(x_col, mr, isd)
    return _clip(float(np.dot(_NP_GL_W, y.prod(axis=1, dtype=np.float64))) / kg)


def _normal_py(al: list[float], nl: list[float]) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of the normal approximation of Beta(a, N - a) (exact Beta variance)."""
    m = [a / n for a, n in zip(al, nl, strict=True)]
    return m, [math.sqrt(mi * (1.0 - mi) / (ni + 1.0)) for mi, ni in zip(m, nl, strict=True)]


def _seen_win_py(mk: float, sk: float, others: list[tuple[float, float]], prior: _Prior | None, kg: int) -> float:
    """``E_x~N(mk, sk^2)[prod Phi((x - m) / sd) * F_prior(x) ** kg]`` (others as ``(m, sd * sqrt 2)``)."""
    total = 0.0
    for xg, wg in zip(_GH_X, _GH_W, strict=True):
        x = mk + sk * xg
        prod = prior.cdf(x) ** kg if kg and prior is not None else 1.0
        for mi, si in others:
            prod *= 0.5 * math.erfc((mi - x) / si)
        total += wg * prod
    return total * _GH_NORM


def _group_win_py(prior: _Prior, kg: int, others: list[tuple[float, float]]) -> float:
    """``P(max of kg prior draws beats every other arm) / kg``: Gauss-Legendre over the maximum's quantiles."""
    total = 0.0
    for p, w in zip(_GL_P, _GL_W, strict=True):
        x = prior.quantile(p ** (1.0 / kg))
        prod = 1.0
        for mi, si in others:
            prod *= 0.5 * math.erfc((mi - x) / si)
        total += w * prod
    return total / kg


def _thompson_py(
    successes: Any, trials: Any, rng: Rng, pa: float, pb: float, given: tuple[Any, Any] | None, top: int
) -> Choice:
    s = [float(v) for v in successes]
    n = [float(v) for v in trials]
    k = len(s)
    if k == 0 or len(n) != k:
        raise ValueError("thompson needs as many trials as successes, and at least one arm")
    if k == 1:
        return Choice(0, 1.0, "thompson", (), True)
    if any(not 0.0 <= si <= ni for si, ni in zip(s, n, strict=True)):
        raise ValueError(_BAD_COUNTS)
    a = [si + pa for si in s]
    big_n = [ni + pa + pb for ni in n]
    lower, upper = bounds(s, n, prior=(pa, pb)) if given is None else given
    unseen = [i for i in range(k) if n[i] == 0.0]
    kg = len(unseen)
    if kg >= 2:
        prior = _prior(pa, pb)
        d0 = prior.quantile(rng.random() ** (1.0 / kg))
        threshold = max(d0, max(lower))
        cont = [i for i in range(k) if n[i] != 0.0 and upper[i] >= threshold]
        draws = [float(d) for d in rng.betas([a[i] for i in cont], [big_n[i] - a[i] for i in cont])] if cont else []
        ranked = sorted(range(len(cont)), key=lambda i: (-draws[i], i))
        if not cont or draws[ranked[0]] <= d0:
            chosen = unseen[rng.integers(kg)]
            sampled = ((chosen, d0),) + tuple((cont[i], draws[i]) for i in ranked[: top - 1])
            floor = prior.quantile(_TAIL ** (1.0 / kg))
            near = [i for i in range(k) if n[i] != 0.0 and upper[i] >= floor]
            if not near:
                return Choice(chosen, 1.0 / kg, "thompson", sampled, False)
            ml, sl = _normal_py([a[i] for i in near], [big_n[i] for i in near])
            others = [(m, sd * _SQRT2) for m, sd in zip(ml, sl, strict=True)]
            return Choice(chosen, _clip(_group_win_py(prior, kg, others)), "thompson", sampled, False)
        chosen = cont[ranked[0]]
        sampled = tuple((cont[i], draws[i]) for i in ranked[:top])
        near = [i for i in range(k) if n[i] != 0.0 and upper[i] >= lower[chosen]]
        ml, sl = _normal_py([a[i] for i in near], [big_n[i] for i in near])
        jn = near.index(chosen)
        others = [(ml[i], sl[i] * _SQRT2) for i in range(len(near)) if i != jn]
        return Choice(chosen, _clip(_seen_win_py(ml[jn], sl[jn], others, prior, kg)), "thompson", sampled, False)
    best = max(range(k), key=lower.__getitem__)  # first maximum
    contenders = [i for i in range(k) if upper[i] >= lower[best]]
    if len(contenders) == 1:
        return Choice(best, 1.0, "thompson", ((best, a[best] / big_n[best]),), True)
    al = [a[i] for i in contenders]
    nl = [big_n[i] for i in contenders]
    draws = rng.betas(al, [ni - ai for ai, ni in zip(al, nl, strict=True)])
    return _finish(contenders, al, nl, [float(d) for d in draws], pa + pb, top)


def _finish(
    cl: list[int], al: list[float], nl: list[float], dl: list[float], prior_n: float, top: int = _TOP
) -> Choice:
    """Choice, trace and propensity from the contenders' indices, Beta shapes ``(al, nl - al)`` and draws."""
    c = len(cl)
    ranked = sorted(range(c), key=lambda i: (-dl[i], i))  # ties: lowest index first
    j = ranked[0]
    sampled = tuple((cl[i], dl[i]) for i in ranked[:top])
    if max(nl) == prior_n:  # all contenders unseen: one shared prior, exact 1/c
        return Choice(cl[j], 1.0 / c, "thompson", sampled, False)
    # Gaussian quadrature as in the numpy path, with the exact normal CDF.
    m, sd = _normal_py(al, nl)
    others = [(m[i], sd[i] * _SQRT2) for i in range(c) if i != j]
    return Choice(cl[j], _clip(_seen_win_py(m[j], sd[j], others, None, 0)), "thompson", sampled, False)


def thompson_propensities(
    successes: Any, trials: Any, rng: Rng, draws: int = 2000, *, prior: tuple[float, float] = (1.0, 1.0)
) -> list[float]:
    """Monte Carlo probability that each arm wins a Thompson draw (no pruning; ties to the lowest index).

    For offline evaluation and tests; costs ``draws * len(arms)`` Beta samples.
    """
    pa, pb = _check_prior(prior)
    if draws <= 0:
        raise ValueError("draws must be positive")
    s = [float(v) for v in successes]
    n = [float(v) for v in trials]
    k = len(s)
    if k == 0 or len(n) != k:
        raise ValueError("thompson_propensities needs as many trials as successes, and at least one arm")
    alpha = [si + pa for si in s]
    beta = [ni - si + pb for si, ni in zip(s, n, strict=True)]
    wins = [0] * k
    if np is not None:
        aa = np.broadcast_to(np.asarray(alpha), (draws, k))
        bb = np.broadcast_to(np.asarray(beta), (draws, k))
        samples = np.asarray(rng.betas(aa, bb), dtype=float).reshape(draws, k)
        counts = np.bincount(samples.argmax(axis=1), minlength=k)
        return [float(c) / draws for c in counts.tolist()]
    for _ in range(draws):
        row = rng.betas(alpha, beta)
        wins[max(range(k), key=row.__getitem__)] += 1
    return [c / draws for c in wins]


# ------------------------------------------------------------------------------------------ other rotations


def weighted(weights: Sequence[float], rng: Rng) -> Choice:
    """Advertiser-defined shares (percent, any positive scale); propensity ``w / sum(w)``.

    >>> from dco.rng import make_rng
    >>> weighted([0, 100], make_rng(3)).index
    1
    """
    ws = [float(v) for v in weights]
    if not ws:
        raise ValueError("weighted needs at least one arm")
    if any(not (v >= 0.0) or math.isinf(v) for v in ws):
        raise ValueError(f"weights must be finite and non-negative, got {list(weights)!r}")
    total = math.fsum(ws)
    if total <= 0.0:
        raise ValueError("weights must not all be zero")
    positive = [i for i, v in enumerate(ws) if v > 0.0]
    if len(positive) == 1:
        return Choice(positive[0], 1.0, "weighted", (), True)
    u = rng.random() * total
    acc = 0.0
    index = positive[-1]
    for i in positive:
        acc += ws[i]
        if u < acc:
            index = i
            break
    return Choice(index, ws[index] / total, "weighted", (), False)


def uniform(n: int, rng: Rng) -> Choice:
    """The ``random`` rotation: each of ``n`` arms with probability ``1 / n``."""
    if n <= 0:
        raise ValueError("uniform needs at least one arm")
    if n == 1:
        return Choice(0, 1.0, "random", (), True)
    return Choice(rng.integers(n), 1.0 / n, "random", (), False)


def sequential(n: int, position: int) -> Choice:
    """Stateless sequential rotation: arm ``position mod n`` (see :func:`sequence_position`).

    The choice is a function of the viewer key and the time, so its propensity is 1.0 (docs/rotation.md
    explains what that means for offline evaluation).

    >>> [sequential(3, p).index for p in range(5)]
    [0, 1, 2, 0, 1]
    """
    if n <= 0:
        raise ValueError("sequential needs at least one arm")
    return Choice(position % n, 1.0, "sequential", (), True)


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def in_holdout(key: str, share: float, salt: str) -> bool:
    """Whether ``key`` (a viewer id) falls in the holdout: ``blake2b(salt, key) / 2**64 < share``.

    Stable per (salt, key); about ``share`` of all keys are held out. Use the campaign id as the salt so each
    campaign holds out a different slice of viewers.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"holdout share must be in [0, 1], got {share!r}")
    if share <= 0.0:
        return False
    return _hash64(f"dco-holdout\x00{salt}\x00{key}") / 18446744073709551616.0 < share


def sequence_position(key: str, now_s: int, period_s: int) -> int:
    """The sequential-rotation position of viewer ``key`` at time ``now_s``: ``hash(key) + now_s // period_s``.

    Pass it to :func:`sequential`, which takes it modulo the number of arms: a viewer moves to the next
    creative every ``period_s`` seconds, and viewers start at hash-spread offsets so the fleet splits evenly.
    """
    if period_s <= 0:
        raise ValueError(f"period_s must be positive, got {period_s!r}")
    return _hash64(f"dco-sequence\x00{key}") + now_s // period_s
