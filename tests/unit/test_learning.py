"""The learner: learning contexts, the model's fit (shrinkage, warm starts, memories), decision tables and the
reference learners. Parity of the numpy and pure-Python paths: test_learning_parity.py."""

from __future__ import annotations

import math
import random
from datetime import datetime

import pytest
from dco import learning
from dco.learning import LearningParams, context_key, fit_models, learning_context
from dco.learning.contract import decay_stamp
from dco.learning.draws import ModelView, build_table, pick
from dco.learning.model import KeyParser, prior_var, validate_models
from dco.learning.policy import choose, choose_per_arm, choose_per_slot
from dco.rng import make_rng
from dco.stats import StatsTable

NOW = 2_200_000_000  # a fixed clock (unix seconds)


def _p(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _rows(truth, combos, contexts, n: int, seed: int = 1, now: int = NOW) -> dict[str, list]:
    """``contexts`` rows of ``n`` impressions served uniformly over ``combos`` x ``contexts``, clicks drawn from
    ``truth(combo, context) -> logit``, every impression an hour before ``now`` (in the discounted sums too)."""
    rnd = random.Random(seed)
    rows: dict[str, list] = {}
    epoch, weight = decay_stamp(now - 3600)
    for _ in range(n):
        combo = rnd.choice(combos)
        ctx = rnd.choice(contexts)
        click = rnd.random() < _p(truth(combo, ctx))
        key = context_key("cr|" + ".".join(combo), ctx.items())
        row = rows.setdefault(key, [0, 0, 0, 0.0])
        row[0] += 1
        row[1] += click
        d = rows.setdefault(f"{key}#d{epoch}", [0, 0, 0, 0.0])
        d[0] += weight
        d[1] += weight * click
    return rows


def _stats(rows, models=None, updated_at: int = NOW) -> StatsTable:
    return StatsTable.from_object({"version": 2, "campaign": "c", "updated_at": updated_at, "arms": {},
                                   "contexts": rows, "models": models or {}})


IMAGES = [f"i{k}" for k in range(6)]
HEADS = ["h0", "h1", "h2"]
COMBOS = [(i, h) for i in IMAGES for h in HEADS]


# ------------------------------------------------------------------------------------------ learning context


def test_learning_context_picks_the_campaign_dimensions_folds_case_and_leaves_absent_ones_out():
    signals = {"geo.region": "PNW", "device.type": "mobile", "context.weather": "Rain", "geo.country": "US"}
    assert learning_context(signals, ("region", "device")) == {"region": "pnw", "device": "mobile"}
    assert learning_context(signals, ("country", "context.weather", "context.topic")) == {
        "country": "us", "context.weather": "rain"}
    assert learning_context(signals, ("daypart",), datetime(2026, 5, 1, 19, 30)) == {"daypart": "evening"}
    assert learning_context(signals, ("daypart",)) == {}  # no local time given: not known
    assert learning_context(signals, ()) == {}


# ------------------------------------------------------------------------------------------ the fit


def test_fit_recovers_a_main_effect_and_a_context_effect_and_shrinks_empty_groups_to_nothing():
    def truth(combo, ctx):
        return -3.5 + (0.6 if combo[1] == "h2" else 0.0) + (0.9 if (ctx.get("region"), combo[0]) == ("pnw", "i3") else 0.0)

    contexts = [{"region": r, "device": d} for r in ("pnw", "ne") for d in ("mobile", "desktop")]
    model = fit_models(_rows(truth, COMBOS, contexts, 120_000), NOW)["cr"]["click"]
    assert model["dims"] == ["device", "region"] or sorted(model["dims"]) == ["device", "region"]
    groups = model["memories"][0]["groups"]
    heads, images = model["variants"][1], model["variants"][0]
    main_h = dict(zip(heads, groups["main:1"]["mean"], strict=True))
    # the intercept takes a share of any level: the effect is a difference between headlines
    assert max(main_h, key=main_h.get) == "h2"
    assert main_h["h2"] - (main_h["h0"] + main_h["h1"]) / 2 == pytest.approx(0.6, abs=0.12)
    region = model["dims"].index("region")
    ctx = groups[f"ctx:{region}:0"]["mean"]
    values = model["values"][region]
    pnw_i3 = ctx[values.index("pnw") * len(images) + images.index("i3")]
    main_i3 = groups["main:0"]["mean"][images.index("i3")]
    assert pnw_i3 + main_i3 > 0.6  # the region x image effect (split with the main effect as the data allow)
    # the device carries no signal: its context x component effects are ~0 with (nearly) no spread, and the
    # image x headline pair group too (no interaction in the truth)
    device = model["dims"].index("device")
    for name in (f"ctx:{device}:0", f"ctx:{device}:1", "pair:0:1"):
        g = groups[name]
        assert max(abs(x) for x in g["mean"]) < 0.08, name
        assert max(g["var"]) < 0.01, name
        assert g["mix"][0] > 0.5, name  # most of the group's prior weight at no effect


def test_a_constant_dimension_costs_nothing_in_the_decisions():
    """The issue's single-device collapse: a dimension with one value for all traffic must not change what is
    learned about the others."""
    def truth(combo, ctx):
        return -3.5 + (0.9 if (ctx["region"], combo[0]) in (("pnw", "i1"), ("ne", "i4")) else 0.0)

    with_device = [{"region": r, "device": "desktop"} for r in ("pnw", "ne")]
    without = [{"region": r} for r in ("pnw", "ne")]
    a = fit_models(_rows(truth, COMBOS, with_device, 60_000), NOW)["cr"]["click"]
    b = fit_models(_rows(truth, COMBOS, without, 60_000), NOW)["cr"]["click"]
    for region, best in (("pnw", "i1"), ("ne", "i4")):
        ta = build_table(ModelView(a), [IMAGES, HEADS], {"region": region, "device": "desktop"}, [], 7)
        tb = build_table(ModelView(b), [IMAGES, HEADS], {"region": region}, [], 7)
        share_a = sum(s for w, s in ta.share.items() if w and w[0] == best)
        share_b = sum(s for w, s in tb.share.items() if w and w[0] == best)
        assert share_a > 0.8 and share_b > 0.8
        assert abs(share_a - share_b) < 0.1


def test_a_warm_fit_lands_where_a_cold_fit_does():
    def truth(combo, ctx):
        return -3.2 + (0.5 if combo[0] == "i2" else 0.0) - (0.4 if combo[1] == "h0" else 0.0)

    rows = _rows(truth, COMBOS, [{"region": "pnw"}], 80_000)
    cold = fit_models(rows, NOW, params=LearningParams(cold_sweeps=60))["cr"]["click"]
    first = fit_models(_rows(truth, COMBOS, [{"region": "pnw"}], 40_000, seed=2), NOW - 600)
    warm = fit_models(rows, NOW, previous=first, params=LearningParams(warm_sweeps=12))["cr"]["click"]
    for name in ("main:0", "main:1"):
        for x, y in zip(cold["memories"][0]["groups"][name]["mean"], warm["memories"][0]["groups"][name]["mean"],
                        strict=True):
            assert x == pytest.approx(y, abs=0.03)


def test_the_memory_that_predicted_the_new_outcomes_gains_weight():
    """Fixed-share Bayes over the two memories: after a change, the recent memory predicts better and gains."""
    def before(combo, ctx):
        return -3.0 + (1.0 if combo[0] == "i0" else 0.0)

    def after(combo, ctx):
        return -3.0 + (1.0 if combo[0] == "i5" else 0.0)

    def merged(*parts):
        out: dict[str, list] = {}
        for part in parts:
            for k, v in part.items():
                row = out.setdefault(k, [0, 0, 0, 0.0])
                for j in range(3):
                    row[j] += v[j]
        return out

    ctx = [{"region": "pnw"}]
    old = _rows(before, COMBOS, ctx, 100_000, now=NOW - 5 * 86400)
    first = fit_models(old, NOW - 5 * 86400)
    assert [round(x, 6) for x in first["cr"]["click"]["log_weights"]] == [round(math.log(0.5), 6)] * 2
    # after the change: the publication that sees it adapts the recent memory; the one an hour after scores the two
    day1 = merged(old, _rows(after, COMBOS, ctx, 30_000, seed=3, now=NOW - 3600))
    second = fit_models(day1, NOW - 3600, previous=first, previous_rows=old)
    day2 = merged(day1, _rows(after, COMBOS, ctx, 30_000, seed=4, now=NOW))
    models = fit_models(day2, NOW, previous=second, previous_rows=day1)["cr"]["click"]
    w_all, w_recent = (math.exp(x) for x in models["log_weights"])
    assert w_recent > 0.9 * (w_all + w_recent)
    # the recent memory has learned the new winner; all-evidence still leans to the old one
    recent = models["memories"][1]["groups"]["main:0"]["mean"]
    images = models["variants"][0]
    assert max(images, key=lambda v: recent[images.index(v)]) == "i5"


def test_conversion_models_only_where_conversions_are_counted():
    rows = _rows(lambda c, x: -3.0, COMBOS, [{"region": "pnw"}], 5_000)
    assert set(fit_models(rows, NOW)["cr"]) == {"click"}
    key = next(k for k in rows if "#" not in k)
    rows[key][2] = 1
    assert set(fit_models(rows, NOW)["cr"]) == {"click", "conversion"}


def test_keys_the_learner_does_not_read_are_ignored_and_widths_do_not_mix():
    rows = _rows(lambda c, x: -3.0, COMBOS, [{"region": "pnw"}], 5_000)
    rows["garbage"] = [5, 1, 0, 0.0]
    rows["cr|i1@region=PNW"] = [7, 1, 0, 0.0]  # an unescaped value: not a key the learner reads
    rows["cr|i1.h1.c1@region=pnw"] = [3, 0, 0, 0.0]  # another width: fewer impressions, left out
    model = fit_models(rows, NOW, parser=KeyParser())["cr"]["click"]
    assert len(model["variants"]) == 2 and model["impressions"] == 5_000


def test_validate_models_names_the_path_of_the_problem():
    rows = _rows(lambda c, x: -3.0, COMBOS, [{"region": "pnw"}], 3_000)
    good = fit_models(rows, NOW)
    assert validate_models(good) == good
    bad = {"cr": {"click": dict(good["cr"]["click"], log_weights=[0.0], memories=[{"intercept": 0.0, "groups": {
        "main:0": {"mean": [0.0], "var": [0.1], "mix": [1.0]}}}])}}
    with pytest.raises(ValueError, match=r"models\['cr'\]\['click'\].*main:0.*mean must have 6 numbers"):
        validate_models(bad)
    nan = {"cr": {"click": dict(good["cr"]["click"], log_weights=[float("nan"), 0.0])}}
    with pytest.raises(ValueError, match="log_weights"):
        validate_models(nan)
    with pytest.raises(ValueError, match="objective"):
        validate_models({"cr": {"clicks": good["cr"]["click"]}})


# ------------------------------------------------------------------------------------------ decisions


def test_a_cold_model_explores_every_combination_with_exact_propensities():
    table = build_table(ModelView(None), [IMAGES, HEADS], {}, [], 11, LearningParams(pool=2048))
    assert set(table.share) == set(COMBOS)  # every combination can be drawn
    assert sum(table.share.values()) == pytest.approx(1.0)
    for u in (0.0, 0.3, 0.999):
        winner, propensity, row = pick(table, u)
        assert table.winners[row] == winner and propensity == table.share[winner]


def test_tables_respect_exclusions_and_unseen_variants_are_explored():
    def truth(combo, ctx):
        return -3.0 + (1.2 if combo == ("i1", "h1") else 0.0)

    model = fit_models(_rows(truth, COMBOS, [{"region": "pnw"}], 60_000), NOW)["cr"]["click"]
    view = ModelView(model)
    table = build_table(view, [IMAGES + ["i-new"], HEADS], {"region": "pnw"}, [("i1", "h1")], 5)
    assert all(w != ("i1", "h1") for w in table.winners)  # the excluded pair is never shown
    assert any(w and w[0] == "i-new" for w in table.winners)  # a variant the model never saw is tried
    free = build_table(view, [IMAGES, HEADS], {"region": "pnw"}, [], 5)
    assert max(free.share, key=free.share.get) == ("i1", "h1")  # the interaction's winner, through the pair term


def test_no_allowed_combination_gives_no_winner():
    table = build_table(ModelView(None), [["i1"], ["h1"]], {}, [("i1", "h1")], 3)
    assert set(table.winners) == {None}


def test_choose_is_deterministic_per_seed_and_cached_per_stats_object():
    rows = _rows(lambda c, x: -3.0 + (0.8 if c[0] == "i0" else 0.0), COMBOS, [{"region": "pnw"}], 30_000)
    stats = _stats(rows, fit_models(rows, NOW))
    args = (stats, "cr", [tuple(IMAGES), tuple(HEADS)], (), {"region": "pnw"}, "click")
    a = choose(*args, make_rng(42))
    assert a == choose(*args, make_rng(42))
    picks = [choose(*args, make_rng(s)).variants for s in range(400)]
    tables = stats.memo[("learning.tables", learning.DEFAULT_PARAMS)]
    assert len({id(t) for t in tables.values()}) == 1  # one table built, whatever the number of decisions
    assert sum(p[0] == "i0" for p in picks) > 300
    explained = choose(*args, make_rng(42), explain=True)
    assert explained.variants == a.variants and explained.trace["rows"] == learning.DEFAULT_PARAMS.pool
    # a conversion objective without a conversion model learns from the click model meanwhile
    conv = [choose(stats, "cr", [tuple(IMAGES), tuple(HEADS)], (), {"region": "pnw"}, "conversion",
                   make_rng(s)).variants for s in range(100)]
    assert sum(p[0] == "i0" for p in conv) > 75


def test_reference_learners_read_the_contexts_counters():
    def truth(combo, ctx):
        return -2.0 + (1.5 if combo == ("i2", "h1") else 0.0)

    rows = _rows(truth, COMBOS, [{"region": "pnw"}], 40_000)
    stats = _stats(rows)
    args = (stats, "cr", [tuple(IMAGES), tuple(HEADS)], (), {"region": "pnw"}, "click")
    arm = [choose_per_arm(*args, make_rng(s)).variants for s in range(200)]
    assert sum(v == ("i2", "h1") for v in arm) > 150
    slot = [choose_per_slot(*args, make_rng(s)).variants for s in range(200)]
    assert sum(v == ("i2", "h1") for v in slot) > 100
    other = _stats(rows)  # a context with no counters: uniform prior, every combination possible
    unseen = {choose_per_arm(other, "cr", [tuple(IMAGES), tuple(HEADS)], (), {"region": "ne"}, "click",
                             make_rng(s)).variants for s in range(300)}
    assert len(unseen) > 12


def test_prior_variance_of_a_cold_group():
    params = LearningParams()
    alpha = [params.null_weight] + [1.0] * (len(params.scale_grid) - 1)
    mix = [a / sum(alpha) for a in alpha]
    assert prior_var(mix, params.scale_grid) == pytest.approx(sum(w * s * s for w, s in zip(mix, params.scale_grid,
                                                                                                strict=True)))


@pytest.mark.parametrize("bad", [{"null_weight": 0.0}, {"switches_per_day": 0.0}, {"pool": 0}, {"pool": True},
                                 {"scale_grid": (0.2, 0.1)}, {"warm_sweeps": 2.5}])
def test_learning_params_are_validated_with_the_field_named(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        LearningParams(**bad)
