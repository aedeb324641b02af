"""Counter keys and the component model: back-off math, time discounting, draw tables, the combination baseline."""

from __future__ import annotations

import math

import pytest
from dco import learning
from dco.learning import LearningParams, choose_variant, counter_keys, slot_counts, stats_object
from dco.rng import make_rng
from dco.stats import StatsTable


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))


needs_numpy = pytest.mark.skipif(learning.np is None, reason="the combination windows and cell fits need numpy")


def _table(components: dict[str, list[float]], arms: dict[str, list[float]] | None = None, updated_at: int = 0):
    return StatsTable.from_object(
        {"version": 1, "campaign": "c", "updated_at": updated_at, "arms": arms or {}, "components": components}
    )


def test_counter_keys_without_time_name_the_event_context_and_the_device_cell():
    keys = counter_keys(arm="cr|h1.i2", creative="cr", variants=["headline=h1", "image=i2"],
                        context={"region": "pnw", "device": "mobile"})
    assert keys == [
        "arm:cr|h1.i2", "arm:cr", "split:optimized", "arm:cr|h1.i2@region=pnw", "arm:cr|h1.i2@region=pnw@device=mobile",
        "comp:cr|headline=h1", "comp:cr|headline=h1@device=mobile", "comp:cr|headline=h1@region=pnw",
        "comp:cr|image=i2", "comp:cr|image=i2@device=mobile", "comp:cr|image=i2@region=pnw",
    ]


def test_counter_keys_add_time_buckets_and_keep_holdout_out_of_components():
    keys = counter_keys(arm="cr|h1", creative="cr", variants=["headline=h1"], context={"region": "pnw"},
                        now_s=3 * 86400 + 5, bucket_s=86400)
    assert "comp:cr|headline=h1#e3" in keys and "comp:cr|headline=h1@region=pnw#e3" in keys
    # the per-region combination counter gets one time-bucketed copy (the short-memory fit after a change)
    assert "arm:cr|h1@region=pnw#e3" in keys
    assert len(keys) == len(counter_keys(arm="cr|h1", creative="cr", variants=["headline=h1"],
                                         context={"region": "pnw"})) + 3
    held = counter_keys(arm="cr|h1", creative="cr", variants=["headline=h1"], context={"region": "pnw"},
                        holdout=True, now_s=0)
    assert held == ["arm:cr|h1", "arm:cr", "split:holdout"]


def test_stats_object_sections():
    obj = stats_object({"arm:a": [3, 1, 0, 0.0], "comp:c|s=v": [2, 1, 0, 0.0], "split:holdout": [1, 0, 0, 0.0]},
                       campaign="c", updated_at=7)
    assert obj == {"version": 1, "campaign": "c", "updated_at": 7, "arms": {"a": [3, 1, 0, 0.0]},
                   "components": {"c|s=v": [2, 1, 0, 0.0]}, "splits": {"holdout": [1, 0, 0, 0.0]}}


def test_slot_counts_back_off_one_context_dimension_exact():
    # GIVEN variant a: 1000 imps / 30 clicks overall, 100 / 10 in pnw; variant b: 1000 / 10 overall, none in pnw
    stats = _table({
        "cr|image=a": [1000, 30, 0, 0.0], "cr|image=a@region=pnw": [100, 10, 0, 0.0],
        "cr|image=b": [1000, 10, 0, 0.0],
    })
    params = LearningParams(strength=50.0, dims=("region",))
    s, n = slot_counts(stats, "cr", "image", ["a", "b"], {"geo.region": "pnw"}, "click", params)
    m_slot = (40 + 1) / (2000 + 2)
    m_a = (30 + 50 * m_slot) / (1000 + 50)
    m_b = (10 + 50 * m_slot) / (1000 + 50)
    # the prior centre in pnw is the variant's rate moved by the whole slot's pnw shift (log-odds)
    shift = _logit((10 + 1) / (100 + 2)) - _logit(m_slot)
    c_a, c_b = _expit(_logit(m_a) + shift), _expit(_logit(m_b) + shift)
    assert s == pytest.approx([10 + 50 * c_a, 0 + 50 * c_b], rel=1e-12)
    assert n == pytest.approx([150.0, 50.0], rel=1e-12)
    # no context value in the request: the variant's own history over the slot prior
    s0, n0 = slot_counts(stats, "cr", "image", ["a", "b"], {}, "click", params)
    assert s0 == pytest.approx([30 + 50 * m_slot, 10 + 50 * m_slot]) and n0 == [1050.0, 1050.0]


