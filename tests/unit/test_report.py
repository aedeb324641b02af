"""`dco report` figures on a hand-computed version 2 stats object: component counts summed from the ``contexts``
rows, the fitted model's effects, combinations per context value, lift, the HTML page and bad input."""

from __future__ import annotations

import copy
import json
import math

import pytest

# The simulator and the report are developer tools built on numpy (and matplotlib); the pure-Python pass
# (--pure-python) covers the runtime core only, and these tests run in the accelerated pass.
np = pytest.importorskip("numpy", reason="developer tool needing numpy; covered by the accelerated run")
from dco.learning.contract import counter_keys, escape_value  # noqa: E402
from dco_local.cli import main  # noqa: E402
from dco_local.report import (  # noqa: E402
    Campaign,
    beta_summary,
    build_report,
    campaign_from_config,
    component_counts,
    memory_weights,
    render_html,
    slot_names,
)

STL = "st. louis"  # a context value that is escaped in the keys
CONTEXTS = {
    # <creative>|<image>.<headline>@<dim>=<value>...   [impressions, clicks, conversions, value]
    "cr|a.h1@region=pnw": [300, 3, 0, 0.0],
    "cr|b.h1@region=pnw": [300, 15, 1, 30.0],
    "cr|a.h2@device=mobile@region=se": [700, 45, 5, 250.0],
    "cr|b.h2@device=mobile@region=se": [700, 7, 0, 0.0],
    "cr|b.h1@region=se": [400, 20, 0, 0.0],
    f"cr|b.h2@region={escape_value(STL)}": [50, 5, 0, 0.0],
    "cr|a.h1": [100, 2, 0, 0.0],  # no learning context in the request: counts overall only
    "cr|a.h2@device=mobile@region=se#d2594": [9990, 990, 90, 0],  # discounted sums: not counts
}
# what the rows sum to, by hand: image a = a.h1@pnw + a.h2@mobile,se + a.h1; image b = the four b rows
IMAGE_A = [300 + 700 + 100, 3 + 45 + 2, 0 + 5 + 0, 250.0]
IMAGE_B = [300 + 700 + 400 + 50, 15 + 7 + 20 + 5, 1, 30.0]

GRID = [0.0, 0.5]
MIX = [0.5, 0.5]  # prior variance of an unseen effect: 0.5 * 0.5 ** 2 = 0.125


def _group(mean: list[float], var: list[float]) -> dict:
    return {"mean": mean, "var": var, "mix": MIX}


MODEL = {
    "version": 1, "fitted_at": 90, "impressions": 2550,
    "variants": [["a", "b"], ["h1", "h2"]], "dims": ["device", "region"], "values": [["mobile"], ["pnw", "se"]],
    "log_weights": [math.log(0.25), math.log(0.75)],
    "memories": [
        {"half_life_s": 0.0, "intercept": -3.0, "grid": GRID, "groups": {
            "main:0": _group([0.3, -0.2], [0.01, 0.04]),
            "main:1": _group([0.0, 0.2], [0.0, 0.01]),
            "ctx:0:0": _group([0.1, -0.1], [0.01, 0.01]),  # device x image: (mobile, a), (mobile, b)
            "ctx:1:0": _group([-0.5, 0.6, 0.4, -0.3], [0.04, 0.05, 0.02, 0.03]),  # region x image: pnw a, pnw b, se a, se b
            # no ctx:1:1 (region x headline): the report has no headline effect per region
        }},
        {"half_life_s": 86400.0, "intercept": -2.9, "grid": GRID, "groups": {"main:0": _group([0.9, -0.9], [0.1, 0.1])}},
    ],
}
FIXTURE = {
    "version": 2,
    "campaign": "c",
    "updated_at": 100,
    "arms": {"cr|a.h1": [450, 6, 0, 0.0], "cr|b.h1": [700, 35, 1, 30.0], "cr|a.h2": [700, 45, 5, 250.0],
             "cr|b.h2": [50, 5, 0, 0.0], "cr": [1900, 91, 6, 280.0]},
    "splits": {"optimized": [10000, 300, 0, 0.0], "holdout": [1000, 15, 0, 0.0]},
    "contexts": CONTEXTS,
    "models": {"cr": {"click": MODEL}},
}
CAMPAIGN = campaign_from_config({"creatives": [{"id": "cr", "slots": {
    "image": [{"id": "a", "alt": "Raincoats"}, {"id": "b", "alt": "Swimwear"}],
    "headline": [{"id": "h1", "text": "Hello"}, {"id": "h2", "text": "Deals"}],
}}]})


