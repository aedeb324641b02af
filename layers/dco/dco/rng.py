"""Deterministic per-decision randomness.

Every random choice the core makes goes through an :class:`Rng` that the caller builds from a seed with
:func:`make_rng`, so the same seed replays the same decision (the house rule: no global random generator).
Seeds usually come from the request (an id hashed by the adapter), so one decision = one seed.

Two backends, each deterministic on its own:

* numpy present: a ``numpy.random.Generator`` over PCG64. Building ``np.random.default_rng(seed)`` per request
  costs 10-20 us (the SeedSequence hashing dominates), so instead each thread keeps one PCG64 generator and
  :func:`make_rng` sets its 128-bit state and increment directly from a SplitMix64 expansion of the seed
  (a few microseconds). Several :class:`Rng` objects may be alive at once: the one that touches the shared
  generator saves the state of the previous holder first if that holder is still alive, so a given seed yields
  the same sequence whatever happened before or in between. Not for sharing across threads (each thread has
  its own generator).
  A decision mostly asks for a few scalars (a uniform per slot of an assembled creative, a bounded integer
  per slot of a holdout decision), and handing the shared generator over costs more than the draws (the
  state setter alone is a few microseconds). So a :class:`NumpyRng` starts detached: it keeps its 128-bit
  PCG64 state (and PCG64's buffered 32-bit half) as Python ints and makes ``random()`` and ``integers(n)``
  (``n < 2**32``) itself, bit for bit what numpy's PCG64 ``Generator`` gives (the same LCG step and XSL-RR
  output, 53-bit doubles, Lemire's bounded integers on buffered 32-bit halves; tests/unit/test_rng.py compares
  them). The first ``betas``, larger ``integers`` or ``generator`` call hands that state to the shared
  generator, and from then on everything goes through numpy.
* numpy absent (``--pure-python``, Pyodide without wheels): :class:`PureRng` steps the same PCG64 in Python, so
  ``random()`` and ``integers(n)`` (``n < 2**32``) give the numbers numpy gives for the same seed: the learner's
  decisions (one ``random()`` each, dco.learning.draws) are the same on both paths. Its Beta draws (arm-level
  Thompson sampling of product and creative arms) come from ``random.Random`` seeded from the seed, so those
  differ from numpy's (docs/rotation.md).
"""

from __future__ import annotations

import random as _random
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from dco._accel import np

__all__ = ["Rng", "make_rng", "NumpyRng", "PureRng"]

_M64 = (1 << 64) - 1


class Rng(Protocol):
    """What the core needs from a random source."""

    def random(self) -> float:
        """A float uniform on [0, 1)."""

    def betas(self, alpha: Any, beta: Any, rows: int | None = None) -> Any:
        """One Beta(alpha[i], beta[i]) sample per element (ndarray with numpy, list without); with ``rows``,
        that many such rows (a ``rows x len(alpha)`` array, a list of lists without numpy)."""

    def integers(self, n: int) -> int:
        """An int uniform on [0, n)."""


def _splitmix64(x: int) -> tuple[int, int]:
    """One SplitMix64 step: (next state, output)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return x, z ^ (z >> 31)


# A fixed odd PCG64 increment: seeds differ by their 128-bit starting state (SplitMix64-expanded).
_PCG_INC = 0xDA3E39CB94B95BDB5851F42D4C957F2D
# numpy's PCG64 (pcg64.h): the 128-bit LCG multiplier, and the scale of a 53-bit double.
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645
_M128 = (1 << 128) - 1
_DOUBLE = 1.0 / 9007199254740992.0


def _pcg_start(seed: int) -> int:
    """The 128-bit PCG64 starting state derived from ``seed`` (any int; folded to 64 bits first)."""
    x = (seed ^ (seed >> 64) ^ (seed >> 128)) & _M64 if seed >= 0 else (~seed * 0x9E3779B1) & _M64
    x, hi = _splitmix64(x)
    _, lo = _splitmix64(x)
    return (hi << 64) | lo


def _pcg_state(seed: int) -> dict[str, Any]:
    """The PCG64 state dict derived from ``seed`` (any int; folded to 64 bits first)."""
    return _state_dict(_pcg_start(seed))


def _state_dict(state: int, half: int = -1) -> dict[str, Any]:
    """numpy's PCG64 state dict at 128-bit ``state``, with ``half`` in the 32-bit buffer (-1: empty)."""
    return {
        "bit_generator": "PCG64",
        "state": {"state": state, "inc": _PCG_INC},
        "has_uint32": int(half >= 0),
        "uinteger": max(half, 0),
    }


class _Shared(threading.local):
    """One PCG64 generator per thread and a weak reference to the Rng currently holding it."""

    def __init__(self) -> None:
        self.gen: Any = None
        self.owner: Callable[[], NumpyRng | None] = _nobody


def _nobody() -> None:
    return None


_SHARED = _Shared()


class _Detached(Protocol):
    """The detached PCG64 state :class:`NumpyRng` and :class:`PureRng` both keep (their ``_next32``)."""

    _seed: int
    _state: int | None
    _half: int

    def _next32(self) -> int: ...


def _detached_next32(self: _Detached) -> int:
    """PCG64's next_uint32 on the detached state: the buffered upper half, else a new 64-bit output."""
    half = self._half
    if half >= 0:
        self._half = -1
        return half
    state = (self._state * _PCG_MULT + _PCG_INC) & _M128  # type: ignore[operator]
    self._state = state
    high = state >> 64
    x = (high ^ state) & _M64
    rot = high >> 58
    out = ((x >> rot) | (x << (64 - rot))) & _M64
    self._half = out >> 32
    return out & 0xFFFFFFFF