def test_slot_counts_two_dimensions_combine_in_log_odds():
    stats = _table({
        "cr|cta=a": [1000, 20, 0, 0.0],
        "cr|cta=a@region=pnw": [200, 8, 0, 0.0],
        "cr|cta=a@device=mobile": [400, 4, 0, 0.0],
    })
    params = LearningParams(strength=50.0, dims=("region", "device"))
    s, n = slot_counts(stats, "cr", "cta", ["a"], {"geo.region": "pnw", "device.type": "mobile"}, "click", params)
    m_slot = 21 / 1002
    m_v = (20 + 50 * m_slot) / 1050
    c_r = _expit(_logit(m_v) + _logit(9 / 202) - _logit(m_slot))  # centres moved by the slot's shifts
    c_d = _expit(_logit(m_v) + _logit(5 / 402) - _logit(m_slot))
    p_r = (8 + 50 * c_r) / 250
    p_d = (4 + 50 * c_d) / 450
    logit = _logit
    p = 1 / (1 + math.exp(-(logit(m_v) + (logit(p_r) - logit(m_v)) + (logit(p_d) - logit(m_v)))))
    assert n == [250.0] and s[0] == pytest.approx(p * 250, rel=1e-12)


def test_time_buckets_are_discounted_by_half_life():
    # buckets 10 (newest) and 9 one day older; half-life one day -> weights 1 and 0.5; bucket 7 beyond horizon
    stats = _table({
        "cr|image=a": [999, 99, 0, 0.0],  # absolute: ignored once buckets exist
        "cr|image=a#e10": [100, 10, 0, 0.0],
        "cr|image=a#e9": [200, 40, 0, 0.0],
        "cr|image=a#e7": [1000, 500, 0, 0.0],
    })
    params = LearningParams(strength=50.0, half_life_s=86400, bucket_s=86400, buckets=3, dims=())
    s, n = slot_counts(stats, "cr", "image", ["a"], {}, "click", params)
    imps, clicks = 100 + 0.5 * 200, 10 + 0.5 * 40
    m_slot = (clicks + 1) / (imps + 2)
    assert n == [pytest.approx(imps + 50)] and s == [pytest.approx(clicks + 50 * m_slot)]


def test_choose_variant_cold_start_is_uniform_and_exact():
    stats = StatsTable.empty("c")
    choice = choose_variant(stats, "cr", "image", ["a", "b", "c", "d"], {}, "click", make_rng(1))
    assert choice.propensity == 0.25
    picked = {choose_variant(stats, "cr", "image", ["a", "b", "c", "d"], {}, "click", make_rng(s)).index
              for s in range(40)}
    assert picked == {0, 1, 2, 3}


def test_choose_variant_clear_winner_and_pool_propensities():
    stats = _table({"cr|image=a": [100000, 5000, 0, 0.0], "cr|image=b": [100000, 100, 0, 0.0]})
    choice = choose_variant(stats, "cr", "image", ["a", "b"], {}, "click", make_rng(1))
    assert (choice.index, choice.propensity, choice.skipped_sampling) == (0, 1.0, True)
    close = _table({"cr|image=a": [1000, 30, 0, 0.0], "cr|image=b": [1000, 25, 0, 0.0]})
    params = LearningParams(pool=512)
    seen = {}
    for seed in range(300):
        c = choose_variant(close, "cr", "image", ["a", "b"], {}, "click", make_rng(seed), params=params)
        seen[c.index] = c.propensity
    assert set(seen) == {0, 1}
    assert seen[0] + seen[1] == pytest.approx(1.0)
    assert seen[0] > seen[1]  # the better variant wins more draws
    # same stats, same seed: same decision
    a = choose_variant(close, "cr", "image", ["a", "b"], {}, "click", make_rng(5), params=params)
    b = choose_variant(close, "cr", "image", ["a", "b"], {}, "click", make_rng(5), params=params)
    assert a == b


