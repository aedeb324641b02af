"""`dco report` figures on a hand-computed fixture stats object."""

from __future__ import annotations

import math

import pytest

# The simulator and the report are developer tools built on numpy (and matplotlib); the pure-Python pass
# (--pure-python) covers the runtime core only, and these tests run in the accelerated pass.
np = pytest.importorskip("numpy", reason="developer tool needing numpy; covered by the accelerated run")
from dco_local.report import beta_summary, build_report, render_html  # noqa: E402

FIXTURE = {
    "version": 1,
    "campaign": "c",
    "updated_at": 100,
    "components": {
        "cr|image=a": [1000, 50, 5, 250.0],
        "cr|image=b": [1000, 10, 1, 30.0],
        "cr|image=a@region=pnw": [400, 4, 0, 0.0],
        "cr|image=b@region=pnw": [400, 20, 2, 60.0],
        "cr|image=a#e3": [500, 25, 0, 0.0],  # time buckets are not report rows
    },
    "arms": {
        "cr|a.h1": [600, 30, 0, 0.0],
        "cr|b.h1": [400, 20, 0, 0.0],
        "cr|b.h2": [50, 5, 0, 0.0],  # under 100 impressions: not meaningful
        "cr|a.h1@region=pnw": [300, 15, 0, 0.0],  # 95% width 0.050 < mean 0.053: meaningful
        "cr|b.h1@region=pnw": [300, 30, 0, 0.0],
        "cr|a.h1@region=se": [300, 27, 0, 0.0],
        "cr|b.h1@region=se": [300, 15, 0, 0.0],
        "cr|b.h2@region=se": [100, 1, 0, 0.0],  # width 0.054 > mean 0.020: not meaningful
        "cr": [1800, 68, 6, 280.0],
    },
    "splits": {"optimized": [10000, 300, 0, 0.0], "holdout": [1000, 15, 0, 0.0]},
}


def test_component_rows_hand_computed():
    report = build_report(FIXTURE, cpm=2.0)
    overall = next(c for c in report["components"] if c["slot"] == "image" and c["context"] == "all")
    a, b = overall["variants"]  # sorted best first
    assert (a["variant"], b["variant"]) == ("a", "b")
    assert a["ctr"] == 0.05 and a["ctr_mean"] == pytest.approx(51 / 1002)
    assert a["cvr"] == pytest.approx(0.1)
    assert a["value_per_mille"] == pytest.approx(250.0)
    assert a["roas"] == pytest.approx(250.0 / 2.0)  # spend = 1000 imps x 2.0 / 1000
    assert a["p_best"] == pytest.approx(1.0, abs=1e-3)
    # Beta(51, 951) 95% interval, normal approximation as the check (n is large)
    mean, sd = 51 / 1002, math.sqrt(51 * 951 / (1002**2 * 1003))
    assert a["ctr_low"] == pytest.approx(mean - 1.96 * sd, abs=0.002)
    assert a["ctr_high"] == pytest.approx(mean + 1.96 * sd, abs=0.002)
    pnw = next(c for c in report["components"] if c["context"] == "region=pnw")
    assert pnw["variants"][0]["variant"] == "b"  # b wins in pnw although a wins overall
    assert len(report["components"]) == 2  # no row from the #e3 bucket


def test_combinations_and_ranks_elsewhere():
    report = build_report(FIXTURE)
    assert report["combinations"]["distinct"] == 3
    assert report["combinations"]["meaningful"] == 2  # b.h2 has 50 impressions
    assert report["combinations"]["meaningful_by_region"] == {"pnw": 2, "se": 2}
    pnw = report["top_by_region"]["pnw"]
    assert [e["combination"] for e in pnw] == ["cr|b.h1", "cr|a.h1"]
    assert pnw[0]["rank_elsewhere"] == {"se": 2}  # best in pnw, second in se
    assert report["top_by_region"]["se"][0]["rank_elsewhere"] == {"pnw": 2}


def test_time_buckets_and_device_cells_are_not_regions():
    # GIVEN the fixture plus a time-bucketed and a device-cell copy of a per-region combination row
    arms = dict(FIXTURE["arms"])
    row = next(v for k, v in arms.items() if k.endswith("@region=pnw"))
    key = next(k for k in arms if k.endswith("@region=pnw"))
    obj = {**FIXTURE, "arms": {**arms, f"{key}#e5": list(row), f"{key}@device=mobile": list(row)}}
    # THEN the regions and their top combinations are those of the fixture
    assert build_report(obj)["top_by_region"] == build_report(FIXTURE)["top_by_region"]


def test_lift_vs_holdout():
    lift = build_report(FIXTURE)["lift"]
    assert lift["lift"] == pytest.approx(0.03 / 0.015 - 1)
    se = math.sqrt(0.97 / 300 + 0.985 / 15)
    assert lift["ci_high"] == pytest.approx(2 * math.exp(1.959963984540054 * se) - 1)


def test_probability_to_be_best_is_symmetric_for_equal_posteriors():
    out = beta_summary([10, 10], [100, 100], np.random.default_rng(1), draws=20000)
    assert out["p_best"][0] == pytest.approx(0.5, abs=0.02)


def test_html_embeds_plots():
    page = render_html(build_report(FIXTURE))
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page and "Lift vs holdout" in page
