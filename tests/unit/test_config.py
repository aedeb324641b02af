"""Campaign config loader: the retail example, JSON = YAML, normalisation, and a table of bad configs.

Each bad config is the valid BASE config with one change; the test asserts the exact path of the first error
and a fragment of its message, so the error a user sees stays precise.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from dco.campaign import DateRange, WeeklyWindow
from dco.codes import COUNTRY_CODES, CURRENCY_CODES
from dco.config import campaign_from_dict, load_campaign, parse_config_text, validate_campaign
from dco.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
RETAIL = ROOT / "examples" / "retail" / "campaign.yaml"
REGIONS = ("pnw", "northeast", "southeast", "midwest", "southwest", "california")

BASE: dict[str, Any] = {
    "id": "test-campaign",
    "name": "Test",
    "timezone": "America/Los_Angeles",
    "objective": "click",
    "holdout": 0.1,
    "currency": "usd",
    "default_creative": "cr-house",
    "prior": [1, 1],
    "scoring": {"geo.postal": 8, "t1": 4, "context.weather": 3},
    "feed": {
        "columns": {"category": "product_type"},
        "indexes": ["category", "brand", "availability", "country", "custom_label_0"],
        "max_bad_share": 0.05,
        "max_field_bytes": 4096,
    },
    "experiences": [
        {
            "id": "exp-main",
            "sizes": ["300x250", "728x90"],
            "formats": ["html", "js", "json"],
            "targeting": "tree",
            "tree": [
                {
                    "name": "us",
                    "rules": {"geo": {"country": ["us"]}},
                    "children": [
                        {
                            "name": "pnw",
                            "rules": {
                                "geo": {"region": ["WA", "or"], "postal": [98101]},
                                "device": {"type": ["Mobile"]},
                                "data": {"t1": ["Shoes"]},
                                "profile": {"ut1": ["vip"]},
                                "segments": {"any": ["a"], "all": ["b"], "exclude": ["c"]},
                                "schedule": {
                                    "ranges": [{"start": "2026-12-01T00:00", "end": "2027-01-01T00:00"}],
                                    "windows": [{"days": ["mon", "Tue", 4], "start_hour": 9, "end_hour": 17}],
                                },
                                "context": {"Weather": ["COLD"]},
                            },
                            "theme": "th-pnw",
                        },
                        {"name": "rest", "theme": "th-default"},
                    ],
                }
            ],
            "else": "th-default",
        },
        {"id": "exp-tag", "sizes": ["300x250"], "formats": ["html"], "targeting": "tag", "tags": {"4": "th-pnw"}},
    ],
    "themes": [
        {"id": "th-pnw", "weight": 10, "group": "grp-pnw"},
        {"id": "th-default", "group": "grp-w"},
    ],
    "groups": [
        {"id": "grp-pnw", "rotation": "algo", "creatives": ["cr-a", "cr-d", "cr-s"]},
        {"id": "grp-w", "rotation": "weighted", "creatives": ["cr-a", "cr-v"], "weights": {"cr-a": 70, "cr-v": 30}},
    ],
    "creatives": [
        {"id": "cr-house", "type": "standard", "size": "300x250", "landing_url": "https://shop.example.com/",
         "assets": {"headline": "Shop", "image": "https://cdn.example.com/house.jpg", "cta": "Go"}},
        {"id": "cr-a", "type": "standard", "size": "300x250", "landing_url": "https://shop.example.com/a",
         "assets": {"headline": "A", "image": "https://cdn.example.com/a.jpg"}},
        {
            "id": "cr-d",
            "type": "dynamic",
            "template": "product_card",
            "products": {
                "top_n": 200,
                "filters": [
                    {"column": "availability", "values": ["in_stock"]},
                    {"column": "country", "from": "geo.country"},
                    {"column": "category", "from": "t1", "required": False},
                    {"column": "price", "min": 0, "max": 500},
                    {"column": "brand", "values": ["x"], "exclude": True},
                ],
                "boosts": [
                    {"column": "brand", "values": ["acme"], "factor": 1.5},
                    {"column": "price", "min": 0, "max": 50, "factor": 1.2},
                    {"column": "brand", "from": "ut1", "factor": 2.0},
                ],
            },
        },
        {
            "id": "cr-s",
            "type": "assembled",
            "template": "banner",
            "landing_url": "https://shop.example.com/s",
            "slots": {
                "headline": [{"id": "h01", "text": "Hello"}, {"id": "h02", "text": "Hi"}],
                "image": [{"id": "img01", "url": "https://cdn.example.com/1.jpg",
                           "rules": {"context": {"weather": ["cold"]}}}],
                "cta": [{"id": "c01", "text": "Shop now"}, {"id": "c02", "text": "Buy"}],
                "offer": [{"id": "o1", "text": "From {price}"}],
            },
            "exclusions": [["h01", "c02"]],
            "products": {"filters": [{"column": "country", "from": "geo.country"}]},
        },
        {
            "id": "cr-v",
            "type": "video",
            "landing_url": "https://shop.example.com/v",
            "duration": 15,
            "media": [{"url": "https://cdn.example.com/v.mp4", "type": "video/mp4", "width": 640, "height": 360,
                       "bitrate": 800}],
        },
    ],
}


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def first_error(data: Any) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        campaign_from_dict(data)
    return err.value


# --------------------------------------------------------------------------------------------- good configs


def test_base_config_is_valid_and_normalised():
    campaign = campaign_from_dict(base())
    assert campaign.currency == "USD"
    assert campaign.default_creative == "cr-house"
    assert campaign.prior == (1.0, 1.0)
    exp = campaign.experience("exp-main")
    assert exp is not None and exp.else_theme == "th-default"
    us = exp.tree[0]
    assert us.rules.geo.country == ("US",)
    pnw = us.children[0]
    assert pnw.theme == "th-pnw"
    assert pnw.rules.geo.region == ("wa", "or")
    assert pnw.rules.geo.postal == ("98101",)
    assert pnw.rules.device.type == ("mobile",)
    assert pnw.rules.data == {"t1": ("shoes",)}
    assert pnw.rules.context == {"weather": ("cold",)}
    assert pnw.rules.schedule.ranges == (DateRange("2026-12-01T00:00", "2027-01-01T00:00"),)
    assert pnw.rules.schedule.windows == (WeeklyWindow(days=(0, 1, 4), start_hour=9, end_hour=17),)
    assert campaign.experience("exp-tag").tags == {"4": "th-pnw"}
    assert campaign.themes["th-default"].weight == 0.0
    assert campaign.groups["grp-w"].weights == {"cr-a": 70.0, "cr-v": 30.0}
    dyn = campaign.creatives["cr-d"].products
    assert dyn is not None and dyn.top_n == 200
    assert dyn.filters[1].source == "geo.country"
    assert dyn.filters[3].min == 0.0 and dyn.filters[3].max == 500.0
    assert dyn.filters[4].exclude is True
    assert dyn.boosts[2].source == "ut1" and not dyn.boosts[2].is_static
    assembled = campaign.creatives["cr-s"]
    assert assembled.exclusions == (("h01", "c02"),)
    assert assembled.slots["image"][0].content == {"url": "https://cdn.example.com/1.jpg"}
    assert assembled.slots["image"][0].rules is not None
    assert assembled.slots["headline"][0].rules is None
    assert campaign.creatives["cr-v"].media[0].delivery == "progressive"
    assert campaign.scoring == {"geo.postal": 8.0, "t1": 4.0, "context.weather": 3.0}
    assert validate_campaign(base()) == []


def test_retail_example_loads_with_its_component_library():
    campaign = load_campaign(RETAIL.read_bytes())
    assembled = campaign.creatives["cr-retail"]
    assert len(assembled.slots["image"]) == 40
    assert len(assembled.slots["headline"]) == 12
    assert len(assembled.slots["cta"]) == 6
    assert [v.id for v in assembled.slots["headline"]] == [f"h{i:02d}" for i in range(1, 13)]
    assert [v.id for v in assembled.slots["image"]] == [f"img{i:02d}" for i in range(1, 41)]
    assert len({v.content["category"] for v in assembled.slots["image"]}) == 40
    cold = [v.id for v in assembled.slots["image"] if v.rules is not None]
    assert cold and all(
        campaign.creatives["cr-retail"].slots["image"][int(i[3:]) - 1].rules.context == {"weather": ("cold",)}
        for i in cold
    )
    assert any("{price}" in v.content["text"] for v in assembled.slots["offer"])
    main = campaign.experience("retail-main")
    assert main is not None and main.sizes == ("300x250", "728x90") and main.formats == ("html", "js", "json")
    assert [node.rules.geo.region for node in main.tree] == [(r,) for r in REGIONS]
    assert [node.theme for node in main.tree] == [f"th-{r}" for r in REGIONS]
    assert main.else_theme is not None
    assert campaign.experience("retail-tag").targeting == "tag"
    assert campaign.holdout == 0.1 and campaign.objective == "click"
    assert campaign.creatives[campaign.default_creative].type == "standard"
    assert campaign.feed.columns == {"category": "product_type"}
    assert campaign.feed.indexes == ("category", "brand", "availability", "country", "custom_label_0")
    video = [c for c in campaign.creatives.values() if c.type == "video"]
    assert len(video) == 1
    video_groups = [g for g in campaign.groups.values() if video[0].id in g.creatives]
    assert len(video_groups) == 1 and video_groups[0].creatives == (video[0].id,)


def test_json_and_yaml_give_equal_campaigns():
    data = yaml.safe_load(RETAIL.read_text())
    from_yaml = load_campaign(RETAIL.read_text())
    from_json = load_campaign(json.dumps(data))
    assert from_json == from_yaml
    assert load_campaign(json.dumps(data), fmt="json") == load_campaign(RETAIL.read_text(), fmt="yaml")
    assert load_campaign(yaml.safe_dump(base())) == load_campaign(json.dumps(base()).encode())


def test_yaml_dates_and_integer_tag_keys_are_accepted():
    text = """