def test_choose_combination_reads_per_region_arm_counts():
    stats = _table({}, arms={"cr|x.p@region=pnw": [5000, 500, 0, 0.0], "cr|x.q@region=pnw": [5000, 5, 0, 0.0],
                             "cr|y.p@region=pnw": [5000, 5, 0, 0.0], "cr|y.q@region=pnw": [5000, 5, 0, 0.0]})
    chosen, choice = learning.choose_combination(
        stats, "cr", [("headline", ["x", "y"]), ("cta", ["p", "q"])], [], {"geo.region": "pnw"}, "click", make_rng(3)
    )
    assert chosen == (("headline", "x"), ("cta", "p")) and choice.propensity == 1.0
    # an exclusion removes the pair from the candidates
    chosen, _ = learning.choose_combination(
        stats, "cr", [("headline", ["x", "y"]), ("cta", ["p", "q"])], [("x", "p")], {"geo.region": "pnw"},
        "click", make_rng(3),
    )
    assert chosen != (("headline", "x"), ("cta", "p"))


def test_stable_counters_keep_their_whole_history_and_changed_ones_go_short():
    params = LearningParams(strength=50.0, half_life_s=86400, bucket_s=86400, buckets=5, recent_buckets=1,
                            change_z=3.0, dims=())
    stats = _table({
        # a: 2% before and 2% in the newest bucket -> stable -> absolute counts
        "cr|image=a": [10000, 200, 0, 0.0], "cr|image=a#e4": [1000, 20, 0, 0.0], "cr|image=a#e3": [1000, 20, 0, 0.0],
        # b: 2% before, 8% in the newest bucket -> changed -> discounted (1 x e4 + 0.5 x e3)
        "cr|image=b": [10000, 280, 0, 0.0], "cr|image=b#e4": [1000, 80, 0, 0.0], "cr|image=b#e3": [1000, 20, 0, 0.0],
    })
    s, n = slot_counts(stats, "cr", "image", ["a", "b"], {}, "click", params)
    # b changed, so the whole slot goes to short memory: a's stale certainty is forgotten too
    imps = [1500.0, 1500.0]
    clicks = [30.0, 90.0]
    m_slot = (sum(clicks) + 1) / (sum(imps) + 2)
    assert n == pytest.approx([i + 50 for i in imps])
    assert s == pytest.approx([c + 50 * m_slot for c in clicks])


def test_a_slot_without_a_change_keeps_its_whole_history():
    params = LearningParams(strength=50.0, half_life_s=86400, bucket_s=86400, buckets=5, recent_buckets=1,
                            change_z=3.0, dims=())
    stats = _table({
        "cr|image=a": [10000, 200, 0, 0.0], "cr|image=a#e4": [1000, 20, 0, 0.0], "cr|image=a#e3": [1000, 20, 0, 0.0],
        "cr|cta=p": [10000, 280, 0, 0.0], "cr|cta=p#e4": [1000, 80, 0, 0.0], "cr|cta=p#e3": [1000, 20, 0, 0.0],
    })
    s, n = slot_counts(stats, "cr", "image", ["a"], {}, "click", params)  # the cta changed, not the image
    assert n == pytest.approx([10050.0])


# ------------------------------------------------------------------------------- partner adjustment


def _partner_stats(extra: dict[str, list[float]] | None = None):
    # GIVEN headlines x and y equally good, CTA p three times q; x was served mostly next to p, y next to q
    arms = {
        "cr|x.p@region=pnw": [10000, 600, 0, 0.0], "cr|x.q@region=pnw": [1000, 20, 0, 0.0],
        "cr|y.p@region=pnw": [1000, 60, 0, 0.0], "cr|y.q@region=pnw": [10000, 200, 0, 0.0],
    }
    components = {
        "cr|headline=x": [11000, 620, 0, 0.0], "cr|headline=x@region=pnw": [11000, 620, 0, 0.0],
        "cr|headline=y": [11000, 260, 0, 0.0], "cr|headline=y@region=pnw": [11000, 260, 0, 0.0],
        "cr|cta=p": [11000, 660, 0, 0.0], "cr|cta=p@region=pnw": [11000, 660, 0, 0.0],
        "cr|cta=q": [11000, 220, 0, 0.0], "cr|cta=q@region=pnw": [11000, 220, 0, 0.0],
        **(extra or {}),
    }
    return _table(components, arms=arms)


