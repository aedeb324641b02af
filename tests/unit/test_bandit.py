"""Tier-2 rotation: Thompson sampling, weighted, sequential, random, holdout (fixed seeds, both backends)."""

from __future__ import annotations

import math
import warnings

import pytest
from dco.bandit import (
    Choice,
    in_holdout,
    sequence_position,
    sequential,
    thompson,
    thompson_propensities,
    uniform,
    weighted,
)
from dco.rng import make_rng


def _chi_square(counts: list[int], expected: float) -> float:
    return sum((c - expected) ** 2 / expected for c in counts)


# chi-square critical values at p = 0.001
_CHI2_001 = {2: 13.82, 3: 16.27, 9: 27.88}


def test_rng_same_seed_same_sequence_regardless_of_history() -> None:
    # GIVEN two generators with the same seed, one created after unrelated draws and interleaved with another
    first = make_rng(1234)
    a = [first.random() for _ in range(3)]
    other = make_rng(99)
    other.random()
    second = make_rng(1234)
    b = [second.random()]
    other.random()
    b += [second.random(), second.random()]
    # THEN the sequences match, and a different seed differs
    assert a == b
    assert make_rng(1235).random() != a[0]
    r = make_rng(7)
    assert all(0 <= r.integers(5) < 5 for _ in range(50))


def test_rng_interleaved_generators_keep_their_own_streams() -> None:
    x, y = make_rng(1), make_rng(2)
    seq_x = [x.random(), None, x.random()]
    seq_x[1] = y.random()
    x2 = make_rng(1)
    assert [x2.random(), x2.random()] == [seq_x[0], seq_x[2]]


def test_thompson_converges_to_best_arm() -> None:
    ctr = [0.02, 0.03, 0.05]
    sim = make_rng(2024)  # the environment's randomness
    succ = [0, 0, 0]
    trials = [0, 0, 0]
    late = [0, 0, 0]
    for t in range(5000):
        c = thompson(succ, trials, make_rng(t))
        trials[c.index] += 1
        if sim.random() < ctr[c.index]:
            succ[c.index] += 1
        if t >= 4000:
            late[c.index] += 1
    assert late[2] / 1000 > 0.80


def test_unknown_arms_get_the_prior_uniform_pick() -> None:
    counts = [0, 0, 0]
    for seed in range(3000):
        counts[thompson([0, 0, 0], [0, 0, 0], make_rng(seed)).index] += 1
    assert _chi_square(counts, 1000.0) < _CHI2_001[2]


def test_cold_start_propensity_is_exact() -> None:
    c = thompson([0] * 4, [0] * 4, make_rng(3))
    assert c.propensity == pytest.approx(0.25)
    assert not c.skipped_sampling


def test_same_seed_same_choice() -> None:
    succ, trials = [3, 5, 4, 6], [100, 110, 90, 120]
    a = thompson(succ, trials, make_rng(42))
    b = thompson(succ, trials, make_rng(42))
    assert a == b
    assert a.method == "thompson"
    assert len(a.sampled) <= 5
    assert a.sampled[0][0] == a.index


def test_clear_winner_skips_sampling() -> None:
    c = thompson([500, 10, 12], [10_000, 10_000, 10_000], make_rng(1))
    assert c == Choice(0, 1.0, "thompson", ((0, pytest.approx(501 / 10_002)),), True)  # type: ignore[arg-type]


def test_single_arm_skips_sampling() -> None:
    assert thompson([0], [0], make_rng(1)) == Choice(0, 1.0, "thompson", (), True)


def test_close_arms_are_sampled() -> None:
    c = thompson([50, 52], [1000, 1000], make_rng(1))
    assert not c.skipped_sampling
    assert 0.0 < c.propensity < 1.0


def test_thompson_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        thompson([], [], make_rng(1))
    with pytest.raises(ValueError):
        thompson([1, 2], [3], make_rng(1))
    with pytest.raises(ValueError):
        thompson([1], [3], make_rng(1), prior=(0.0, 1.0))


def test_many_arms_prunes_losers_and_keeps_the_contenders() -> None:
    # GIVEN 600 arms, all clearly bad except arms 7 and 8 (close to each other)
    succ = [10] * 600
    trials = [10_000] * 600
    succ[7], succ[8] = 500, 505
    picks = [thompson(succ, trials, make_rng(s)).index for s in range(200)]
    assert set(picks) <= {7, 8}
    assert 40 < picks.count(7) < 160


