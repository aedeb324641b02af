"""The decide and bandit benchmark programs run end to end on small inputs and report what they claim.

Figures are not asserted (timing belongs in the benchmarks, not in tests); the shape of the report and the
invariants behind the figures are.
"""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")


def test_bench_decide_reports_cached_and_uncached_figures() -> None:
    from dco_local.bench_decide import run_local

    result = run_local(products=3000, decisions=300)
    assert result["products"] == 3000 and result["decisions"] == 300
    assert 3 <= result["arms"] <= 700  # 3 dynamic creatives x top 200 at most (ties kept)
    for key in ("p50_us", "p99_us", "uncached_p50_us", "uncached_p99_us"):
        assert result[key] > 0
    assert result["p99_us"] >= result["p50_us"] and result["uncached_p99_us"] >= result["uncached_p50_us"]
    # 64 requests over at most 48 contexts, 200 warm-up + 300 timed decisions: nearly every pick is a hit
    assert result["pick_cache_hit_rate"] > 0.9
    assert result["accelerators"]["numpy"] is True


def test_bench_bandit_compares_the_same_arms() -> None:
    pytest.importorskip("mabwiser")
    from dco_local.bench_bandit import make_stats, run

    successes, trials = make_stats(50, seed=2, unseen=0.2)
    assert (successes <= trials).all() and (trials == 0).sum() >= 5
    result = run(arms=50, reps=200, mab_reps=20, seed=2, unseen=0.2)
    assert result["arms"] == 50
    assert result["ratio"] == round(result["mabwiser_p50_us"] / result["dco_p50_us"], 1)
    assert result["dco_cached_p50_us"] > 0 and result["make_rng_p50_us"] > 0


def test_bench_bandit_cli_passes_unseen_and_rejects_a_share_outside_0_1(capsys) -> None:
    pytest.importorskip("mabwiser")
    import json

    from dco_local.cli import main

    # GIVEN `dco bench bandit` with every arm seen
    assert main(["bench", "bandit", "--arms", "30", "--unseen", "0", "--repeat", "50", "--json"]) == 0
    # THEN the report says which regime it measured
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["unseen"] == 0.0 and result["arms"] == 30
    # AND a share outside [0, 1] is a usage error naming the option
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "bandit", "--unseen", "1.5"])
    assert exit_info.value.code == 2
    assert "--unseen" in capsys.readouterr().err


def test_bench_fold_counts_writes_per_batch_size() -> None:
    from dco.fold import aggregate
    from dco_local.bench_fold import parse_all, synthetic_images, writes_by_batch_size

    # GIVEN 4,000 retail-shaped events
    records = parse_all(synthetic_images(4000))
    # WHEN they are cut into batches of 500, 1000 and 4000 (and 5000, more than there are)
    by_size = writes_by_batch_size(records, (500, 1000, 4000, 5000))
    # THEN each figure is the distinct counters per batch per 1,000 events, and bigger batches share more
    assert set(by_size) == {"500", "1000", "4000"}
    assert by_size["4000"] == round(len(aggregate(records).counters) / 4)
    assert by_size["1000"] == round(sum(len(aggregate(records[i:i + 1000]).counters) for i in range(0, 4000, 1000)) / 4)
    assert by_size["500"] > by_size["1000"] > by_size["4000"]