def test_combination_counters_adjust_each_variant_for_its_partners():
    stats = _partner_stats()
    params = LearningParams(dims=("region",))
    # WHEN the headline slot is scored in pnw
    s, n = slot_counts(stats, "cr", "headline", ["x", "y"], {"geo.region": "pnw"}, "click", params)
    rate_x, rate_y = s[0] / n[0], s[1] / n[1]
    # THEN x and y come out (nearly) equal, though x's marginal CTR is 2.4 times y's
    assert rate_x / rate_y == pytest.approx(1.0, abs=0.03)
    s, n = slot_counts(stats, "cr", "cta", ["p", "q"], {"geo.region": "pnw"}, "click", params)
    assert (s[0] / n[0]) / (s[1] / n[1]) == pytest.approx(3.0, rel=0.03)
    # the pseudo-successes are the clicks plus the prior's (partner_strength x effect 1 for a new variant)
    assert s[0] == pytest.approx(660 + 2.0)
    # without combination counters (or with partner_strength 0) the marginal counts decide
    plain = LearningParams(dims=("region",), partner_strength=0.0)
    s, n = slot_counts(stats, "cr", "headline", ["x", "y"], {"geo.region": "pnw"}, "click", plain)
    assert (s[0] / n[0]) / (s[1] / n[1]) > 2.0


def test_additive_fit_recovers_multiplicative_effects():
    rows = [(("x", "p"), 10000.0, 600.0), (("x", "q"), 1000.0, 20.0), (("y", "p"), 1000.0, 60.0),
            (("y", "q"), 10000.0, 200.0)]
    fit = learning._fit_additive(rows, None, 2.0, 12)
    assert fit.positions == [{"x": 0, "y": 1}, {"p": 0, "q": 1}]
    assert fit.effect[1]["p"] / fit.effect[1]["q"] == pytest.approx(3.0, rel=0.03)
    assert fit.effect[0]["x"] / fit.effect[0]["y"] == pytest.approx(1.0, abs=0.03)
    assert fit.shape[1] == pytest.approx([662.0, 222.0])  # successes + partner_strength x prior effect 1


def test_context_shift_compares_within_time_buckets():
    # GIVEN a and b earn 2% in bucket 1 and 6% in bucket 2 (partners improved) on both devices; a was on
    # desktop mostly in bucket 2, b mostly in bucket 1: by marginal counts a looks made for desktop
    rows = {}
    for v, (d1, d2) in {"a": (100, 900), "b": (900, 100)}.items():
        for b, (desk, rate) in {1: (d1, 0.02), 2: (d2, 0.06)}.items():
            rows[f"cr|cta={v}#e{b}"] = [2000, 2000 * rate, 0, 0.0]
            rows[f"cr|cta={v}@device=desktop#e{b}"] = [desk, desk * rate, 0, 0.0]
        rows[f"cr|cta={v}"] = [4000, 160, 0, 0.0]
        rows[f"cr|cta={v}@device=desktop"] = [1000, d1 * 0.02 + d2 * 0.06, 0, 0.0]
    stats = _table(rows)
    params = LearningParams(dims=("device",), buckets=5)
    learning._decayed(stats, params)
    shifts = learning._context_shifts(
        stats, ["cr|cta=a", "cr|cta=b"], ("device", "desktop"), 1, params
    )
    # THEN within each bucket desktop and mobile earn the same: no shift for either
    assert shifts == pytest.approx([0.0, 0.0], abs=1e-9)