@pytest.mark.parametrize(
    ("succ", "trials"),
    [
        ([30, 35, 28], [1000, 1000, 900]),
        ([3, 5, 1, 4], [60, 80, 30, 70]),
        ([12, 15], [400, 420]),
        ([20, 22, 25, 18, 30, 21, 24, 19, 27, 23, 26], [800] * 11),  # > 8 survivors: vectorized quadrature
    ],
)
def test_propensity_estimate_close_to_monte_carlo(succ: list[int], trials: list[int]) -> None:
    mc = thompson_propensities(succ, trials, make_rng(5), draws=20_000)
    assert math.fsum(mc) == pytest.approx(1.0)
    for seed in range(20):
        c = thompson(succ, trials, make_rng(seed))
        assert c.propensity == pytest.approx(mc[c.index], abs=0.05)


def test_weighted_shares() -> None:
    n = 10_000
    counts = [0, 0]
    for seed in range(n):
        c = weighted([70, 30], make_rng(seed))
        counts[c.index] += 1
        assert c.propensity == pytest.approx([0.7, 0.3][c.index])
    assert abs(counts[0] / n - 0.70) <= 0.02


def test_weighted_zero_weights_never_chosen_and_validation() -> None:
    assert all(weighted([0, 50, 0, 50], make_rng(s)).index in (1, 3) for s in range(200))
    assert weighted([0, 5], make_rng(1)) == Choice(1, 1.0, "weighted", (), True)
    for bad in ([], [0, 0], [-1, 2], [float("nan"), 1]):
        with pytest.raises(ValueError):
            weighted(bad, make_rng(1))


def test_sequential_order_exact() -> None:
    assert [sequential(4, p).index for p in range(9)] == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert sequential(4, 6) == Choice(2, 1.0, "sequential", (), True)
    with pytest.raises(ValueError):
        sequential(0, 1)


def test_sequence_position_walks_in_order_and_spreads_viewers() -> None:
    # GIVEN one viewer: each period moves it to the next creative
    start = sequence_position("viewer-1", 0, 3600)
    assert [sequential(3, sequence_position("viewer-1", h * 3600 + 5, 3600)).index for h in range(4)] == [
        (start + h) % 3 for h in range(4)
    ]
    assert sequence_position("viewer-1", 3599, 3600) == start
    # AND the fleet splits evenly at any instant
    counts = [0, 0, 0]
    for i in range(3000):
        counts[sequential(3, sequence_position(f"v{i}", 1_700_000_000, 3600)).index] += 1
    assert _chi_square(counts, 1000.0) < _CHI2_001[2]
    with pytest.raises(ValueError):
        sequence_position("v", 0, 0)


def test_uniform_chi_square() -> None:
    counts = [0] * 10
    for seed in range(10_000):
        c = uniform(10, make_rng(seed))
        counts[c.index] += 1
    assert c.propensity == pytest.approx(0.1)
    assert c.method == "random"
    assert _chi_square(counts, 1000.0) < _CHI2_001[9]
    assert uniform(1, make_rng(1)) == Choice(0, 1.0, "random", (), True)
    with pytest.raises(ValueError):
        uniform(0, make_rng(1))


def test_holdout_share_and_stability() -> None:
    keys = [f"user-{i}" for i in range(10_000)]
    held = [in_holdout(k, 0.1, "campaign-1") for k in keys]
    assert abs(sum(held) / 10_000 - 0.1) < 0.01
    assert held == [in_holdout(k, 0.1, "campaign-1") for k in keys]
    # a different salt holds out a different slice; share bounds are exact
    assert held != [in_holdout(k, 0.1, "campaign-2") for k in keys]
    assert not any(in_holdout(k, 0.0, "s") for k in keys[:100])
    assert all(in_holdout(k, 1.0, "s") for k in keys[:100])
    with pytest.raises(ValueError):
        in_holdout("k", 1.5, "s")