def _component(report: dict, slot: str, context: str) -> dict:
    return next(c for c in report["components"] if c["slot"] == slot and c["context"] == context)


def _row(component: dict, variant: str) -> dict:
    return next(r for r in component["variants"] if r["variant"] == variant)


# ------------------------------------------------------------------------------------------------ counts


def test_component_counts_are_the_marginal_sums_of_the_context_rows() -> None:
    counts = component_counts(CONTEXTS, CAMPAIGN)

    assert counts[("cr", "image", "", "")] == {"a": IMAGE_A, "b": IMAGE_B}
    assert counts[("cr", "headline", "", "")] == {"h1": [1100, 40, 1, 30.0], "h2": [1450, 57, 5, 250.0]}
    assert counts[("cr", "image", "region", "pnw")] == {"a": [300, 3, 0, 0.0], "b": [300, 15, 1, 30.0]}
    assert counts[("cr", "image", "device", "mobile")] == {"a": [700, 45, 5, 250.0], "b": [700, 7, 0, 0.0]}
    assert counts[("cr", "image", "region", STL)] == {"b": [50, 5, 0, 0.0]}  # the value unescaped
    # every steered impression counts once per slot: a slot's variants sum to the rows (decay row excluded)
    total = sum(row[0] for key, row in CONTEXTS.items() if "#" not in key)
    assert sum(r[0] for r in counts[("cr", "headline", "", "")].values()) == total == 2550
    # THEN the no-context row is in no dimension's figures, and the decay row nowhere
    assert sum(r[0] for (_, s, d, _), rows in counts.items() if s == "image" and d == "region"
               for r in rows.values()) == total - 100


def test_marginal_sums_equal_per_component_counting_of_the_same_events() -> None:
    # GIVEN 2,000 steered and holdout events of a three-slot creative, with some learning dimensions absent and
    # values that need escaping, counted the way the fold does (contract.counter_keys) into ``contexts`` rows,
    # and counted directly per component (what version 1's ``comp:`` counters held for steered traffic)
    rng = np.random.default_rng(7)
    slots = {"headline": ["h1", "h2", "h3"], "image": ["i1", "i2"], "cta": ["c1", "c2", "c3", "c4"]}
    dims = {"region": ["pnw", "se", "a.b@c"], "device": ["mobile", "desktop"]}
    contexts: dict[str, list[float]] = {}
    direct: dict[tuple[str, str, str, str], dict[str, list[float]]] = {}
    for _ in range(2000):
        chosen = {slot: ids[rng.integers(len(ids))] for slot, ids in slots.items()}
        context = {d: vals[rng.integers(len(vals))] for d, vals in dims.items() if rng.random() < 0.8}
        holdout = bool(rng.random() < 0.1)
        outcome = [1, int(rng.random() < 0.1), 0, 0.0]
        arm = "cr|" + ".".join(chosen.values())
        keys = counter_keys(arm=arm, creative="cr", variants=[f"{s}={v}" for s, v in chosen.items()],
                            context=context, holdout=holdout)
        for key in keys:
            if key.startswith("ctx:"):
                row = contexts.setdefault(key[4:], [0, 0, 0, 0.0])
                row[:] = [x + y for x, y in zip(row, outcome, strict=True)]
        if holdout:
            continue
        for slot, variant in chosen.items():
            for dim, value in [("", ""), *context.items()]:
                row = direct.setdefault(("cr", slot, dim, value), {}).setdefault(variant, [0, 0, 0, 0.0])
                row[:] = [x + y for x, y in zip(row, outcome, strict=True)]

    # THEN the report's sums of the rows are those counts, in every slot and context value
    campaign = Campaign(slots={"cr": tuple((slot, frozenset(ids)) for slot, ids in slots.items())})
    assert component_counts(contexts, campaign) == direct


