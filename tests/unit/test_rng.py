"""dco.rng's numpy backend: the detached Python steps give exactly what numpy's PCG64 Generator gives."""

from __future__ import annotations

import random

import pytest

np = pytest.importorskip("numpy", reason="the numpy backend; the pure-Python one is random.Random")
from dco.rng import _pcg_state, make_rng  # noqa: E402

# around the edges of numpy's paths: a range of one draws nothing, 2**32 - 1 and up leave the 32-bit path,
# 3 * 2**30 + 7 rejects often (Lemire's threshold is large)
SIZES = (1, 2, 3, 5, 6, 12, 40, 1000, 2**31 + 5, 3 * 2**30 + 7, 2**32 - 1, 2**32, 2**32 + 1, 2**40)


def _numpy(seed: int):
    """The reference: a PCG64 Generator set to the state make_rng derives from ``seed``."""
    gen = np.random.Generator(np.random.PCG64(0))
    gen.bit_generator.state = _pcg_state(seed)
    return gen


def test_draws_match_numpy_pcg64_bit_for_bit() -> None:
    # GIVEN random mixes of uniforms, bounded integers, Beta draws and the generator itself, with another
    # generator drawing in between (the shared generator changes hands)
    rnd = random.Random(7)
    for _ in range(3000):
        seed = rnd.getrandbits(rnd.choice([8, 64, 70, 130])) * rnd.choice([1, -1])
        ref, mine, other = _numpy(seed), make_rng(seed), make_rng(seed + 1)
        for _ in range(rnd.randint(1, 10)):
            if rnd.random() < 0.2:  # the other draws through the shared numpy generator: it changes hands
                other.random()
                other.integers(7)
                other.betas(np.asarray([2.0, 3.0]), np.asarray([5.0, 1.5]))
                other.integers(2**40)
            op = rnd.choice("riiibg")
            if op == "r":
                pair = float(ref.random()), mine.random()
            elif op == "i":
                n = rnd.choice(SIZES)
                pair = int(ref.integers(n)), mine.integers(n)
            elif op == "g":
                pair = int(ref.integers(5)), int(mine.generator.integers(5))
            else:
                a, b = np.array([1.5, 2.0, 30.0]), np.array([2.0, 5.0, 0.5])
                pair = ref.beta(a, b).tolist(), mine.betas(a, b).tolist()
            # THEN every draw is the one numpy makes
            assert pair[0] == pair[1]


def test_a_long_detached_stream_matches_numpy() -> None:
    ref, mine = _numpy(2**64 + 3), make_rng(2**64 + 3)
    n = 3 * 2**30 + 7
    assert [int(ref.integers(n)) for _ in range(20000)] == [mine.integers(n) for _ in range(20000)]
    assert [float(ref.random()) for _ in range(1000)] == [mine.random() for _ in range(1000)]


def test_rows_of_betas_are_the_broadcast_draws() -> None:
    a, b = np.array([3.5, 10.2, 7.7, 0.6]), np.array([100.0, 300.5, 0.8, 0.4])
    broadcast = make_rng(99).betas(np.broadcast_to(a, (256, 4)), np.broadcast_to(b, (256, 4)))
    assert np.array_equal(make_rng(99).betas(a, b, rows=256), broadcast)
