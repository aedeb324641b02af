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
* numpy absent (``--pure-python``, Pyodide without wheels): ``random.Random(seed)``.

The two backends give different numbers for the same seed; that is expected and documented in docs/rotation.md.
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

    def betas(self, alpha: Any, beta: Any) -> Any:
        """One Beta(alpha[i], beta[i]) sample per element (ndarray with numpy, list without)."""

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


def _pcg_state(seed: int) -> dict[str, Any]:
    """The PCG64 state dict derived from ``seed`` (any int; folded to 64 bits first)."""
    x = (seed ^ (seed >> 64) ^ (seed >> 128)) & _M64 if seed >= 0 else (~seed * 0x9E3779B1) & _M64
    x, hi = _splitmix64(x)
    _, lo = _splitmix64(x)
    return {
        "bit_generator": "PCG64",
        "state": {"state": (hi << 64) | lo, "inc": _PCG_INC},
        "has_uint32": 0,
        "uinteger": 0,
    }


class _Shared(threading.local):
    """One PCG64 generator per thread and a weak reference to the Rng currently holding it."""

    def __init__(self) -> None:
        self.gen: Any = None
        self.owner: Callable[[], NumpyRng | None] = _nobody


def _nobody() -> None:
    return None


_SHARED = _Shared()


class NumpyRng:
    """Numpy backend; see the module docstring for how the shared generator is handed over."""

    __slots__ = ("_seed", "_saved", "__weakref__")

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._saved: dict[str, Any] | None = None
        self._take()

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
            gen.bit_generator.state = self._saved if self._saved is not None else _pcg_state(self._seed)
            self._saved = None
            shared.owner = weakref.ref(self)
        return gen

    @property
    def generator(self) -> Any:
        """The underlying ``numpy.random.Generator`` (valid until another Rng draws)."""
        return self._take()

    def random(self) -> float:
        return float(self._take().random())

    def betas(self, alpha: Any, beta: Any) -> Any:
        """``Generator.beta`` (measured: cheaper than a hand-made gamma ratio at a few dozen arms)."""
        return self._take().beta(alpha, beta)

    def integers(self, n: int) -> int:
        return int(self._take().integers(n))


class PureRng:
    """Standard-library backend (``random.Random``)."""

    __slots__ = ("_r",)

    def __init__(self, seed: int) -> None:
        self._r = _random.Random(seed)

    def random(self) -> float:
        return self._r.random()

    def betas(self, alpha: Sequence[float], beta: Sequence[float]) -> list[float]:
        bv = self._r.betavariate
        return [bv(a, b) for a, b in zip(alpha, beta, strict=True)]

    def integers(self, n: int) -> int:
        return self._r.randrange(n)


def make_rng(seed: int) -> Rng:
    """A deterministic random source for one decision: same seed, same sequence.

    >>> make_rng(42).random() == make_rng(42).random()
    True
    """
    if np is not None:
        return NumpyRng(seed)
    return PureRng(seed)