def test_component_rows_hand_computed() -> None:
    report = build_report(FIXTURE, campaign=CAMPAIGN, cpm=2.0)

    overall = _component(report, "image", "all")
    a, b = overall["variants"]  # sorted best first
    assert (a["variant"], b["variant"]) == ("a", "b")
    assert (a["impressions"], a["clicks"], a["conversions"]) == (1100, 50, 5)
    assert a["label"] == "Raincoats"
    assert a["ctr"] == pytest.approx(50 / 1100) and a["ctr_mean"] == pytest.approx(51 / 1102)
    assert a["cvr"] == pytest.approx(5 / 50)
    assert a["value_per_mille"] == pytest.approx(1000 * 250.0 / 1100)
    assert a["roas"] == pytest.approx(250.0 / (1100 * 2.0 / 1000))
    # P(a best) = P(CTR a > CTR b) under Beta(51, 1051) and Beta(48, 1404): normal approximation, within MC error
    (ma, va), (mb, vb) = ((s / n, s * (n - s) / (n**2 * (n + 1))) for s, n in ((51, 1102), (48, 1452)))
    assert a["p_best"] == pytest.approx(0.5 * math.erfc(-(ma - mb) / math.sqrt(2 * (va + vb))), abs=0.02)
    assert a["p_best"] + b["p_best"] == pytest.approx(1.0)
    # Beta(51, 1051) 95% interval, normal approximation as the check (n is large)
    mean, sd = 51 / 1102, math.sqrt(51 * 1051 / (1102**2 * 1103))
    assert a["ctr_low"] == pytest.approx(mean - 1.96 * sd, abs=0.002)
    assert a["ctr_high"] == pytest.approx(mean + 1.96 * sd, abs=0.002)
    pnw = _component(report, "image", "region=pnw")
    assert pnw["variants"][0]["variant"] == "b"  # b wins in pnw although a wins overall
    assert (pnw["dimension"], pnw["value"], pnw["position"]) == ("region", "pnw", 0)
    assert _component(report, "image", f"region={STL}")["variants"][0]["impressions"] == 50
    # one component per slot and context: all, device=mobile, region=pnw, region=se, region=st. louis
    assert len(report["components"]) == 2 * 5


def test_slots_are_named_by_campaign_position_or_numbered() -> None:
    seen = [{"a", "b"}, {"h1", "h2"}]

    assert slot_names("cr", seen, None) == ["slot1", "slot2"]
    assert slot_names("cr", seen, CAMPAIGN) == ["image", "headline"]
    # a config whose slots were reordered (or had one dropped, as `dco simulate` does): named by the ids
    reordered = Campaign(slots={"cr": (("headline", frozenset({"h1", "h2"})), ("offer", frozenset({"o1"})),
                                       ("image", frozenset({"a", "b", "c"})))})
    assert slot_names("cr", seen, reordered) == ["image", "headline"]
    # ids no slot holds, an unknown creative: numbered
    assert slot_names("cr", [{"a", "zz"}, {"h1"}], CAMPAIGN) == ["slot1", "headline"]
    assert slot_names("other", seen, CAMPAIGN) == ["slot1", "slot2"]
    assert [c["slot"] for c in build_report(FIXTURE)["components"]][:1] == ["slot1"]


# ------------------------------------------------------------------------------------------------ the model


def test_effects_are_the_all_evidence_memory_posterior_with_a_95_interval() -> None:
    report = build_report(FIXTURE, campaign=CAMPAIGN)

    a = _row(_component(report, "image", "all"), "a")["effects"]["click"]
    assert (a["mean"], a["var"], a["seen"]) == (0.3, 0.01, True)  # memories[0], not memories[1] (0.9)
    assert (a["low"], a["high"]) == pytest.approx((0.3 - 1.96 * 0.1, 0.3 + 1.96 * 0.1))
    # in a context value: main + interaction (ctx:1:0 at value * 2 + variant), variances added
    b_pnw = _row(_component(report, "image", "region=pnw"), "b")["effects"]["click"]
    assert b_pnw["mean"] == pytest.approx(-0.2 + 0.6) and b_pnw["var"] == pytest.approx(0.04 + 0.05)
    assert (b_pnw["low"], b_pnw["high"]) == pytest.approx((0.4 - 1.96 * 0.3, 0.4 + 1.96 * 0.3))
    assert b_pnw["interaction"]["mean"] == 0.6 and b_pnw["interaction"]["var"] == 0.05
    a_mobile = _row(_component(report, "image", "device=mobile"), "a")["effects"]["click"]
    assert a_mobile["mean"] == pytest.approx(0.3 + 0.1)
    # a value the model never met: the interaction is its group's prior (mean 0, sum(mix * grid ** 2))
    b_stl = _row(_component(report, "image", f"region={STL}"), "b")["effects"]["click"]
    assert (b_stl["mean"], b_stl["var"], b_stl["seen"]) == (-0.2, pytest.approx(0.04 + 0.125), False)
    # a group the model lacks (region x headline): no effect claimed
    assert _row(_component(report, "headline", "region=pnw"), "h1")["effects"] == {}
    assert _row(_component(report, "headline", "all"), "h2")["effects"]["click"]["mean"] == 0.2