def test_a_slot_whose_recent_clicks_miss_the_fit_is_drifted():
    arms = {"cr|x.p@region=pnw": [10000, 300, 0, 0.0], "cr|y.p@region=pnw": [10000, 100, 0, 0.0]}
    base = {
        "cr|headline=x": [12000, 360, 0, 0.0], "cr|headline=y": [10000, 100, 0, 0.0], "cr|cta=p": [22000, 460, 0, 0.0],
        "cr|cta=p@region=pnw#e5": [2000, 60, 0, 0.0],
    }
    params = LearningParams(dims=("region",), recent_buckets=1)
    ctx = (("region", "pnw"),)

    def drifted(recent_clicks: float) -> bool:
        stats = _table({**base, "cr|headline=x@region=pnw#e5": [2000, recent_clicks, 0, 0.0]}, arms=arms)
        located = learning._locate_fit(stats, "cr", ["x", "y"], ctx, "click", params)
        assert located is not None and located[1] == 0 and located[3] == "pnw"
        return learning._drifted(stats, "cr", "headline", ["x", "y"], ctx, "click", params, located)

    assert not drifted(60)  # 3 % as the fit says
    assert drifted(10)  # a sixth of it: the world changed


# ------------------------------------------------------------------------------- short memory, pairs


def _drift_stats():
    # GIVEN headline x was three times y for a long time, and in the newest bucket y is three times x
    arms = {
        "cr|x.p@region=pnw": [20000, 900, 0, 0.0], "cr|y.p@region=pnw": [20000, 400, 0, 0.0],
        "cr|x.p@region=pnw#e5": [1000, 10, 0, 0.0], "cr|y.p@region=pnw#e5": [1000, 30, 0, 0.0],
        "cr|x.p@region=pnw#e1": [5000, 900, 0, 0.0],  # outside the newest arm_buckets: ignored
    }
    components = {
        "cr|headline=x": [20000, 900, 0, 0.0], "cr|headline=x@region=pnw": [20000, 900, 0, 0.0],
        "cr|headline=y": [20000, 400, 0, 0.0], "cr|headline=y@region=pnw": [20000, 400, 0, 0.0],
        "cr|headline=x@region=pnw#e5": [1000, 10, 0, 0.0], "cr|headline=y@region=pnw#e5": [1000, 30, 0, 0.0],
        "cr|headline=x#e5": [1000, 10, 0, 0.0], "cr|headline=y#e5": [1000, 30, 0, 0.0],
        "cr|cta=p": [40000, 1300, 0, 0.0], "cr|cta=p@region=pnw": [40000, 1300, 0, 0.0],
        "cr|cta=p@region=pnw#e5": [2000, 40, 0, 0.0], "cr|cta=p#e5": [2000, 40, 0, 0.0],
    }
    return _table(components, arms=arms)


def test_recent_fit_reads_only_the_newest_bucketed_combination_counters():
    stats = _drift_stats()
    params = LearningParams(dims=("region",), arm_buckets=4)
    full = learning._fits(stats, "cr", "click", params)
    recent = learning._fits(stats, "cr", "click", params, recent=True)
    assert set(full) == {None, "pnw"} and set(recent) == {None, "pnw"}  # no "pnw#e5" fit
    assert full["pnw"].effect[0]["x"] > 2 * full["pnw"].effect[0]["y"]
    # bucket 1 is 4 buckets older than the newest (5): outside arm_buckets, so only bucket 5 counts
    assert recent["pnw"].effect[0]["y"] / recent["pnw"].effect[0]["x"] == pytest.approx(32 / 12, rel=0.05)


def test_a_drifted_slot_is_scored_from_the_recent_combination_fit():
    stats = _drift_stats()
    params = LearningParams(dims=("region",), recent_buckets=1, arm_buckets=4)
    ctx = (("region", "pnw"),)
    located = learning._locate_fit(stats, "cr", ["x", "y"], ctx, "click", params)
    assert learning._drifted(stats, "cr", "headline", ["x", "y"], ctx, "click", params, located)
    s, n = slot_counts(stats, "cr", "headline", ["x", "y"], {"geo.region": "pnw"}, "click", params)
    # THEN y leads (the new world), with the recent fit's evidence (about 12 and 32 pseudo-successes)
    assert s[1] / n[1] > 2 * s[0] / n[0]
    assert s[1] == pytest.approx(32, rel=0.1)


