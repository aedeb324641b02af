"""``dco demo`` in short mode: the whole loop over real HTTP, and the JSON summary it promises.

The demo starts its own local stack (one per process), so this module uses no stack fixture. The first tests
are the demo's pure parts (the simulated audience); the last one runs the demo end to end.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from dco_local.demo import DEMO_SCENARIO, Audience, run_demo

SHORT_IMPRESSIONS = 300


# ------------------------------------------------------------------------------------------ the audience


def test_audience_plan_is_deterministic_per_seed() -> None:
    audience = Audience(DEMO_SCENARIO)

    first, again, other = audience.plan(200, seed=3), audience.plan(200, seed=3), audience.plan(200, seed=4)

    assert first == again
    assert first != other
    assert {v.region for v in first} <= {"pnw", "northeast", "southeast", "midwest", "southwest", "california"}
    assert {v.device for v in first} <= {"mobile", "desktop"}
    assert all(0.0 <= v.uniform < 1.0 for v in first)


def test_audience_truth_rewards_the_regional_winner_and_ignores_slots_outside_the_scenario() -> None:
    audience = Audience(DEMO_SCENARIO)
    pnw = audience.context_index("pnw", "desktop")
    winner = ["image=img06", "headline=h07", "cta=c02"]

    p_best = audience.click_probability(pnw, winner + ["offer=o01"])

    assert p_best == pytest.approx(audience.click_probability(pnw, winner + ["offer=o03"]))
    assert p_best == pytest.approx(audience.best_probability(pnw))
    assert p_best > 5 * audience.click_probability(pnw, ["image=img29", "headline=h05", "cta=c05"])
    assert audience.click_probability(pnw, []) == pytest.approx(audience.base_p)  # the house ad
    combo, p = audience.best_combination("southeast")
    assert combo == ["image=img05", "headline=h07", "cta=c02"] and 0 < p < 1


# ------------------------------------------------------------------------------------------ the demo


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("demo")
    return run_demo(impressions=SHORT_IMPRESSIONS, seed=11, report_dir=folder, workers=2, progress=False)


def test_demo_summary_has_the_promised_keys_and_counts(summary: dict) -> None:
    for key in ("impressions", "clicks", "ctr", "holdout_ctr", "lift", "lift_ci", "report"):
        assert key in summary, key
    json.dumps(summary)  # one JSON object, as --json prints it

    assert summary["impressions"] == SHORT_IMPRESSIONS
    assert summary["clicks"] > 0
    assert summary["errors"] == {}
    # the figures come from the published counters and equal what the audience sent
    assert summary["counts_match"] is True
    assert summary["counted"] == summary["sent"]
    assert summary["optimized"]["impressions"] + summary["holdout"]["impressions"] == SHORT_IMPRESSIONS
    assert summary["optimized"]["clicks"] + summary["holdout"]["clicks"] == summary["clicks"]
    assert 0 < summary["holdout"]["impressions"] < SHORT_IMPRESSIONS / 3  # the campaign holds out 10 %


def test_demo_lift_is_a_number_inside_its_interval(summary: dict) -> None:
    if summary["holdout"]["clicks"] == 0:
        pytest.skip("no holdout click in this short run: lift undefined (the summary says null)")
    lift, (low, high) = summary["lift"], summary["lift_ci"]

    assert all(isinstance(x, float) and math.isfinite(x) for x in (lift, low, high))
    assert low <= lift <= high
    expected = summary["ctr"] / summary["holdout_ctr"] - 1
    assert lift == pytest.approx(expected)


def test_demo_report_has_the_plots_and_the_published_stats(summary: dict) -> None:
    index = Path(summary["report"])
    page = index.read_text()

    images = re.findall(r"<img [^>]*src='data:image/png;base64,[A-Za-z0-9+/=]{200,}'", page)
    assert len(images) >= 3  # learning curve, lift over time, component effects by region
    for title in ("Learning curve", "Lift over time", "Component effects by region"):
        assert title in page
    stats = json.loads((index.parent / "stats.json").read_text())
    hold, opt = stats["splits"]["holdout"], stats["splits"]["optimized"]
    assert [hold[0], hold[1]] == [summary["holdout"]["impressions"], summary["holdout"]["clicks"]]
    assert [opt[0], opt[1]] == [summary["optimized"]["impressions"], summary["optimized"]["clicks"]]
    assert (index.parent / "components.html").is_file()


def test_demo_components_come_from_the_context_counters_and_the_published_model(summary: dict) -> None:
    # GIVEN the stats object the demo published (version 2: contexts rows and a fitted model, no components)
    index = Path(summary["report"])
    stats = json.loads((index.parent / "stats.json").read_text())
    assert stats["version"] == 2 and "components" not in stats
    model = stats["models"]["cr-retail"]["click"]
    steered = {k: row for k, row in stats["contexts"].items() if k.startswith("cr-retail|") and "#" not in k}

    # THEN the leaderboard has every slot of the creative, ranked by the model's main effect, and its counts
    # are the sums of the context rows holding the variant at the slot's position (config order: headline,
    # image, cta, offer)
    board = summary["leaderboard"]
    assert set(board) == {"headline", "image", "cta", "offer"}
    for position, slot in enumerate(("headline", "image", "cta", "offer")):
        rows = board[slot]
        effects = [r["effect"]["mean"] for r in rows]
        assert rows and effects == sorted(effects, reverse=True)
        main = model["memories"][0]["groups"][f"main:{position}"]["mean"]
        for r in rows:
            assert r["effect"]["mean"] == pytest.approx(main[model["variants"][position].index(r["variant"])])
            picked = [row for key, row in steered.items()
                      if key.split("|")[1].split("@")[0].split(".")[position] == r["variant"]]
            impressions, clicks = sum(x[0] for x in picked), sum(x[1] for x in picked)
            assert [r["impressions"], r["clicks"]] == [impressions, min(clicks, impressions)]
    for b in summary["best_by_region"].values():
        assert [v.split("=")[0] for v in b["learned"]] == ["image", "headline", "cta", "offer"]
    page = (index.parent / "components.html").read_text()
    assert "<h2>Models</h2>" in page and "cr-retail / image / region=" in page