def test_model_summary_gives_each_memory_its_weight() -> None:
    summary = build_report(FIXTURE, campaign=CAMPAIGN)["models"]["cr"]["click"]

    assert [m["weight"] for m in summary["memories"]] == pytest.approx([0.25, 0.75])
    assert [m["half_life_s"] for m in summary["memories"]] == [0.0, 86400.0]
    assert summary["slots"] == ["image", "headline"] and summary["dims"] == ["device", "region"]
    assert memory_weights({"memories": [{}, {}]}) == [0.5, 0.5]  # without log weights: equal


def test_each_objective_has_its_own_effects() -> None:
    # GIVEN a conversion model besides the click model (same layout, other effects)
    conversion = copy.deepcopy(MODEL)
    conversion["memories"][0]["groups"]["main:0"] = _group([-0.4, 0.7], [0.09, 0.16])
    obj = copy.deepcopy(FIXTURE)
    obj["models"]["cr"]["conversion"] = conversion

    effects = _row(_component(build_report(obj, campaign=CAMPAIGN), "image", "all"), "b")["effects"]

    assert effects["click"]["mean"] == -0.2
    assert effects["conversion"]["mean"] == 0.7
    assert effects["conversion"]["high"] == pytest.approx(0.7 + 1.96 * 0.4)


def test_without_a_models_section_the_counts_stand_alone() -> None:
    report = build_report({**FIXTURE, "models": {}})

    assert report["models"] == {}
    assert all(r["effects"] == {} for c in report["components"] for r in c["variants"])
    assert _row(_component(report, "slot1", "all"), "a")["impressions"] == 1100


# ------------------------------------------------------------------------------------------------ combinations


def test_combinations_per_context_value_and_ranks_elsewhere() -> None:
    report = build_report(FIXTURE, campaign=CAMPAIGN)

    assert report["combinations"]["distinct"] == 4  # from arms; "cr" is the creative's own arm
    assert report["combinations"]["meaningful"] == 2  # b.h1, a.h2; a.h1 (6/450) too uncertain, b.h2 too small
    # pnw: b.h1 (15/300: 95% width 0.050 < mean 0.053); a.h1 (3/300) is too uncertain
    # se: a.h2 (45/700) and b.h1 (20/400); b.h2 (7/700: width 0.016 > mean 0.011) is not
    assert report["combinations"]["meaningful_by_context"] == {
        "device": {"mobile": 1}, "region": {"pnw": 1, "se": 2, STL: 0}}
    pnw = report["top_by_context"]["region"]["pnw"]
    assert [e["combination"] for e in pnw] == ["cr|b.h1"]
    assert pnw[0]["slots"] == "image=b headline=h1"
    assert pnw[0]["impressions"] == 300 and pnw[0]["ctr_mean"] == pytest.approx(16 / 302)
    assert pnw[0]["rank_elsewhere"] == {"se": 2, STL: None}  # best in pnw, second in se
    assert [e["combination"] for e in report["top_by_context"]["region"]["se"]] == ["cr|a.h2", "cr|b.h1"]


def test_lift_vs_holdout() -> None:
    lift = build_report(FIXTURE)["lift"]

    assert lift["lift"] == pytest.approx(0.03 / 0.015 - 1)
    se = math.sqrt(0.97 / 300 + 0.985 / 15)
    assert lift["ci_high"] == pytest.approx(2 * math.exp(1.959963984540054 * se) - 1)