def test_a_change_stays_detected_while_its_window_is_in_the_short_memory():
    # GIVEN the old winner x failed in buckets 3-4 and is no longer served in the newest two (5-6)
    arms = {"cr|x.p@region=pnw": [20000, 900, 0, 0.0], "cr|y.p@region=pnw": [20000, 400, 0, 0.0]}
    comps = {
        "cr|headline=x": [22000, 920, 0, 0.0], "cr|headline=y": [22000, 460, 0, 0.0],
        "cr|cta=p": [44000, 1380, 0, 0.0],
        "cr|headline=x@region=pnw#e3": [2000, 20, 0, 0.0], "cr|headline=y@region=pnw#e6": [2000, 60, 0, 0.0],
        "cr|headline=x#e3": [2000, 20, 0, 0.0], "cr|headline=y#e6": [2000, 60, 0, 0.0],
    }
    stats = _table(comps, arms=arms)
    ctx = (("region", "pnw"),)

    def drifted(arm_buckets: int) -> bool:
        params = LearningParams(dims=("region",), recent_buckets=2, arm_buckets=arm_buckets)
        located = learning._locate_fit(stats, "cr", ["x", "y"], ctx, "click", params)
        return learning._drifted(stats, "cr", "headline", ["x", "y"], ctx, "click", params, located)

    assert drifted(4)  # y beats its fit in 5-6, and x failed in 3-4
    comps["cr|headline=y@region=pnw#e6"] = [2000, 40, 0, 0.0]  # y as the fit says in the newest window
    stats = _table(comps, arms=arms)
    assert drifted(4)  # the failure of x two buckets ago still counts
    assert not drifted(2)  # a short memory of one window only sees the newest


def _pair_stats():
    # GIVEN a pure interaction: x goes with p, y with q (each pair 3 times the crossed ones), all served evenly
    arms = {
        "cr|x.p@region=pnw": [10000, 600, 0, 0.0], "cr|x.q@region=pnw": [10000, 200, 0, 0.0],
        "cr|y.p@region=pnw": [10000, 200, 0, 0.0], "cr|y.q@region=pnw": [10000, 600, 0, 0.0],
    }
    comps = {f"cr|{slot}={v}": [20000, 800, 0, 0.0] for slot, vs in (("headline", "xy"), ("cta", "pq")) for v in vs}
    return _table(comps, arms=arms)


def test_chosen_partners_move_a_slot_by_the_pair_residual():
    stats = _pair_stats()
    params = LearningParams(dims=("region",), pair_strength=5.0)
    sig = {"geo.region": "pnw"}

    def ratio(chosen: tuple[str, ...]) -> float:
        s, n = slot_counts(stats, "cr", "cta", ["p", "q"], sig, "click", params, chosen)
        return (s[0] / n[0]) / (s[1] / n[1])

    assert ratio(()) == pytest.approx(1.0, abs=0.02)  # on average p and q are equal
    assert ratio(("x",)) == pytest.approx(3.0, rel=0.05)  # next to x, p earns three times q
    assert ratio(("y",)) == pytest.approx(1 / 3, rel=0.05)
    off = LearningParams(dims=("region",), pair_strength=0.0)
    s, n = slot_counts(stats, "cr", "cta", ["p", "q"], sig, "click", off, ("x",))
    assert (s[0] / n[0]) / (s[1] / n[1]) == pytest.approx(1.0, abs=0.02)
    # the draw tables are kept per set of chosen partners
    a = choose_variant(stats, "cr", "cta", ["p", "q"], sig, "click", make_rng(1), params=params, chosen=("x",))
    b = choose_variant(stats, "cr", "cta", ["p", "q"], sig, "click", make_rng(1), params=params, chosen=("y",))
    assert (a.index, b.index) == (0, 1)


