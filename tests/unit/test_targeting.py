"""Tier 1 targeting: compiled indexes, additive scoring, else/tag branches, and the direct evaluator as oracle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgpack
import pytest
from dco.campaign import (
    AdTheme,
    Campaign,
    DateRange,
    DeviceRule,
    Experience,
    GeoRule,
    Rules,
    ScheduleRule,
    SegmentRule,
    TreeNode,
    WeeklyWindow,
)
from dco.errors import ConfigError, RequestError
from dco.targeting import (
    DEFAULT_WEIGHTS,
    Targeting,
    TargetingResult,
    compile_targeting,
    rules_match,
    weight_of,
    window_hours,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NOW = datetime(2026, 6, 10, 15, 30, tzinfo=UTC)  # a Wednesday; 08:30 in Los Angeles, 11:30 in New York
NY = "America/New_York"


def leaf(name: str, theme: str, rules: Rules | None = None) -> TreeNode:
    return TreeNode(name=name, rules=rules or Rules(), theme=theme)


def branch(name: str, rules: Rules, *children: TreeNode) -> TreeNode:
    return TreeNode(name=name, rules=rules, children=children)


def campaign(
    *tree: TreeNode,
    else_theme: str | None = "else",
    themes: dict[str, float] | None = None,
    scoring: dict[str, float] | None = None,
    timezone: str = "UTC",
    extra: tuple[Experience, ...] = (),
) -> Campaign:
    names = {"else", "a", "b", "c", "d"} | set(themes or {})
    weights = themes or {}
    return Campaign(
        id="c1",
        name="test",
        timezone=timezone,
        objective="click",
        holdout=0.0,
        default_creative=None,
        experiences=(
            Experience(id="exp", sizes=("300x250",), formats=("html",), targeting="tree", tree=tree,
                       else_theme=else_theme),
            *extra,
        ),
        themes={n: AdTheme(id=n, group="g", weight=weights.get(n, 0.0)) for n in sorted(names)},
        groups={},
        creatives={},
        scoring=scoring or {},
    )


def targeting_for(c: Campaign) -> Targeting:
    return Targeting.from_compiled(compile_targeting(c), c.timezone)


def select(
    c: Campaign,
    signals: dict[str, str] | None = None,
    segments: frozenset[str] = frozenset(),
    now: datetime = NOW,
    tag: str | None = None,
    exp: str = "exp",
) -> TargetingResult | None:
    return targeting_for(c).select(exp, signals or {}, segments, now, tag)


def theme_of(result: TargetingResult | None) -> str | None:
    return None if result is None else result.theme


# ---------------------------------------------------------------------------------------------------------------
# Every rule type


@pytest.mark.parametrize("field", ["country", "region", "city", "postal", "dma"])
def test_geo_fields(field: str) -> None:
    value = "US" if field == "country" else "x1"
    c = campaign(leaf("n", "a", Rules(geo=GeoRule(**{field: (value, "other")}))))
    assert theme_of(select(c, {f"geo.{field}": value})) == "a"
    assert theme_of(select(c, {f"geo.{field}": "nope"})) == "else"


@pytest.mark.parametrize("field", ["type", "browser", "os"])
def test_device_fields(field: str) -> None:
    c = campaign(leaf("n", "a", Rules(device=DeviceRule(**{field: ("mobile",)}))))
    assert theme_of(select(c, {f"device.{field}": "mobile"})) == "a"
    assert theme_of(select(c, {f"device.{field}": "desktop"})) == "else"


@pytest.mark.parametrize("key", ["t1", "t2", "t3", "t4", "t5"])
def test_data_pass_keys(key: str) -> None:
    c = campaign(leaf("n", "a", Rules(data={key: ("shoes",)})))
    assert theme_of(select(c, {key: "shoes"})) == "a"
    assert theme_of(select(c, {key: "hats"})) == "else"


@pytest.mark.parametrize("key", ["ut1", "ut2", "ut3", "ut4", "ut5"])
def test_profile_keys(key: str) -> None:
    c = campaign(leaf("n", "a", Rules(profile={key: ("gold",)})))
    assert theme_of(select(c, {key: "gold"})) == "a"
    assert theme_of(select(c, {key: "silver"})) == "else"


def test_context_keys() -> None:
    c = campaign(leaf("n", "a", Rules(context={"weather": ("cold",), "page_category": ("ski", "snow")})))
    assert theme_of(select(c, {"context.weather": "cold", "context.page_category": "snow"})) == "a"
    assert theme_of(select(c, {"context.weather": "cold", "context.page_category": "beach"})) == "else"
    assert theme_of(select(c, {"context.weather": "cold"})) == "else"


def test_rule_values_are_normalised_like_signals() -> None:
    c = campaign(leaf("n", "a", Rules(geo=GeoRule(country=("us",), city=("Seattle",)))))
    assert theme_of(select(c, {"geo.country": "US", "geo.city": "seattle"})) == "a"


@pytest.mark.parametrize(
    ("rule", "segments", "expected"),
    [
        (SegmentRule(any=("s1", "s2")), {"s2"}, "a"),
        (SegmentRule(any=("s1", "s2")), {"s3"}, "else"),
        (SegmentRule(any=("s1", "s2")), set(), "else"),
        (SegmentRule(all=("s1", "s2")), {"s1", "s2", "s3"}, "a"),
        (SegmentRule(all=("s1", "s2")), {"s1"}, "else"),
        (SegmentRule(exclude=("s9",)), {"s1"}, "a"),
        (SegmentRule(exclude=("s9",)), set(), "a"),
        (SegmentRule(exclude=("s9",)), {"s1", "s9"}, "else"),
        (SegmentRule(any=("s1",), all=("s2",), exclude=("s3",)), {"s1", "s2"}, "a"),
        (SegmentRule(any=("s1",), all=("s2",), exclude=("s3",)), {"s1", "s2", "s3"}, "else"),
    ],
)
def test_segments(rule: SegmentRule, segments: set[str], expected: str) -> None:
    c = campaign(leaf("n", "a", Rules(segments=rule)))
    assert theme_of(select(c, segments=frozenset(segments))) == expected


def test_segments_any_with_many_request_segments() -> None:
    # GIVEN more request segments than indexed ones (the select loop walks the index instead)
    c = campaign(leaf("n", "a", Rules(segments=SegmentRule(any=("s1",)))))
    many = frozenset(f"x{i}" for i in range(20))
    assert theme_of(select(c, segments=many | {"s1"})) == "a"
    assert theme_of(select(c, segments=many)) == "else"


def test_schedule_range_in_campaign_time_zone() -> None:
    # GIVEN a range in New York local time: 2026-12-01 00:00 (= 05:00 UTC) to 2026-12-02 00:00
    rules = Rules(schedule=ScheduleRule(ranges=(DateRange("2026-12-01T00:00", "2026-12-02T00:00"),)))
    c = campaign(leaf("n", "a", rules), timezone=NY)
    assert theme_of(select(c, now=datetime(2026, 12, 1, 4, 59, tzinfo=UTC))) == "else"
    assert theme_of(select(c, now=datetime(2026, 12, 1, 5, 0, tzinfo=UTC))) == "a"  # start inclusive
    assert theme_of(select(c, now=datetime(2026, 12, 2, 4, 59, tzinfo=UTC))) == "a"
    assert theme_of(select(c, now=datetime(2026, 12, 2, 5, 0, tzinfo=UTC))) == "else"  # end exclusive


def test_schedule_open_ended_ranges_and_any_of() -> None:
    rules = Rules(schedule=ScheduleRule(ranges=(DateRange(None, "2026-01-01"), DateRange("2026-06-01", None))))
    c = campaign(leaf("n", "a", rules))
    assert theme_of(select(c, now=datetime(2025, 12, 31, 23, tzinfo=UTC))) == "a"
    assert theme_of(select(c, now=datetime(2026, 3, 1, tzinfo=UTC))) == "else"
    assert theme_of(select(c, now=datetime(2026, 6, 1, tzinfo=UTC))) == "a"


def test_schedule_range_across_dst_change() -> None:
    # GIVEN New York springs forward on 2026-03-08 (02:00 EST -> 03:00 EDT)
    rules = Rules(schedule=ScheduleRule(ranges=(DateRange("2026-03-08T03:00", None),)))
    c = campaign(leaf("n", "a", rules), timezone=NY)
    # 06:59 UTC is 01:59 EST, 07:00 UTC is 03:00 EDT: local wall clock jumps across the start
    assert theme_of(select(c, now=datetime(2026, 3, 8, 6, 59, tzinfo=UTC))) == "else"
    assert theme_of(select(c, now=datetime(2026, 3, 8, 7, 0, tzinfo=UTC))) == "a"


def test_weekly_window_end_hour_is_exclusive() -> None:
    rules = Rules(schedule=ScheduleRule(windows=(WeeklyWindow(days=(2,), start_hour=9, end_hour=17),)))
    c = campaign(leaf("n", "a", rules))  # Wednesday in UTC
    assert theme_of(select(c, now=datetime(2026, 6, 10, 9, 0, tzinfo=UTC))) == "a"
    assert theme_of(select(c, now=datetime(2026, 6, 10, 16, 59, tzinfo=UTC))) == "a"
    assert theme_of(select(c, now=datetime(2026, 6, 10, 17, 0, tzinfo=UTC))) == "else"
    assert theme_of(select(c, now=datetime(2026, 6, 10, 8, 59, tzinfo=UTC))) == "else"
    assert theme_of(select(c, now=datetime(2026, 6, 11, 10, 0, tzinfo=UTC))) == "else"  # Thursday


def test_weekly_window_uses_local_weekday_and_hour() -> None:
    # GIVEN Monday 20:00-24:00 in Los Angeles; Tuesday 03:30 UTC is Monday 20:30 PDT
    rules = Rules(schedule=ScheduleRule(windows=(WeeklyWindow(days=(0,), start_hour=20, end_hour=24),)))
    c = campaign(leaf("n", "a", rules), timezone="America/Los_Angeles")
    assert theme_of(select(c, now=datetime(2026, 6, 9, 3, 30, tzinfo=UTC))) == "a"
    assert theme_of(select(c, now=datetime(2026, 6, 8, 20, 30, tzinfo=UTC))) == "else"  # 13:30 PDT


def test_overnight_window_wraps_to_the_next_day() -> None:
    window = WeeklyWindow(days=(6,), start_hour=22, end_hour=2)  # Sunday 22:00 -> Monday 02:00
    assert window_hours(window) == {166, 167, 0, 1}
    c = campaign(leaf("n", "a", Rules(schedule=ScheduleRule(windows=(window,)))))
    assert theme_of(select(c, now=datetime(2026, 6, 14, 23, tzinfo=UTC))) == "a"  # Sunday 23:00
    assert theme_of(select(c, now=datetime(2026, 6, 15, 1, tzinfo=UTC))) == "a"  # Monday 01:00
    assert theme_of(select(c, now=datetime(2026, 6, 15, 2, tzinfo=UTC))) == "else"


def test_window_on_dst_days() -> None:
    # Spring forward: the 02:00 hour does not exist on 2026-03-08 in New York; fall back: 01:00 happens twice.
    two_am = Rules(schedule=ScheduleRule(windows=(WeeklyWindow(days=(6,), start_hour=2, end_hour=3),)))
    one_am = Rules(schedule=ScheduleRule(windows=(WeeklyWindow(days=(6,), start_hour=1, end_hour=2),)))
    spring = targeting_for(campaign(leaf("n", "a", two_am), timezone=NY))
    fall = targeting_for(campaign(leaf("n", "a", one_am), timezone=NY))
    start = datetime(2026, 3, 8, 0, tzinfo=UTC)
    spring_hits = [h for h in range(24) if spring.select("exp", {}, frozenset(), start + timedelta(hours=h)).matched]
    assert spring_hits == []
    start = datetime(2026, 11, 1, 0, tzinfo=UTC)
    fall_hits = [h for h in range(24) if fall.select("exp", {}, frozenset(), start + timedelta(hours=h)).matched]
    assert fall_hits == [5, 6]  # 01:00 EDT and 01:00 EST


def test_schedule_ranges_and_windows_both_required() -> None:
    rules = Rules(schedule=ScheduleRule(
        ranges=(DateRange("2026-06-01", "2026-07-01"),),
        windows=(WeeklyWindow(days=(0, 1, 2, 3, 4), start_hour=9, end_hour=18),),
    ))
    c = campaign(leaf("n", "a", rules))
    assert theme_of(select(c, now=datetime(2026, 6, 10, 10, tzinfo=UTC))) == "a"
    assert theme_of(select(c, now=datetime(2026, 6, 13, 10, tzinfo=UTC))) == "else"  # Saturday
    assert theme_of(select(c, now=datetime(2026, 7, 1, 10, tzinfo=UTC))) == "else"  # out of range


def test_naive_now_is_rejected_when_a_schedule_needs_local_time() -> None:
    rules = Rules(schedule=ScheduleRule(windows=(WeeklyWindow(),)))
    with pytest.raises(ValueError):
        select(campaign(leaf("n", "a", rules)), now=datetime(2026, 6, 10, 10))


def test_bad_range_is_a_config_error() -> None:
    rules = Rules(schedule=ScheduleRule(ranges=(DateRange("next tuesday", None),)))
    with pytest.raises(ConfigError):
        compile_targeting(campaign(leaf("n", "a", rules)))


# ---------------------------------------------------------------------------------------------------------------
# Tree semantics


def test_nested_rules_are_anded_and_same_dimension_intersects() -> None:
    # GIVEN a parent accepting wa/or/ca and a child accepting or/ca/nv: the path accepts or/ca
    tree = branch(
        "west", Rules(geo=GeoRule(region=("wa", "or", "ca"))),
        leaf("south", "a", Rules(geo=GeoRule(region=("or", "ca", "nv")), device=DeviceRule(type=("mobile",)))),
    )
    c = campaign(tree)
    assert theme_of(select(c, {"geo.region": "ca", "device.type": "mobile"})) == "a"
    assert theme_of(select(c, {"geo.region": "wa", "device.type": "mobile"})) == "else"
    assert theme_of(select(c, {"geo.region": "nv", "device.type": "mobile"})) == "else"
    assert theme_of(select(c, {"geo.region": "ca", "device.type": "desktop"})) == "else"
    path = compile_targeting(c)["experiences"]["exp"]["index"]["geo.region"]
    assert path == {"unconstrained": [], "values": {"ca": [0], "or": [0]}}


def test_disjoint_nested_values_never_match() -> None:
    tree = branch("x", Rules(data={"t1": ("a",)}), leaf("y", "a", Rules(data={"t1": ("b",)})))
    c = campaign(tree)
    assert theme_of(select(c, {"t1": "a"})) == "else"
    assert theme_of(select(c, {"t1": "b"})) == "else"


def test_nested_segment_any_groups_are_anded_not_intersected() -> None:
    tree = branch(
        "p", Rules(segments=SegmentRule(any=("s1", "s2"))),
        leaf("q", "a", Rules(segments=SegmentRule(any=("s2", "s3")))),
    )
    c = campaign(tree)
    assert theme_of(select(c, segments=frozenset({"s1", "s3"}))) == "a"
    assert theme_of(select(c, segments=frozenset({"s2"}))) == "a"
    assert theme_of(select(c, segments=frozenset({"s1"}))) == "else"


def test_more_specific_path_beats_less_specific() -> None:
    c = campaign(
        leaf("country", "a", Rules(geo=GeoRule(country=("US",)))),
        leaf("city", "b", Rules(geo=GeoRule(city=("seattle",)))),
    )
    result = select(c, {"geo.country": "US", "geo.city": "seattle"})
    assert result is not None
    assert (result.theme, result.path, result.score) == ("b", 1, DEFAULT_WEIGHTS["geo.city"])
    assert result.candidates == 2
    assert result.scores == (("b", 6.0), ("a", 2.0))
    assert result.matched_rules == ("geo.city=seattle",)
    assert result.nodes == ("city",)
    assert result.branch == "tree" and result.matched


def test_theme_weight_adds_to_the_score() -> None:
    c = campaign(
        leaf("country", "a", Rules(geo=GeoRule(country=("US",)))),
        leaf("city", "b", Rules(geo=GeoRule(city=("seattle",)))),
        themes={"a": 10.0},
    )
    result = select(c, {"geo.country": "US", "geo.city": "seattle"})
    assert result is not None
    assert (result.theme, result.score) == ("a", 12.0)


def test_scoring_overrides_by_dimension_and_family() -> None:
    c = campaign(
        leaf("t1", "a", Rules(data={"t1": ("x",)})),
        leaf("t2", "b", Rules(data={"t2": ("y",)})),
        scoring={"data": 1.0, "t2": 9.0},
    )
    compiled = compile_targeting(c)
    assert [p["score"] for p in compiled["experiences"]["exp"]["paths"]] == [1.0, 9.0]
    assert theme_of(select(c, {"t1": "x", "t2": "y"})) == "b"
    assert weight_of("context.weather", DEFAULT_WEIGHTS) == 2.0
    assert weight_of("ut4", DEFAULT_WEIGHTS) == 3.0


def test_score_counts_each_dimension_once_across_nodes() -> None:
    tree = branch("p", Rules(geo=GeoRule(region=("wa", "or"))), leaf("q", "a", Rules(geo=GeoRule(region=("wa",)))))
    assert compile_targeting(campaign(tree))["experiences"]["exp"]["paths"][0]["score"] == 4.0


def test_ties_go_to_the_earlier_path() -> None:
    c = campaign(
        leaf("first", "a", Rules(device=DeviceRule(type=("mobile",)))),
        leaf("second", "b", Rules(device=DeviceRule(os=("ios",)))),
    )
    result = select(c, {"device.type": "mobile", "device.os": "ios"})
    assert result is not None and (result.theme, result.path) == ("a", 0)
    c2 = campaign(
        leaf("first", "b", Rules(device=DeviceRule(os=("ios",)))),
        leaf("second", "a", Rules(device=DeviceRule(type=("mobile",)))),
    )
    result2 = select(c2, {"device.type": "mobile", "device.os": "ios"})
    assert result2 is not None and (result2.theme, result2.path) == ("b", 0)


def test_else_branch_when_nothing_matches() -> None:
    c = campaign(leaf("n", "a", Rules(geo=GeoRule(country=("CA",)))), themes={"else": 0.5})
    assert select(c, {"geo.country": "US"}) == TargetingResult("else", None, 0.5, "else")
    assert not select(c, {"geo.country": "US"}).matched  # type: ignore[union-attr]


def test_no_match_and_no_else_gives_none() -> None:
    c = campaign(leaf("n", "a", Rules(geo=GeoRule(country=("CA",)))), else_theme=None)
    assert select(c, {"geo.country": "US"}) is None


def test_empty_tree_serves_else() -> None:
    assert theme_of(select(campaign())) == "else"
    assert select(campaign(else_theme=None)) is None


def test_catch_all_leaf_matches_everything() -> None:
    c = campaign(leaf("ca", "a", Rules(geo=GeoRule(region=("ca",)))), leaf("all", "b"))
    assert theme_of(select(c, {"geo.region": "ca"})) == "a"
    assert theme_of(select(c, {})) == "b"


def test_missing_signal_only_unconstrained_paths_survive() -> None:
    c = campaign(
        leaf("geo", "a", Rules(geo=GeoRule(region=("wa",)))),
        leaf("device", "b", Rules(device=DeviceRule(type=("mobile",)))),
    )
    assert theme_of(select(c, {"device.type": "mobile"})) == "b"
    assert theme_of(select(c, {})) == "else"


def test_matched_rules_explain_segments_and_schedule() -> None:
    rules = Rules(
        geo=GeoRule(region=("wa",)),
        segments=SegmentRule(any=("s1", "s2"), all=("s3",), exclude=("s9",)),
        schedule=ScheduleRule(windows=(WeeklyWindow(days=(2,), start_hour=9, end_hour=17),)),
    )
    result = select(campaign(branch("root", Rules(), leaf("n", "a", rules))), {"geo.region": "wa"},
                    frozenset({"s2", "s3"}))
    assert result is not None
    assert result.matched_rules == (
        "geo.region=wa", "segments.any=s2", "segments.all=s3", "segments.exclude=s9", "schedule.window=Wed 15h",
    )
    assert result.nodes == ("root", "n")
    assert result.score == 4.0 + 3.0 + 1.0


def test_leaf_without_theme_and_unknown_theme_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        compile_targeting(campaign(TreeNode(name="n", rules=Rules())))
    with pytest.raises(ConfigError):
        compile_targeting(campaign(leaf("n", "nope")))


def test_unknown_experience_is_a_request_error() -> None:
    with pytest.raises(RequestError) as info:
        select(campaign(), exp="missing")
    assert info.value.param == "exp"


# ---------------------------------------------------------------------------------------------------------------
# Tag experiences


def tag_campaign(else_theme: str | None) -> Campaign:
    tags = Experience(id="tagged", sizes=("728x90",), formats=("html",), targeting="tag",
                      tags={"4": "a", "promo": "b"}, else_theme=else_theme)
    return campaign(extra=(tags,), themes={"a": 2.0})


def test_tag_experience_direct_lookup() -> None:
    c = tag_campaign("else")
    result = select(c, tag="4", exp="tagged")
    assert result == TargetingResult("a", None, 2.0, "tag", ("tag=4",), 1, (("a", 2.0),))
    assert theme_of(select(c, tag="PROMO", exp="tagged")) == "b"
    assert theme_of(select(c, tag="9", exp="tagged")) == "else"
    assert theme_of(select(c, exp="tagged")) == "else"


def test_tag_experience_without_else() -> None:
    c = tag_campaign(None)
    assert select(c, tag="9", exp="tagged") is None
    assert select(c, exp="tagged") is None


# ---------------------------------------------------------------------------------------------------------------
# Compiled form


def retail_campaign() -> Campaign:
    """A retail-like tree: 8 nodes, geo/device/data/profile/context/segments/schedule dimensions."""
    weekday_hours = ScheduleRule(windows=(WeeklyWindow(days=(0, 1, 2, 3, 4), start_hour=7, end_hour=22),))
    tree = (
        branch(
            "us", Rules(geo=GeoRule(country=("US",))),
            branch(
                "west", Rules(geo=GeoRule(region=("wa", "or", "ca"))),
                leaf("seattle mobile", "a", Rules(geo=GeoRule(city=("seattle",), dma=("819",)),
                                                   device=DeviceRule(type=("mobile",), os=("ios", "android")))),
                leaf("west shoppers", "b", Rules(segments=SegmentRule(any=("shopper", "deal"), exclude=("churn",)),
                                                  data={"t1": ("shoes", "boots")}, schedule=weekday_hours)),
            ),
            leaf("cold weather", "c", Rules(context={"weather": ("cold", "snow")}, profile={"ut1": ("gold",)},
                                            device=DeviceRule(browser=("chrome", "safari")))),
        ),
        leaf("postal promo", "d", Rules(geo=GeoRule(postal=("98101", "98102")), data={"t2": ("promo",)})),
        leaf("ca", "a", Rules(geo=GeoRule(country=("CA",)))),
    )
    return campaign(*tree, themes={"a": 1.0, "b": 2.0, "c": 0.5}, timezone="America/Los_Angeles")


RETAIL_SIGNALS = {
    "geo.country": "US", "geo.region": "wa", "geo.city": "seattle", "geo.postal": "98101", "geo.dma": "819",
    "device.type": "mobile", "device.browser": "safari", "device.os": "ios", "t1": "shoes", "t2": "promo",
    "ut1": "gold", "context.weather": "cold",
}


def test_retail_tree_picks_the_most_specific_path() -> None:
    result = select(retail_campaign(), RETAIL_SIGNALS, frozenset({"shopper"}))
    assert result is not None
    assert (result.theme, result.path, result.nodes) == ("a", 0, ("us", "west", "seattle mobile"))
    assert result.candidates == 4  # all but "ca"
    assert result.score == 1.0 + 2 + 4 + 6 + 5 + 2 + 2
    assert result.scores[0] == ("a", 22.0)


def test_compiled_form_is_msgpack_round_trippable_and_deterministic() -> None:
    c = retail_campaign()
    compiled = compile_targeting(c)
    packed = msgpack.packb(compiled)
    assert msgpack.packb(compile_targeting(retail_campaign())) == packed
    unpacked = msgpack.unpackb(packed)
    assert unpacked == compiled
    reloaded = Targeting.from_compiled(unpacked, c.timezone)
    direct = Targeting.from_compiled(compiled, c.timezone)
    for segments in (frozenset(), frozenset({"shopper"})):
        assert reloaded.select("exp", RETAIL_SIGNALS, segments, NOW) == direct.select(
            "exp", RETAIL_SIGNALS, segments, NOW)
    assert compiled["version"] == 1
    assert list(compiled) == sorted(compiled)


def test_experience_ids() -> None:
    assert set(targeting_for(tag_campaign("else")).experience_ids) == {"exp", "tagged"}


# ---------------------------------------------------------------------------------------------------------------
# The oracle: indexed select == brute force over rules_match


ALPHABET = {
    "geo.country": ("US", "CA"),
    "geo.region": ("wa", "or", "ca"),
    "geo.city": ("seattle", "portland"),
    "device.type": ("mobile", "desktop"),
    "device.os": ("ios", "android"),
    "t1": ("x", "y"),
    "ut2": ("gold", "silver"),
    "context.weather": ("cold", "hot"),
}
SEGMENTS = ("s1", "s2", "s3", "s4")
ZONES = ("UTC", NY, "Australia/Lord_Howe")
RANGE_POINTS = [None, "2026-03-07T12:00", "2026-03-08T01:30", "2026-03-08T02:30", "2026-03-08T03:00",
                "2026-03-09T00:00", "2026-11-01T01:30", "2026-11-01T02:00", "2026-11-02", "2026-04-05T01:45",
                "2026-10-04T02:15"]


def _values(dim: str) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(ALPHABET[dim]), max_size=2, unique=True).map(tuple)


def _sometimes(draw: st.DrawFn, strategy: st.SearchStrategy, default: object = ()) -> object:
    """Most rules leave most dimensions alone, so that matches (and ties) are common."""
    return draw(strategy) if draw(st.integers(0, 3)) == 0 else default


@st.composite
def rules_strategy(draw: st.DrawFn) -> Rules:
    dims = draw(st.lists(st.sampled_from(sorted(ALPHABET)), max_size=2, unique=True))
    chosen = {d: draw(_values(d)) for d in dims}
    segment_list = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=2, unique=True).map(tuple)
    seg = SegmentRule(
        any=_sometimes(draw, segment_list),  # type: ignore[arg-type]
        all=_sometimes(draw, segment_list),  # type: ignore[arg-type]
        exclude=_sometimes(draw, segment_list),  # type: ignore[arg-type]
    )
    window = st.builds(
        WeeklyWindow,
        days=st.lists(st.integers(0, 6), min_size=1, max_size=5, unique=True).map(tuple),
        start_hour=st.integers(0, 23),
        end_hour=st.integers(0, 24),
    )
    windows = _sometimes(draw, st.lists(window, min_size=1, max_size=2).map(tuple))
    date_range = st.builds(DateRange, st.sampled_from(RANGE_POINTS), st.sampled_from(RANGE_POINTS))
    ranges = _sometimes(draw, st.lists(date_range, min_size=1, max_size=2).map(tuple))
    return Rules(
        geo=GeoRule(**{d[4:]: v for d, v in chosen.items() if d.startswith("geo.")}),
        device=DeviceRule(**{d[7:]: v for d, v in chosen.items() if d.startswith("device.")}),
        data={d: v for d, v in chosen.items() if d == "t1"},
        profile={d: v for d, v in chosen.items() if d == "ut2"},
        context={d[8:]: v for d, v in chosen.items() if d.startswith("context.")},
        segments=seg,
        schedule=ScheduleRule(ranges=ranges, windows=windows),  # type: ignore[arg-type]
    )


def tree_strategy(depth: int = 0) -> st.SearchStrategy[TreeNode]:
    themes = st.sampled_from(("a", "b", "c", "d"))
    leaf_s = st.builds(lambda r, t: TreeNode(name="leaf", rules=r, theme=t), rules_strategy(), themes)
    if depth >= 2:
        return leaf_s
    inner = st.builds(
        lambda r, kids: TreeNode(name="inner", rules=r, children=tuple(kids)),
        rules_strategy(), st.lists(tree_strategy(depth + 1), min_size=1, max_size=3),
    )
    return st.one_of(leaf_s, inner)


@st.composite
def request_strategy(draw: st.DrawFn) -> tuple[dict[str, str], frozenset[str], datetime]:
    signals = {}
    for dim, values in ALPHABET.items():
        value = draw(st.sampled_from((None, *values, *values, "zz")))
        if value is not None:
            signals[dim] = value
    segments = frozenset(draw(st.lists(st.sampled_from(SEGMENTS), max_size=4, unique=True)))
    # around the New York (2026-03-08, 2026-11-01) and Lord Howe (+10:30/+11, 2026-04-05, 2026-10-04) changes
    starts = (datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC),
              datetime(2026, 4, 4, tzinfo=UTC), datetime(2026, 10, 3, tzinfo=UTC))
    now = draw(st.sampled_from(starts)) + timedelta(minutes=15 * draw(st.integers(0, 4 * 96)))
    return signals, segments, now


def oracle_paths(nodes: tuple[TreeNode, ...], prefix: tuple[TreeNode, ...] = ()) -> list[tuple[TreeNode, ...]]:
    out: list[tuple[TreeNode, ...]] = []
    for node in nodes:
        if node.children:
            out.extend(oracle_paths(node.children, (*prefix, node)))
        else:
            out.append((*prefix, node))
    return out


def oracle_score(path: tuple[TreeNode, ...], theme_weight: float) -> float:
    dims: set[str] = set()
    for node in path:
        r = node.rules
        dims |= {f"geo.{f}" for f in ("country", "region", "city", "postal", "dma") if getattr(r.geo, f)}
        dims |= {f"device.{f}" for f in ("type", "browser", "os") if getattr(r.device, f)}
        dims |= {k for k, v in (*r.data.items(), *r.profile.items()) if v}
        dims |= {f"context.{k}" for k, v in r.context.items() if v}
        if r.segments.any or r.segments.all:
            dims.add("segments")
        if r.schedule.ranges or r.schedule.windows:
            dims.add("schedule")
    return theme_weight + sum(weight_of(d, DEFAULT_WEIGHTS) for d in dims)


THEME_WEIGHTS = {"a": 0.0, "b": 1.0, "c": 3.0, "d": 0.0}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tree=st.lists(tree_strategy(), max_size=4),
    requests=st.lists(request_strategy(), min_size=1, max_size=5),
    zone=st.sampled_from(ZONES),
    has_else=st.booleans(),
)
def test_indexed_select_matches_the_direct_oracle(
    tree: list[TreeNode], requests: list[tuple[dict[str, str], frozenset[str], datetime]], zone: str, has_else: bool
) -> None:
    c = campaign(*tree, themes=THEME_WEIGHTS, timezone=zone, else_theme="else" if has_else else None)
    targeting = Targeting.from_compiled(msgpack.unpackb(msgpack.packb(compile_targeting(c))), zone)
    paths = oracle_paths(tuple(tree))
    for signals, segments, now in requests:
        local = now.astimezone(ZoneInfo(zone))
        matching = [
            (oracle_score(p, THEME_WEIGHTS[p[-1].theme or ""]), i)
            for i, p in enumerate(paths)
            if all(rules_match(n.rules, signals, segments, local) for n in p)
        ]
        result = targeting.select("exp", signals, segments, now)
        if not matching:
            assert result == (TargetingResult("else", None, 0.0, "else") if has_else else None)
            continue
        best_score, best = max(matching, key=lambda si: (si[0], -si[1]))
        assert result is not None
        assert (result.path, result.theme, result.score) == (best, paths[best][-1].theme, best_score)
        assert result.candidates == len(matching)
        assert result.branch == "tree"