def test_probability_to_be_best_is_symmetric_for_equal_posteriors() -> None:
    out = beta_summary([10, 10], [100, 100], np.random.default_rng(1), draws=20000)

    assert out["p_best"][0] == pytest.approx(0.5, abs=0.02)


# ------------------------------------------------------------------------------------------------ HTML


def test_html_embeds_plots_and_escapes_every_string_from_the_stats_and_the_campaign() -> None:
    # GIVEN a context value, a variant label and a campaign name that are markup
    value, label = "<script>alert(1)</script>", "<img src=x onerror=alert(2)>"
    obj = copy.deepcopy(FIXTURE)
    obj["campaign"] = "<b>c</b>"
    obj["contexts"][f"cr|a.h1@region={escape_value(value)}"] = [80, 4, 0, 0.0]
    campaign = campaign_from_config({"creatives": [{"id": "cr", "slots": {
        "image": [{"id": "a", "alt": label}, {"id": "b"}], "headline": [{"id": "h1"}, {"id": "h2"}]}}]})

    page = render_html(build_report(obj, campaign=campaign))

    assert page.startswith("<!doctype html>") and "Lift vs holdout" in page
    assert len(page.split("data:image/png;base64,")) - 1 >= 5  # CTR and effects per slot, heatmaps, lift
    assert "<script>" not in page and "<img src=x" not in page and "<b>c</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "model effect by region" in page and "all evidence 25.0%" in page


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda o: o.update(version=3), "stats version 3"),
        (lambda o: o["contexts"].update({"cr|a.h1@region=pnw": [300, -3, 0, 0.0]}), "contexts['cr|a.h1@region=pnw']"),
        (lambda o: o["models"]["cr"]["click"]["memories"][0]["groups"]["main:0"].update(var=[0.01]),
         "models['cr']['click'].memories[0].groups['main:0'].var"),
    ],
)
def test_an_object_that_does_not_validate_is_refused_naming_the_problem(damage, named, tmp_path, capsys) -> None:
    obj = copy.deepcopy(FIXTURE)
    damage(obj)
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(obj))

    with pytest.raises(ValueError) as caught:
        build_report(obj)
    code = main(["report", "--stats", str(path)])

    assert named in str(caught.value)
    assert code == 2
    err = capsys.readouterr().err
    assert str(path) in err and named in err


def test_unreadable_files_exit_2(tmp_path, capsys) -> None:
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not a stats object")
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps(FIXTURE))

    assert main(["report", "--stats", str(garbage)]) == 2
    assert "neither JSON nor msgpack" in capsys.readouterr().err
    assert main(["report", "--stats", str(tmp_path / "missing.json")]) == 2
    assert main(["report", "--stats", str(stats), "--campaign", str(garbage)]) == 2
    assert str(garbage) in capsys.readouterr().err


def test_cli_writes_the_report_with_slot_names_from_the_campaign(tmp_path, capsys) -> None:
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps(FIXTURE))
    config = tmp_path / "campaign.json"
    config.write_text(json.dumps({"creatives": [{"id": "cr", "slots": {
        "image": [{"id": "a"}, {"id": "b"}], "headline": [{"id": "h1"}, {"id": "h2"}]}}]}))

    assert main(["report", "--stats", str(stats), "--campaign", str(config), "--out", str(tmp_path / "out")]) == 0

    out = capsys.readouterr().out
    assert "cr/image: best a" in out and "effect +0.30" in out and "memory weights 25%, 75%" in out
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {c["slot"] for c in written["components"]} == {"image", "headline"}
    assert (tmp_path / "out" / "report.html").read_text().startswith("<!doctype html>")


def test_a_version_1_object_reports_combinations_and_says_its_components_are_not_read() -> None:
    v1 = {"version": 1, "campaign": "c", "updated_at": 1, "arms": FIXTURE["arms"], "splits": FIXTURE["splits"],
          "components": {"cr|image=a": [1000, 50, 5, 250.0]}}

    report = build_report(v1)

    assert report["components"] == [] and report["combinations"]["distinct"] == 4
    assert report["notes"] and "version 1" in report["notes"][0]