id: c1
timezone: UTC
experiences:
  - id: e1
    sizes: ["300x250"]
    formats: [html]
    targeting: tag
    tags: {4: th}
    else: th
  - id: e2
    sizes: ["300x250"]
    formats: [html]
    targeting: tree
    tree:
      - name: xmas
        rules: {schedule: {ranges: [{start: 2026-12-01, end: 2026-12-26 06:30:00}]}}
        theme: th
themes: [{id: th, group: g}]
groups: [{id: g, creatives: [cr]}]
creatives:
  - {id: cr, type: standard, landing_url: "https://a.example/", assets: {headline: Hi}}
"""
    campaign = load_campaign(text)
    assert campaign.experience("e1").tags == {"4": "th"}
    assert campaign.experience("e2").tree[0].rules.schedule.ranges == (
        DateRange("2026-12-01T00:00", "2026-12-26T06:30"),
    )
    assert campaign.name == "c1" and campaign.holdout == 0.0 and campaign.groups["g"].rotation == "algo"


def test_code_sets():
    assert len(COUNTRY_CODES) == 249
    assert {"US", "GB", "DE", "NO", "BR"} <= COUNTRY_CODES
    assert not {"UK", "XX", "XK", "EU"} & COUNTRY_CODES
    assert {"USD", "EUR", "JPY", "GBP", "CHF"} <= CURRENCY_CODES
    assert "ABC" not in CURRENCY_CODES


# ---------------------------------------------------------------------------------------------- bad configs


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets the value at a dotted/indexed path (``experiences.0.tree``)."""

    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[int(last) if isinstance(node, list) else last]

    return apply