def test_small_prior_and_impossible_counts() -> None:
    # GIVEN a weak prior (shapes below 1): choices stay valid and deterministic
    a = thompson([0, 0, 1], [0, 0, 2], make_rng(8), prior=(0.5, 0.5))
    assert a == thompson([0, 0, 1], [0, 0, 2], make_rng(8), prior=(0.5, 0.5))
    assert 0 <= a.index < 3 and 0.0 < a.propensity <= 1.0
    # AND more successes than trials, or negative successes, are rejected rather than sampled
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy notes the NaN on the way
        for succ, trials in (([5, 0], [2, 0]), ([-1, 0], [2, 0]), ([3, 1], [2, 9])):
            with pytest.raises(ValueError, match="successes"):
                thompson(succ, trials, make_rng(1))


# ------------------------------------------------------------------------------ unseen arms sampled as a group


def test_beta_cdf_closed_forms() -> None:
    from dco.bandit import beta_cdf

    for x in (0.05, 0.3, 0.5, 0.77, 0.99):
        assert beta_cdf(x, 2.0, 3.0) == pytest.approx(6 * x**2 * (1 - x) ** 2 + 4 * x**3 * (1 - x) + x**4, abs=1e-12)
        assert beta_cdf(x, 1.0, 1.0) == pytest.approx(x, abs=1e-12)
        assert beta_cdf(x, 0.5, 0.5) == pytest.approx(2 / math.pi * math.asin(math.sqrt(x)), abs=1e-10)
    assert beta_cdf(0.0, 2, 3) == 0.0 and beta_cdf(1.0, 2, 3) == 1.0


def test_prior_table_quantile_inverts_cdf() -> None:
    from dco.bandit import _prior, beta_cdf

    prior = _prior(2.0, 40.0)
    for p in (1e-6, 0.01, 0.5, 0.9, 0.999, 0.999999):
        x = prior.quantile(p)
        assert beta_cdf(x, 2.0, 40.0) == pytest.approx(p, rel=2e-3, abs=1e-7)


@pytest.mark.parametrize(
    ("succ", "trials", "prior"),
    [
        ([0, 0, 0, 3, 5], [0, 0, 0, 10, 12], (1.0, 1.0)),  # wide seen posteriors compete with the group
        ([0] * 12 + [40, 45], [0] * 12 + [100, 100], (1.0, 1.0)),  # good seen arms, many unseen
        ([0, 0, 0, 0, 5, 8, 1], [0, 0, 0, 0, 50, 60, 40], (2.0, 20.0)),  # informative prior: table path
        ([0, 0] + [20 + i for i in range(12)], [0, 0] + [200] * 12, (1.0, 9.0)),  # > 8 near seen arms
    ],
)
def test_group_choice_frequencies_and_propensities_match_monte_carlo(
    succ: list[int], trials: list[int], prior: tuple[float, float]
) -> None:
    # GIVEN arms of which several are unseen (sampled as one group: one draw for the group maximum)
    mc = thompson_propensities(succ, trials, make_rng(11), draws=40_000, prior=prior)
    runs = 3000
    counts = [0] * len(succ)
    for seed in range(runs):
        c = thompson(succ, trials, make_rng(seed), prior=prior)
        counts[c.index] += 1
        # THEN the propensity estimate is close to the Monte Carlo probability of the chosen arm
        assert c.propensity == pytest.approx(mc[c.index], abs=0.05)
    # AND choices follow the same distribution as one Beta draw per arm (within 4 binomial sd + MC error)
    for i, p in enumerate(mc):
        sd = math.sqrt(max(p * (1 - p), 1e-4) / runs)
        assert abs(counts[i] / runs - p) < 4 * sd + 0.01, (i, counts[i] / runs, p)


def test_group_rejects_successes_on_unseen_arms() -> None:
    with warnings.catch_warnings(), pytest.raises(ValueError, match="successes"):
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy notes the NaN bound on the way
        thompson([0, 2, 1], [0, 0, 5], make_rng(1))


def test_top_limits_the_trace() -> None:
    succ, trials = [20 + i for i in range(12)], [200] * 12
    full = thompson(succ, trials, make_rng(4))
    one = thompson(succ, trials, make_rng(4), top=1)
    assert one.index == full.index and one.propensity == full.propensity
    assert len(one.sampled) == 1 and one.sampled[0] == full.sampled[0] and len(full.sampled) == 5