def test_an_earlier_slot_looks_ahead_to_its_best_completion():
    # GIVEN x is ordinary with any CTA; y is poor on average but y.q is the best pair of all
    arms = {
        "cr|x.p@region=pnw": [10000, 400, 0, 0.0], "cr|x.q@region=pnw": [10000, 400, 0, 0.0],
        "cr|y.p@region=pnw": [10000, 100, 0, 0.0], "cr|y.q@region=pnw": [10000, 600, 0, 0.0],
    }
    comps = {"cr|headline=x": [20000, 800, 0, 0.0], "cr|headline=y": [20000, 700, 0, 0.0],
             "cr|cta=p": [20000, 500, 0, 0.0], "cr|cta=q": [20000, 1000, 0, 0.0]}
    stats = _table(comps, arms=arms)
    sig = {"geo.region": "pnw"}

    def ratio(k: float) -> float:
        params = LearningParams(dims=("region",), lookahead_strength=k)
        s, n = slot_counts(stats, "cr", "headline", ["x", "y"], sig, "click", params)
        return (s[1] / n[1]) / (s[0] / n[0])

    assert ratio(0.0) < 1.0  # per-slot effects: x ahead
    assert ratio(10.0) > 1.2  # with its best CTA, y is ahead (600 against 400 clicks)


def test_fits_follow_each_tables_combinations_whatever_was_seen_before():
    # GIVEN two campaigns in one process with the same creative id, two slots and then three
    two = _table({}, arms={"cr|x.p@region=pnw": [1000, 40, 0, 0.0], "cr|y.q@region=pnw": [1000, 20, 0, 0.0]})
    three = _table({}, arms={"cr|x.p.a@region=pnw": [1000, 40, 0, 0.0], "cr|y.q.b@region=pnw": [1000, 20, 0, 0.0],
                             "cr|x.q@region=pnw": [1000, 30, 0, 0.0]})
    # WHEN each is fitted
    fit_two = learning._fits(two, "cr", "click", learning.DEFAULT_PARAMS)["pnw"]
    fit_three = learning._fits(three, "cr", "click", learning.DEFAULT_PARAMS)["pnw"]
    # THEN each fit has its table's positions (a combination of another width than the first key is left out)
    assert [sorted(p) for p in fit_two.positions] == [["x", "y"], ["p", "q"]]
    assert [sorted(p) for p in fit_three.positions] == [["x", "y"], ["p", "q"], ["a", "b"]]


def test_device_cells_give_each_device_its_own_variant_effects():
    # GIVEN cta p earns twice q on mobile and q twice p on desktop, headlines x and y are equal, and x was served
    # mostly on mobile (next to p), y mostly on desktop (next to q) (counts x 5: a device effect is shrunk toward
    # none with cell_strength = 50 pseudo-successes)
    served = {  # (headline, cta, device): (impressions, clicks)
        ("x", "p", "mobile"): (10000, 400), ("y", "p", "mobile"): (1000, 40), ("x", "q", "mobile"): (1000, 20),
        ("y", "q", "mobile"): (200, 4), ("y", "q", "desktop"): (10000, 400), ("x", "q", "desktop"): (1000, 40),
        ("y", "p", "desktop"): (1000, 20), ("x", "p", "desktop"): (200, 4),
    }
    arms: dict[str, list[float]] = {}
    components: dict[str, list[float]] = {}
    for (h, c, d), (n, s) in served.items():
        for key, rows in ((f"cr|{h}.{c}@region=pnw", arms), (f"cr|{h}.{c}@region=pnw@device={d}", arms),
                          (f"cr|headline={h}", components), (f"cr|headline={h}@region=pnw", components),
                          (f"cr|headline={h}@device={d}", components), (f"cr|cta={c}", components),
                          (f"cr|cta={c}@region=pnw", components), (f"cr|cta={c}@device={d}", components)):
            row = rows.setdefault(key, [0, 0, 0, 0.0])
            row[0] += 5 * n
            row[1] += 5 * s
    params = LearningParams(dims=("region", "device"))

    def rates(stats, slot: str, variants: list[str], device: str) -> list[float]:
        s, n = slot_counts(stats, "cr", slot, variants, {"geo.region": "pnw", "device.type": device}, "click", params)
        return [a / b for a, b in zip(s, n, strict=True)]

    stats = _table(components, arms=arms)
    plain = _table(components, arms={k: v for k, v in arms.items() if "@device=" not in k})
    if learning.np is None:
        # (pure Python: the cells need numpy) the cell rows are skipped and the region's fit pools the devices,
        # exactly as without them
        assert learning._fits(stats, "cr", "click", params)["pnw"].cells == {}
        for slot, variants in (("cta", ["p", "q"]), ("headline", ["x", "y"])):
            for device in ("mobile", "desktop"):
                assert rates(stats, slot, variants, device) == rates(plain, slot, variants, device)
        return
    # WHEN the slots are scored per device from the region's fit of its device cells
    p_m, q_m = rates(stats, "cta", ["p", "q"], "mobile")
    p_d, q_d = rates(stats, "cta", ["p", "q"], "desktop")
    x_m, y_m = rates(stats, "headline", ["x", "y"], "mobile")
    # THEN each device gets its own CTA, and the headlines come out (nearly) equal
    assert p_m / q_m > 1.6 and q_d / p_d > 1.6
    assert x_m / y_m == pytest.approx(1.0, abs=0.15)
    fit = learning._fits(stats, "cr", "click", params)["pnw"]
    assert fit.main == 2 and set(fit.positions[fit.cells[1]]) == {"p@device=mobile", "p@device=desktop",
                                                                   "q@device=mobile", "q@device=desktop"}
    # without the cells (older folds: region counters only) the region's fit pools the devices
    assert learning._fits(plain, "cr", "click", params)["pnw"].cells == {}