def _append(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(data: dict[str, Any]) -> None:
        node: Any = data
        for part in path.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        node.append(copy.deepcopy(value))

    return apply


PNW = "experiences.0.tree.0.children.0"
PNW_PATH = "experiences[0].tree[0].children[0]"
DYN = "creatives.2.products"
ASM = "creatives.3"

BAD: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    # top level
    ("unknown top-level field", _set("colour", "red"), "colour", "unknown field"),
    ("typo gets a hint", _set("holdot", 0.1), "holdot", 'unknown field (did you mean "holdout"?)'),
    ("missing id", _del("id"), "id", "required field missing"),
    ("bad id", _set("id", "Retail Demo"), "id", "expected an id matching"),
    ("bad timezone", _set("timezone", "Mars/Olympus_Mons"), "timezone", 'unknown time zone "Mars/Olympus_Mons"'),
    ("bad objective", _set("objective", "views"), "objective", 'unknown objective "views"'),
    ("holdout wrong type", _set("holdout", "abc"), "holdout", 'expected a number, got "abc"'),
    ("holdout bool", _set("holdout", True), "holdout", "expected a number, got true"),
    ("holdout out of range", _set("holdout", 1), "holdout", "expected a number >= 0 and < 1, got 1"),
    ("bad currency", _set("currency", "ABC"), "currency", 'unknown ISO code "ABC"'),
    ("bad prior", _set("prior", [1, 0]), "prior[1]", "expected a number > 0, got 0"),
    ("prior wrong length", _set("prior", [1]), "prior", "two numbers"),
    ("unknown scoring dimension", _set("scoring", {"geo.zip": 3}), 'scoring["geo.zip"]', "unknown dimension"),
    ("unknown default creative", _set("default_creative", "cr-nope"), "default_creative",
     'unknown creative "cr-nope"'),
    # learning
    ("learning not a mapping", _set("learning", ["region"]), "learning", "expected a mapping"),
    ("learning unknown field", _set("learning", {"dims": ["region"]}), "learning.dims", "unknown field"),
    ("learning dimensions not a list", _set("learning", {"dimensions": "region"}), "learning.dimensions",
     "expected a list"),
    ("unknown learning dimension", _set("learning", {"dimensions": ["region", "weather"]}),
     "learning.dimensions[1]", 'unknown learning dimension "weather"'),
    ("bad context key", _set("learning", {"dimensions": ["context.Weather!"]}), "learning.dimensions[0]",
     "unknown learning dimension"),
    ("repeated learning dimension", _set("learning", {"dimensions": ["device", "device"]}),
     "learning.dimensions[1]", "listed twice"),
    ("too many learning dimensions", _set("learning", {"dimensions": ["region", "device", "country", "daypart",
                                                                      "context.weather"]}),
     "learning.dimensions", "at most 4"),
    ("learning dimension not a string", _set("learning", {"dimensions": [3]}), "learning.dimensions[0]",
     "expected a string"),
    # feed
    ("unknown feed column", _set("feed.columns", {"colour": "color"}), "feed.columns.colour",
     "unknown feed column"),
    ("unknown index column", _set("feed.indexes", ["category", "size"]), "feed.indexes[1]",
     'unknown feed column "size"'),
    ("bad share", _set("feed.max_bad_share", 1.5), "feed.max_bad_share", "expected a number >= 0 and <= 1"),
    ("field bytes type", _set("feed.max_field_bytes", "4k"), "feed.max_field_bytes", "expected an integer"),
    # experiences and the tree
    ("unknown experience field", _set("experiences.0.colour", "red"), "experiences[0].colour", "unknown field"),
    ("bad size", _set("experiences.0.sizes", ["300x250", "300 by 250"]), "experiences[0].sizes[1]",
     "expected a size WxH"),
    ("bad format", _set("experiences.0.formats", ["html", "gif"]), "experiences[0].formats[1]",
     'unknown format "gif"'),
    ("bad targeting mode", _set("experiences.0.targeting", "rules"), "experiences[0].targeting",
     'unknown targeting mode "rules"'),
    ("duplicate experience id", _set("experiences.1.id", "exp-main"), "experiences[1].id",
     'duplicate id "exp-main" (first at experiences[0].id)'),
    ("unknown ISO code in a nested node", _set(f"{PNW}.rules.geo.country", ["US", "xx"]),
     f"{PNW_PATH}.rules.geo.country[1]", 'unknown ISO code "XX"'),
    ("UK is not ISO", _set(f"{PNW}.rules.geo.country", "uk"), f"{PNW_PATH}.rules.geo.country",
     'unknown ISO code "UK" (did you mean "GB"?)'),
    ("YAML NO read as false", _set(f"{PNW}.rules.geo.country", [False]), f"{PNW_PATH}.rules.geo.country[0]",
     "expected a string, got false (quote it in YAML)"),
    ("unknown rules field", _set(f"{PNW}.rules.weather", ["cold"]), f"{PNW_PATH}.rules.weather", "unknown field"),
    ("unknown data key", _set(f"{PNW}.rules.data", {"t9": ["x"]}), f"{PNW_PATH}.rules.data.t9", "unknown field"),
    ("bad device type", _set(f"{PNW}.rules.device.type", ["phone"]), f"{PNW_PATH}.rules.device.type[0]",
     'unknown device type "phone"'),
    ("empty value list", _set(f"{PNW}.rules.geo.region", []), f"{PNW_PATH}.rules.geo.region",
     "expected at least one value"),
    ("theme and children", _set(f"{PNW}.children", [{"name": "x", "theme": "th-pnw"}]), PNW_PATH,
     "has both theme and children"),
    ("neither theme nor children", _del(f"{PNW}.theme"), PNW_PATH, "needs a theme (leaf) or children (branch)"),
    ("unknown theme in a leaf", _set(f"{PNW}.theme", "th-nope"), f"{PNW_PATH}.theme", 'unknown theme "th-nope"'),
    ("unknown else theme", _set("experiences.0.else", "th-nope"), "experiences[0].else", 'unknown theme "th-nope"'),
    ("unknown tag theme", _set("experiences.1.tags", {"4": "th-nope"}), "experiences[1].tags.4",
     'unknown theme "th-nope"'),
    ("empty tree without else", lambda d: (_set("experiences.0.tree", [])(d), _del("experiences.0.else")(d)),
     "experiences[0].tree", "an empty tree needs an else theme"),
    ("tags in a tree experience", _set("experiences.0.tags", {"1": "th-pnw"}), "experiences[0].tags",
     "only for targeting: tag"),
    ("tag experience without tags", _del("experiences.1.tags"), "experiences[1].tags", "required field missing"),
    ("node without name", _del(f"{PNW}.name"), f"{PNW_PATH}.name", "required field missing"),
    ("duplicate sibling name", _set(f"{PNW}.name", "rest"), "experiences[0].tree[0].children[1].name",
     'duplicate node name "rest"'),
    # schedule
    ("range start after end", _set(f"{PNW}.rules.schedule.ranges", [{"start": "2027-01-02", "end": "2027-01-01"}]),
     f"{PNW_PATH}.rules.schedule.ranges[0].end", "must be after start (2027-01-02T00:00)"),
    ("bad date-time", _set(f"{PNW}.rules.schedule.ranges", [{"start": "next tuesday"}]),
     f"{PNW_PATH}.rules.schedule.ranges[0].start", "expected an ISO local date-time"),
    ("date-time with offset", _set(f"{PNW}.rules.schedule.ranges", [{"start": "2026-12-01T00:00+01:00"}]),
     f"{PNW_PATH}.rules.schedule.ranges[0].start", "without UTC offset"),
    ("bad weekday", _set(f"{PNW}.rules.schedule.windows", [{"days": ["mon", "funday"]}]),
     f"{PNW_PATH}.rules.schedule.windows[0].days[1]", 'expected a weekday mon..sun or 0..6 (0 = Monday), got "funday"'),
    ("weekday out of range", _set(f"{PNW}.rules.schedule.windows", [{"days": [7]}]),
     f"{PNW_PATH}.rules.schedule.windows[0].days[0]", "expected a weekday"),
    ("hour out of range", _set(f"{PNW}.rules.schedule.windows", [{"start_hour": 9, "end_hour": 25}]),
     f"{PNW_PATH}.rules.schedule.windows[0].end_hour", "expected an integer >= 0 and <= 24, got 25"),
    ("overnight window", _set(f"{PNW}.rules.schedule.windows", [{"start_hour": 22, "end_hour": 2}]),
     f"{PNW_PATH}.rules.schedule.windows[0].end_hour", "must be greater than start_hour (22)"),
    # themes and groups
    ("theme with unknown group", _set("themes.0.group", "grp-nope"), "themes[0].group", 'unknown group "grp-nope"'),
    ("duplicate theme id", _append("themes", {"id": "th-pnw", "group": "grp-pnw"}), "themes[2].id",
     'duplicate id "th-pnw" (first at themes[0].id)'),
    ("negative theme weight", _set("themes.0.weight", -1), "themes[0].weight", "expected a number >= 0"),
    ("bad rotation", _set("groups.0.rotation", "roundrobin"), "groups[0].rotation", 'unknown rotation "roundrobin"'),
    ("group with unknown creative", _set("groups.0.creatives", ["cr-a", "cr-nope"]), "groups[0].creatives[1]",
     'unknown creative "cr-nope"'),
    ("weights not summing to 100", _set("groups.1.weights", {"cr-a": 70, "cr-v": 20}), "groups[1].weights",
     "weights must sum to 100, got 90"),
    ("creative without weight", _set("groups.1.weights", {"cr-a": 100}), "groups[1].weights",
     'no weight for creative "cr-v"'),
    ("weight for a stranger", _set("groups.1.weights", {"cr-a": 70, "cr-v": 20, "cr-house": 10}),
     "groups[1].weights.cr-house", "not one of this group's creatives"),
    ("weights without weighted rotation", _set("groups.0.weights", {"cr-a": 100}), "groups[0].weights",
     "only for rotation: weighted"),
    ("weighted without weights", _del("groups.1.weights"), "groups[1].weights", "required for rotation: weighted"),
    # creatives
    ("duplicate creative id", _append("creatives", BASE["creatives"][0]), "creatives[5].id",
     'duplicate id "cr-house" (first at creatives[0].id)'),
    ("unknown creative type", _set("creatives.1.type", "rich"), "creatives[1].type", 'unknown creative type "rich"'),
    ("field of another type", _set("creatives.1.media", []), "creatives[1].media",
     "unknown field (not used by a standard creative)"),
    ("bad URL scheme", _set("creatives.0.landing_url", "ftp://shop.example.com/"), "creatives[0].landing_url",
     'expected an absolute http(s) URL, got "ftp://shop.example.com/"'),
    ("relative URL", _set("creatives.0.assets.image", "/img/house.jpg"), "creatives[0].assets.image",
     "expected an absolute http(s) URL"),
    ("javascript URL in a variant", _set(f"{ASM}.slots.image.0.url", "javascript:alert(1)"),
     "creatives[3].slots.image[0].url", "expected an absolute http(s) URL"),
    ("bad creative size", _set("creatives.0.size", "big"), "creatives[0].size", "expected a size WxH"),
    ("duration type", _set("creatives.4.duration", "15s"), "creatives[4].duration", 'expected an integer, got "15s"'),
    ("media without width", _del("creatives.4.media.0.width"), "creatives[4].media[0].width",
     "required field missing"),
    ("bad media type", _set("creatives.4.media.0.type", "mp4"), "creatives[4].media[0].type",
     "expected a MIME type"),
    # assembled variants and exclusions
    ("bad exclusion reference", _set(f"{ASM}.exclusions", [["h01", "c09"]]), "creatives[3].exclusions[0][1]",
     'unknown variant "c09"'),
    ("exclusion not a pair", _set(f"{ASM}.exclusions", [["h01", "c01", "o1"]]), "creatives[3].exclusions[0]",
     "expected a pair [id, id], got 3 items"),
    ("exclusion within one slot", _set(f"{ASM}.exclusions", [["h01", "h02"]]), "creatives[3].exclusions[0]",
     'both variants are in slot "headline"'),
    ("duplicate variant id across slots", _set(f"{ASM}.slots.cta.1.id", "h01"), "creatives[3].slots.cta[1].id",
     'duplicate variant id "h01" (first at creatives[3].slots.headline[0].id)'),
    ("variant without content", _set(f"{ASM}.slots.offer", [{"id": "o1"}]), "creatives[3].slots.offer[0]",
     "expected at least one content field"),
    ("empty slot", _set(f"{ASM}.slots.offer", []), "creatives[3].slots.offer", "expected at least one item"),
    ("unknown ISO code in variant rules", _set(f"{ASM}.slots.image.0.rules", {"geo": {"country": ["QQ"]}}),
     "creatives[3].slots.image[0].rules.geo.country[0]", 'unknown ISO code "QQ"'),
    # product selection
    ("bad from-signal", _set(f"{DYN}.filters.1.from", "geo.state"), "creatives[2].products.filters[1].from",
     'unknown request signal "geo.state"'),
    ("bad boost from-signal", _set(f"{DYN}.boosts.2.from", "ut9"), "creatives[2].products.boosts[2].from",
     'unknown request signal "ut9"'),
    ("filter with values and from", _set(f"{DYN}.filters.0.from", "t2"), "creatives[2].products.filters[0]",
     "use exactly one of values, from or min/max"),
    ("filter with nothing", _set(f"{DYN}.filters.0", {"column": "brand"}), "creatives[2].products.filters[0]",
     "needs one of values, from or min/max"),
    ("min above max", _set(f"{DYN}.filters.3.min", 600), "creatives[2].products.filters[3].max",
     "must be >= min (600)"),
    ("min/max on a text column", _set(f"{DYN}.filters.3.column", "brand"), "creatives[2].products.filters[3].column",
     '"brand" is not numeric'),
    ("filter on an unindexed column", _set(f"{DYN}.filters.0.column", "title"),
     "creatives[2].products.filters[0].column", '"title" is not indexed (add it to feed.indexes)'),
    ("unknown filter column", _set(f"{DYN}.filters.0.column", "colour"), "creatives[2].products.filters[0].column",
     'unknown feed column "colour"'),
    ("required without from", _set(f"{DYN}.filters.0.required", True), "creatives[2].products.filters[0].required",
     "only for a filter with from"),
    ("exclude wrong type", _set(f"{DYN}.filters.4.exclude", "yes"), "creatives[2].products.filters[4].exclude",
     'expected true or false, got "yes"'),
    ("zero factor", _set(f"{DYN}.boosts.0.factor", 0), "creatives[2].products.boosts[0].factor",
     "expected a number > 0, got 0"),
    ("infinite factor", _set(f"{DYN}.boosts.0.factor", float("inf")), "creatives[2].products.boosts[0].factor",
     "expected a finite number"),
    ("top_n too large", _set(f"{DYN}.top_n", 10001), "creatives[2].products.top_n",
     "expected an integer >= 1 and <= 10000, got 10001"),
    ("top_n zero", _set(f"{DYN}.top_n", 0), "creatives[2].products.top_n", "expected an integer >= 1"),
    ("unknown ISO code in a country filter", _set(f"{DYN}.filters.0", {"column": "country", "values": ["ZZ"]}),
     "creatives[2].products.filters[0].values[0]", 'unknown ISO code "ZZ"'),
    ("dynamic without products", _del(DYN), "creatives[2].products", "required field missing"),
]