def _detached_integers(self: _Detached, n: int) -> int:
    """numpy's ``Generator.integers(n)`` for ``1 <= n < 2 ** 32`` on the detached state (random_bounded_uint64_fill):
    Lemire's multiply-and-reject on 32-bit draws, which come in pairs from one 64-bit output."""
    if n == 1:
        return 0  # numpy draws nothing for a range of one
    if self._state is None:
        self._state = _pcg_start(self._seed)
    m = self._next32() * n
    leftover = m & 0xFFFFFFFF
    if leftover < n:
        threshold = (0xFFFFFFFF - (n - 1)) % n
        while leftover < threshold:
            m = self._next32() * n
            leftover = m & 0xFFFFFFFF
    return m >> 32


class NumpyRng:
    """Numpy backend; see the module docstring for the detached start and how the shared generator is handed
    over."""

    __slots__ = ("_seed", "_saved", "_state", "_half", "__weakref__")

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._saved: dict[str, Any] | None = None
        # detached: the PCG64 state stepped in Python (None: not drawn from yet); -1: handed to numpy for good
        self._state: int | None = None
        self._half = -1  # detached: PCG64's buffered upper 32 bits (has_uint32/uinteger), -1: none

    def _take(self) -> Any:
        shared = _SHARED
        gen = shared.gen
        if gen is None:
            assert np is not None
            gen = shared.gen = np.random.Generator(np.random.PCG64(0))
        owner = shared.owner()
        if owner is not self:
            if owner is not None:  # still alive: keep its place in its own sequence
                owner._saved = gen.bit_generator.state
            state = self._state
            if self._saved is not None:
                gen.bit_generator.state = self._saved
            elif state is None or state == -1:
                gen.bit_generator.state = _pcg_state(self._seed)
            else:  # detached until now: numpy goes on from where the Python steps got
                gen.bit_generator.state = _state_dict(state, self._half)
            self._state = -1
            self._saved = None
            shared.owner = weakref.ref(self)
        return gen

    @property
    def generator(self) -> Any:
        """The underlying ``numpy.random.Generator`` (valid until another Rng draws)."""
        return self._take()

    def random(self) -> float:
        state = self._state
        if state == -1:
            return float(self._take().random())
        # numpy's PCG64 next_double, in Python: step the LCG, XSL-RR output, top 53 bits
        state = ((_pcg_start(self._seed) if state is None else state) * _PCG_MULT + _PCG_INC) & _M128
        self._state = state
        high = state >> 64
        x = (high ^ state) & _M64
        rot = high >> 58
        return ((((x >> rot) | (x << (64 - rot))) & _M64) >> 11) * _DOUBLE

    def betas(self, alpha: Any, beta: Any, rows: int | None = None) -> Any:
        """``Generator.beta`` (measured: cheaper than a hand-made gamma ratio at a few dozen arms). ``rows`` asks
        numpy for the ``(rows, k)`` shape itself: the same draws in the same order as broadcasting the
        parameters to it, without checking the parameters ``rows`` times (about 20 us of a 256 x 6 table)."""
        if rows is None:
            return self._take().beta(alpha, beta)
        return self._take().beta(alpha, beta, size=(rows, len(alpha)))

    def integers(self, n: int) -> int:
        state = self._state
        if state == -1 or type(n) is not int or not 1 <= n <= 0xFFFFFFFF:
            return int(self._take().integers(n))
        return _detached_integers(self, n)

    _next32 = _detached_next32


class PureRng:
    """Standard-library backend: PCG64 stepped in Python for ``random()`` and ``integers(n)`` (the numbers numpy
    gives for the same seed, :class:`NumpyRng`'s detached path), ``random.Random`` for Beta draws."""

    __slots__ = ("_seed", "_state", "_half", "_r")

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._state: int | None = None
        self._half = -1
        self._r: _random.Random | None = None

    def random(self) -> float:
        state = ((_pcg_start(self._seed) if self._state is None else self._state) * _PCG_MULT + _PCG_INC) & _M128
        self._state = state
        high = state >> 64
        x = (high ^ state) & _M64
        rot = high >> 58
        return ((((x >> rot) | (x << (64 - rot))) & _M64) >> 11) * _DOUBLE

    def betas(self, alpha: Sequence[float], beta: Sequence[float], rows: int | None = None) -> Any:
        if self._r is None:
            self._r = _random.Random(self._seed)
        bv = self._r.betavariate
        if rows is not None:
            return [[bv(a, b) for a, b in zip(alpha, beta, strict=True)] for _ in range(rows)]
        return [bv(a, b) for a, b in zip(alpha, beta, strict=True)]

    def integers(self, n: int) -> int:
        if type(n) is not int or not 1 <= n <= 0xFFFFFFFF:
            if self._r is None:
                self._r = _random.Random(self._seed)
            return self._r.randrange(n)
        return _detached_integers(self, n)

    _next32 = _detached_next32


def make_rng(seed: int) -> Rng:
    """A deterministic random source for one decision: same seed, same sequence.

    >>> make_rng(42).random() == make_rng(42).random()
    True
    """
    if np is not None:
        return NumpyRng(seed)
    return PureRng(seed)