@needs_numpy
def test_combination_drift_baseline_is_the_history_before_the_windows():
    # GIVEN the drift fixture: absolute counters, bucket 5 (the newest) and bucket 1, kept by the stats object
    # but outside the newest arm_buckets = 4 (so inside no window)
    stats = _drift_stats()
    params = LearningParams(dims=("region",), arm_buckets=4)
    learning._fits(stats, "cr", "click", params)  # registers the combinations and their rows
    found = learning._combination_windows(stats, "cr", "click", params, "pnw")
    assert found is not None
    (n_before, s_before), windows = found
    reg = learning._COMBOS[("cr", "@region=")]
    x, y = reg.ids["cr|x.p"], reg.ids["cr|y.p"]
    # THEN the baseline is the absolute counts less the windows' buckets only: bucket 1 is history too
    assert (n_before[x], s_before[x]) == (19000, 890)
    assert (n_before[y], s_before[y]) == (19000, 370)
    # AND the one window holds bucket 5
    assert len(windows) == 1 and sorted(windows[0][1].tolist()) == [1000.0, 1000.0]


@needs_numpy
def test_a_region_fit_of_cells_keeps_the_traffic_outside_its_cells():
    # GIVEN a region whose counters hold 100,000 impressions per combination from before the cells (x three times
    # y), and cells of 200 impressions per combination and device at equal rates
    arms = {"cr|x.p@region=pnw": [100200, 3030, 0, 0.0], "cr|y.p@region=pnw": [100200, 1030, 0, 0.0]}
    for h in ("x", "y"):
        arms[f"cr|{h}.p@region=pnw@device=mobile"] = [100, 15, 0, 0.0]
        arms[f"cr|{h}.p@region=pnw@device=desktop"] = [100, 15, 0, 0.0]
    components = {"cr|headline=x": [100200, 3030, 0, 0.0], "cr|headline=y": [100200, 1030, 0, 0.0],
                  "cr|cta=p": [200400, 4060, 0, 0.0]}
    stats = _table(components, arms=arms)
    # WHEN the region is fitted from its cells
    fit = learning._fits(stats, "cr", "click", LearningParams(dims=("region", "device")))["pnw"]
    # THEN the old traffic still ranks x well above y (one more block of rows: device "device=")
    assert fit.cells and fit.effect[0]["x"] / fit.effect[0]["y"] > 2.5
    assert {"p@device=", "p@device=mobile", "p@device=desktop"} <= set(fit.positions[fit.cells[1]])