@pytest.mark.parametrize(("mutate", "path", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_reports_path_and_reason(mutate, path, fragment):
    data = base()
    mutate(data)
    err = first_error(data)
    assert (err.path, fragment in err.reason) == (path, True), str(err)
    assert str(err).startswith(f"{path}: ")


def test_learning_dimensions_default_and_parse():
    assert campaign_from_dict(base()).learning.dimensions == ("region", "device")
    data = base()
    data["learning"] = {"dimensions": ["daypart", "context.weather", "country"]}
    assert campaign_from_dict(data).learning.dimensions == ("daypart", "context.weather", "country")
    data["learning"] = {"dimensions": []}
    assert campaign_from_dict(data).learning.dimensions == ()


def test_validate_campaign_collects_every_error():
    data = base()
    data["holdout"] = "abc"
    data["colour"] = "red"
    data["experiences"][0]["tree"][0]["children"][0]["rules"]["geo"]["country"] = ["XX"]
    data["groups"][1]["weights"] = {"cr-a": 50, "cr-v": 20}
    data["creatives"][0]["landing_url"] = "ftp://x"
    errors = validate_campaign(data)
    assert [(e.path, e.reason.split(" (")[0]) for e in errors] == [
        ("colour", "unknown field"),
        ("holdout", 'expected a number, got "abc"'),
        (f"{PNW_PATH}.rules.geo.country[0]", 'unknown ISO code "XX"'),
        ("groups[1].weights", "weights must sum to 100, got 70"),
        ("creatives[0].landing_url", 'expected an absolute http(s) URL, got "ftp://x"'),
    ]
    assert first_error(data).path == "colour"


@pytest.mark.parametrize(
    ("text", "fmt", "fragment"),
    [
        ("id: a\nid: b\n", None, 'duplicate key "id" (line 2, column 1)'),
        ('{"id": "a", "id": "b"}', "json", 'duplicate key "id"'),
        ("{not json", "json", "invalid JSON"),
        ("a: [1, 2\n", None, "invalid YAML"),
        ("- just\n- a list\n", None, "expected a mapping at the top level, got a list"),
        (b"id: \xff\xfe\n", None, "not UTF-8"),
    ],
)
def test_unparseable_text(text, fmt, fragment):
    with pytest.raises(ConfigError) as err:
        load_campaign(text, fmt=fmt)
    assert err.value.path == ""
    assert fragment in str(err.value)
    collected = validate_campaign(text)
    assert len(collected) == 1 and collected[0].path == ""


def test_parse_config_text_detects_the_format():
    assert parse_config_text('{"id": "x"}') == {"id": "x"}
    assert parse_config_text("id: x\n") == {"id": "x"}
    with pytest.raises(ValueError):
        parse_config_text("id: x", fmt="toml")


def test_deep_trees_are_bounded():
    data = base()
    node: dict[str, Any] = {"name": "leaf", "theme": "th-pnw"}
    for i in range(40):
        node = {"name": f"n{i}", "children": [node]}
    data["experiences"][0]["tree"] = [node]
    err = first_error(data)
    assert "tree too deep" in err.reason


def _walk(node: Any, trail: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [trail]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _walk(value, (*trail, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _walk(value, (*trail, i))
    return out


JUNK: tuple[Any, ...] = (None, True, 0, -1, 1e308, float("nan"), "", "x", [], [None], {}, {"x": 1}, [[1, 2]], "☃")


def test_any_single_corruption_gives_a_config_error_not_a_crash():
    # GIVEN every position of the valid base config, WHEN it is replaced by junk of every kind,
    # THEN loading either succeeds or raises ConfigError, and validate_campaign agrees.
    import random

    rng = random.Random(20261201)
    trails = [t for t in _walk(BASE) if t]
    for trail in trails:
        for junk in rng.sample(JUNK, 4):
            data = base()
            node: Any = data
            for part in trail[:-1]:
                node = node[part]
            node[trail[-1]] = copy.deepcopy(junk)
            errors = validate_campaign(data)
            try:
                campaign_from_dict(data)
            except ConfigError as exc:
                assert errors and errors[0].path == exc.path
            else:
                assert errors == []
