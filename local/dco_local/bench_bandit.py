"""Benchmark: dco.bandit.thompson() against MABWiser's Thompson sampling, same arms, same statistics.

A program, not a test: ``python -m dco_local.bench_bandit --arms 600 [--json]``.

Statistics are random but realistic: per-arm impressions uniform in [0, 20000] (a tenth of the arms unseen;
``--unseen 0`` for none), true CTR ~ Beta(2, 60) (mean ~3 %), clicks ~ Binomial. dco is timed per call of
``thompson(successes, trials, rng, top=1)`` as the engine calls it without an explain trace (propensity
included; a fresh ``make_rng(seed)`` per decision is built outside the timed region and reported on its own),
and again on the warm-decide path where counts and pruning bounds are gathered from a StatsTable that
precomputed the bounds (gathers timed). MABWiser
``MAB(arms, LearningPolicy.ThompsonSampling())`` is fitted once on decisions/rewards carrying the same counts
and only ``predict()`` is timed (one context-free prediction per call). Reports p50/p99 in microseconds and the
ratio of the p50s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
from dco.bandit import thompson
from dco.rng import make_rng
from dco.stats import StatsTable


def make_stats(arms: int, seed: int, unseen: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Random (successes, trials) for ``arms`` arms, a share ``unseen`` of them never shown."""
    g = np.random.default_rng(seed)
    trials = g.integers(0, 20_001, arms)
    trials[g.random(arms) < unseen] = 0
    ctr = g.beta(2.0, 60.0, arms)
    successes = g.binomial(trials, ctr)
    return successes.astype(float), trials.astype(float)


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p50 = statistics.median(ordered) / 1000.0
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] / 1000.0
    return p50, p99


def time_dco(successes: np.ndarray, trials: np.ndarray, reps: int) -> tuple[float, float]:
    clock = time.perf_counter_ns
    out = []
    for seed in range(200):  # warm-up
        thompson(successes, trials, make_rng(seed), top=1)
    for seed in range(reps):
        rng = make_rng(seed)
        t0 = clock()
        thompson(successes, trials, rng, top=1)
        out.append(clock() - t0)
    return _percentiles(out)


def time_make_rng(reps: int) -> tuple[float, float]:
    clock = time.perf_counter_ns
    out = []
    for seed in range(reps):
        t0 = clock()
        make_rng(seed)
        out.append(clock() - t0)
    return _percentiles(out)


def time_dco_cached(successes: np.ndarray, trials: np.ndarray, reps: int) -> tuple[float, float]:
    """Warm-decide path: bounds computed once per stats object, gathered per decision (gathers timed)."""
    arms = {f"a{i}": [int(n), int(s), 0, 0.0] for i, (s, n) in enumerate(zip(successes, trials, strict=True))}
    table = StatsTable.from_object({"version": 1, "campaign": "bench", "arms": arms})
    idx = table.indices(list(arms))
    clock = time.perf_counter_ns
    out = []
    for seed in range(200):
        thompson(*table.counts_at(idx), make_rng(seed), bounds=table.bounds_at(idx), top=1)
    for seed in range(reps):
        rng = make_rng(seed)
        t0 = clock()
        thompson(*table.counts_at(idx), rng, bounds=table.bounds_at(idx), top=1)
        out.append(clock() - t0)
    return _percentiles(out)


def time_mabwiser(successes: np.ndarray, trials: np.ndarray, reps: int) -> tuple[float, float]:
    from mabwiser.mab import MAB, LearningPolicy

    arms = list(range(len(trials)))
    decisions: list[int] = []
    rewards: list[int] = []
    for arm, (s, n) in enumerate(zip(successes.astype(int), trials.astype(int), strict=True)):
        decisions += [arm] * int(n)
        rewards += [1] * int(s) + [0] * int(n - s)
    mab = MAB(arms, LearningPolicy.ThompsonSampling(), seed=7)
    mab.fit(decisions, rewards)
    clock = time.perf_counter_ns
    out = []
    for _ in range(20):
        mab.predict()
    for _ in range(reps):
        t0 = clock()
        mab.predict()
        out.append(clock() - t0)
    return _percentiles(out)


def run(arms: int, reps: int, mab_reps: int, seed: int, unseen: float) -> dict[str, Any]:
    successes, trials = make_stats(arms, seed, unseen)
    dco_p50, dco_p99 = time_dco(successes, trials, reps)
    cached_p50, cached_p99 = time_dco_cached(successes, trials, reps)
    rng_p50, _ = time_make_rng(reps)
    mab_p50, mab_p99 = time_mabwiser(successes, trials, mab_reps)
    return {
        "arms": arms,
        "unseen": unseen,
        "dco_p50_us": round(dco_p50, 2),
        "dco_p99_us": round(dco_p99, 2),
        "dco_cached_p50_us": round(cached_p50, 2),
        "dco_cached_p99_us": round(cached_p99, 2),
        "make_rng_p50_us": round(rng_p50, 2),
        "mabwiser_p50_us": round(mab_p50, 2),
        "mabwiser_p99_us": round(mab_p99, 2),
        "ratio": round(mab_p50 / dco_p50, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dco_local.bench_bandit", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--arms", type=int, default=600)
    parser.add_argument("--reps", type=int, default=20_000, help="timed thompson() calls")
    parser.add_argument("--mab-reps", type=int, default=500, help="timed MABWiser predict() calls")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--unseen", type=float, default=0.1, help="share of arms with no impressions yet")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args.arms, args.reps, args.mab_reps, args.seed, args.unseen)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"Thompson sampling over {result['arms']} arms (microseconds per decision)")
    print(f"{'':<22}{'p50':>10}{'p99':>10}")
    print(f"{'dco.bandit.thompson':<22}{result['dco_p50_us']:>10.1f}{result['dco_p99_us']:>10.1f}")
    print(
        f"{'  with cached bounds':<22}{result['dco_cached_p50_us']:>10.1f}{result['dco_cached_p99_us']:>10.1f}"
    )
    print(f"{'MABWiser predict':<22}{result['mabwiser_p50_us']:>10.1f}{result['mabwiser_p99_us']:>10.1f}")
    print(f"make_rng(seed) per decision, not in the figures above: p50 {result['make_rng_p50_us']:.1f} us")
    print(f"ratio (MABWiser p50 / dco p50): {result['ratio']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
