"""Snapshot build/load: round trips, determinism, corrupt and future-version rejection, catalog selection."""

from __future__ import annotations

import hashlib
import math

import msgpack
import pytest
from dco import bitmap
from dco.catalog import PickCache, select_products
from dco.errors import ConfigError, CorruptSnapshotError, SnapshotVersionError
from dco.feed import parse_feed
from dco.snapshot import FORMAT_VERSION, DictColumn, TextColumn, build_snapshot, describe, load_snapshot

FEED = (
    b"id\ttitle\tlink\timage_link\tprice\tavailability\tproduct_type\tbrand\tcountry\tcustom_label_0\n"
    b"p1\tRain Jacket\thttps://shop.example.com/p1\thttps://cdn.example.com/p1.jpg\t120.00 USD\tin_stock\tOuterwear\tAcme\tUS\tpnw\n"
    b"p2\tSnow Boots\thttps://shop.example.com/p2\thttps://cdn.example.com/p2.jpg\t80.00 USD\tin_stock\tBoots\tNorth\tUS,CA\t\n"
    b"p3\tFleece\thttps://shop.example.com/p3\thttps://cdn.example.com/p3.jpg\t45.50 USD\tout_of_stock\tOuterwear\tAcme\t\tpnw\n"
    b"p4\tSandals\thttps://shop.example.com/p4\thttps://cdn.example.com/p4.jpg\t25.00 USD\tin_stock\tSandals\tSunny\tUS\tsoutheast\n"
    b"p5\tParka <b>\"deluxe\"</b>\thttps://shop.example.com/p5\thttps://cdn.example.com/p5.jpg\t300.00 USD\tin_stock\tOuterwear\tNorth\tCA\t\n"
    b"p6\tWool Hat\thttps://shop.example.com/p6\thttps://cdn.example.com/p6.jpg\t19.99 USD\tin_stock\tOuterwear\tAcme\tUS\t\n"
)


def campaign_data(**over):
    data = {
        "id": "test-campaign",
        "name": "Test",
        "timezone": "America/Los_Angeles",
        "objective": "click",
        "holdout": 0.1,
        "currency": "USD",
        "default_creative": "cr-house",
        "feed": {
            "columns": {"category": "product_type"},
            "indexes": ["category", "brand", "availability", "country", "custom_label_0"],
        },
        "experiences": [
            {
                "id": "main",
                "sizes": ["300x250"],
                "formats": ["html", "json"],
                "targeting": "tree",
                "tree": [{"name": "pnw", "rules": {"geo": {"region": ["pnw"]}}, "theme": "th-pnw"}],
                "else": "th-all",
            }
        ],
        "themes": [
            {"id": "th-pnw", "weight": 10, "group": "grp"},
            {"id": "th-all", "weight": 0, "group": "grp"},
        ],
        "groups": [{"id": "grp", "rotation": "algo", "creatives": ["cr-dyn"]}],
        "creatives": [
            {"id": "cr-house", "type": "standard", "landing_url": "https://shop.example.com/",
             "assets": {"headline": "Shop", "image": "https://cdn.example.com/house.jpg"}},
            {
                "id": "cr-dyn",
                "type": "dynamic",
                "template": "product_card",
                "products": {
                    "top_n": 2,
                    "filters": [
                        {"column": "availability", "values": ["in_stock"]},
                        {"column": "country", "from": "geo.country"},
                        {"column": "category", "from": "t1"},
                    ],
                    "boosts": [
                        {"column": "brand", "values": ["acme"], "factor": 1.5},
                        {"column": "price", "min": 0, "max": 100, "factor": 2.0},
                        {"column": "brand", "from": "ut1", "factor": 3.0},
                    ],
                },
            },
        ],
    }
    data.update(over)
    return data


@pytest.fixture(scope="module")
def catalog():
    result = parse_feed(FEED)
    assert result.report.publishable, result.report.to_dict()
    return result.catalog


@pytest.fixture(scope="module")
def blob(catalog):
    return build_snapshot(campaign_data(), catalog, feed_sha256="f" * 64)


def test_round_trip_keeps_every_column_and_product(blob, catalog):
    snap = load_snapshot(blob)
    assert snap.rows == 6
    assert snap.format_version == FORMAT_VERSION
    assert snap.version.startswith("sha256:") and len(snap.version) == 7 + 64
    assert snap.campaign.id == "test-campaign"
    for row, pid in enumerate(catalog.ids):
        product = snap.product(row)
        assert product["id"] == pid
        assert product["title"] == catalog.text["title"][row]
        assert product["link"] == catalog.text["link"][row]
        assert product["price"] == catalog.numeric["price"][row]
    assert snap.product(4)["title"] == 'Parka <b>"deluxe"</b>'
    assert math.isnan(snap.product(0)["sale_price"]) if "sale_price" in snap.columns else True


def test_indexes_hold_normalised_values(blob):
    snap = load_snapshot(blob)
    assert bitmap.to_list(snap.index("category", "outerwear")) == [0, 2, 4, 5]
    assert bitmap.to_list(snap.index("category", "OUTERWEAR")) == [0, 2, 4, 5]
    assert bitmap.to_list(snap.index("country", "CA")) == [1, 4]
    assert bitmap.to_list(snap.index("country", "*")) == [2]  # no country: available everywhere
    assert snap.index("brand", "nobody") is None
    assert snap.index("not-indexed", "x") is None
    cards = describe(snap)["indexes"]
    assert cards["availability"] == {"in_stock": 5, "out_of_stock": 1}


def test_static_eligibility_and_boosts_are_precomputed(blob):
    snap = load_snapshot(blob)
    static = snap.creative_products["cr-dyn"]
    assert bitmap.to_list(static.eligible) == [0, 1, 3, 4, 5]  # p3 is out of stock
    assert [float(b) for b in static.boosts] == [1.5, 2.0, 3.0, 2.0, 1.0, 3.0]


def test_build_is_byte_identical(catalog):
    a = build_snapshot(campaign_data(), catalog, feed_sha256="f" * 64)
    b = build_snapshot(campaign_data(), parse_feed(FEED).catalog, feed_sha256="f" * 64)
    assert a == b
    assert build_snapshot(campaign_data(), catalog, built_at=1) != a


def test_any_flipped_byte_is_rejected(blob):
    positions = range(0, len(blob), max(1, len(blob) // 400))
    for pos in positions:
        damaged = bytearray(blob)
        damaged[pos] ^= 0x41
        with pytest.raises((CorruptSnapshotError, SnapshotVersionError)):
            load_snapshot(bytes(damaged))


def test_truncated_objects_are_rejected(blob):
    for cut in (0, 1, 10, len(blob) // 2, len(blob) - 1):
        with pytest.raises(CorruptSnapshotError):
            load_snapshot(blob[:cut])


def test_garbage_is_rejected_with_a_clear_message():
    with pytest.raises(CorruptSnapshotError, match="corrupt snapshot"):
        load_snapshot(b"\x00\x01garbage")
    with pytest.raises(CorruptSnapshotError, match="bad magic"):
        load_snapshot(msgpack.packb(["something-else", 1, b"", b"", b""]))


def test_future_version_is_rejected(blob):
    outer = msgpack.unpackb(blob, raw=False)
    outer[1] = FORMAT_VERSION + 1
    with pytest.raises(SnapshotVersionError, match="newer"):
        load_snapshot(msgpack.packb(outer, use_bin_type=True))


def test_descriptor_outside_blob_is_rejected(blob):
    import hashlib

    _, version, _, meta_bytes, data = msgpack.unpackb(blob, raw=False)
    meta = msgpack.unpackb(meta_bytes, raw=False)
    meta["catalog"]["columns"]["title"]["data"] = [0, len(data) + 100]
    meta_bytes = msgpack.packb(meta, use_bin_type=True)
    digest = hashlib.sha256(meta_bytes + data).digest()
    forged = msgpack.packb(["dco-snapshot", version, digest, meta_bytes, data], use_bin_type=True)
    with pytest.raises(CorruptSnapshotError, match="outside"):
        load_snapshot(forged)


def test_index_on_missing_column_names_the_field(catalog):
    data = campaign_data()
    data["feed"] = {"columns": {"category": "product_type"}, "indexes": ["category", "colour"]}
    with pytest.raises(ConfigError) as err:
        build_snapshot(data, catalog)
    assert err.value.path == "feed.indexes[1]"


def test_request_filter_on_unindexed_column_names_the_field(catalog):
    data = campaign_data()
    data["feed"] = {"columns": {"category": "product_type"}, "indexes": ["availability", "country"]}
    with pytest.raises(ConfigError) as err:
        build_snapshot(data, catalog)
    assert err.value.path == "creatives[1].products.filters[2].column"


def _selection(snap):
    return snap.campaign.creatives["cr-dyn"].products


def test_product_selection_filters_scores_and_keeps_ties(blob):
    snap = load_snapshot(blob)
    sel = _selection(snap)
    # US outerwear in stock: p1 (acme, 120 -> 1.5), p6 (acme, 19.99 -> 1.5*2=3.0); p3 out of stock; p5 CA only
    pick = select_products(snap, "cr-dyn", sel, {"geo.country": "US", "t1": "outerwear"})
    assert pick.ranked() == [(5, 3.0), (0, 1.5)]
    assert list(pick.rows) == [0, 5]  # arm order: ascending rows
    assert pick.candidates == 2
    # brand affinity from a profile key multiplies
    pick = select_products(snap, "cr-dyn", sel, {"geo.country": "US", "t1": "outerwear", "ut1": "acme"})
    assert pick.ranked() == [(5, 9.0), (0, 4.5)]
    # no category signal: the filter is skipped (not required); US products in stock: p1, p2, p4, p6
    pick = select_products(snap, "cr-dyn", sel, {"geo.country": "US"})
    assert pick.candidates == 4
    # p2 (2.0), p4 (2.0 ... sandals 25 -> 2.0), p6 (3.0) p1 (1.5): top 2 = p6, then p2 and p4 tied at 2.0: both kept
    assert pick.ranked() == [(5, 3.0), (1, 2.0), (3, 2.0)]
    assert pick.best() == 5


def test_product_selection_unknown_value_is_empty(blob):
    snap = load_snapshot(blob)
    pick = select_products(snap, "cr-dyn", _selection(snap), {"geo.country": "FR"})
    assert len(pick) == 0
    assert pick.candidates == 0


def test_pick_cache_hits_by_context_and_equals_the_uncached_pick(blob):
    snap = load_snapshot(blob)
    sel = _selection(snap)
    cache = PickCache(snap, maxsize=2)
    us = {"geo.country": "US", "t1": "outerwear", "rid": "a"}
    first = cache.select("cr-dyn", sel, us)
    # GIVEN the same context with signals the selection does not read changed: a hit, the same pick
    again = cache.select("cr-dyn", sel, dict(us, rid="b", t3="whatever"))
    assert again is first and (cache.hits, cache.misses) == (1, 1)
    direct = select_products(snap, "cr-dyn", sel, us)
    assert first.ranked() == direct.ranked() and first.candidates == direct.candidates
    # a signal a boost reads (ut1) is part of the key: a miss with different scores
    acme = cache.select("cr-dyn", sel, dict(us, ut1="acme"))
    assert acme.ranked() == [(5, 9.0), (0, 4.5)] and cache.misses == 2
    # picks are read-only: a caller cannot corrupt what the next request gets
    if hasattr(first.rows, "flags"):
        with pytest.raises(ValueError):
            first.rows[0] = 3
        with pytest.raises(ValueError):
            first.scores[0] = 0.0
    # bounded: the least recently used context is evicted
    cache.select("cr-dyn", sel, {"geo.country": "CA"})
    assert len(cache) == 2
    cache.select("cr-dyn", sel, us)
    assert cache.misses == 4


def test_pick_cache_off_and_bad_size(blob):
    snap = load_snapshot(blob)
    off = PickCache(snap, maxsize=0)
    a = off.select("cr-dyn", _selection(snap), {"geo.country": "US"})
    b = off.select("cr-dyn", _selection(snap), {"geo.country": "US"})
    assert a is not b and a.ranked() == b.ranked() and len(off) == 0
    with pytest.raises(ValueError, match="maxsize"):
        PickCache(snap, maxsize=-1)


# ------------------------------------------------------------------------------------- byte-identical builds


def _varied_feed(rows: int = 600, seed: int = 5) -> bytes:
    """A deterministic feed exercising every column kind: repeated and unique text, case and whitespace variants
    that normalise together, multi-valued countries (and none: everywhere), NaN sale prices, a custom numeric
    column given as text."""
    import random

    rng = random.Random(seed)
    header = ("id", "title", "link", "image_link", "price", "sale_price", "availability", "product_type", "brand",
              "country", "custom_label_0", "popularity", "margin")
    lines = ["\t".join(header)]
    for i in range(rows):
        lines.append("\t".join((
            f"p{i}",
            rng.choice(["Rain Jacket", "Snow Boots", "Fleece", f"Item {i}", "Café crème"]),
            f"https://shop.example.com/p{i}",
            f"https://cdn.example.com/p{i}.jpg" if rng.random() < 0.9 else "",
            f"{rng.uniform(1, 200):.2f} USD",
            f"{rng.uniform(1, 100):.2f} USD" if rng.random() < 0.3 else "",
            rng.choice(["in_stock", "in_stock", "out_of_stock", "preorder"]),
            rng.choice(["Outerwear", "outerwear", "Boots", "Sandals", " Boots "]),
            rng.choice(["Acme", "ACME", "North", "Sunny", ""]),
            rng.choice(["US", "US,CA", "", "ca", "GB US"]),
            rng.choice(["pnw", "", "southeast", "PNW"]),
            rng.choice(["1.5", "", "0.25", "x", "-2", "3"]),
            rng.choice(["2", "0.5", "", "1"]),
        )))
    return ("\n".join(lines) + "\n").encode()


def _varied_campaign():
    data = campaign_data()
    data["feed"]["keep"] = ["margin", "popularity"]
    products = data["creatives"][1]["products"]
    products["filters"] = [
        *products["filters"],
        {"column": "price", "min": 5, "max": 150},
        {"column": "country", "values": ["GB"], "exclude": True},
        {"column": "custom_label_0", "values": ["southeast"], "exclude": True},
    ]
    products["boosts"] = [
        *products["boosts"],
        {"column": "popularity", "scale": True, "factor": 0.5},
        {"column": "sale_price", "min": 0, "max": 30, "factor": 1.7},
        {"column": "category", "values": ["boots"], "factor": 1.1},
    ]
    return data


# sha256 of the snapshot the builder wrote before it was vectorised (a per-row Python loop): the numpy and the
# pure-Python paths (pytest --pure-python) must both still write exactly these bytes.
VARIED_SNAPSHOT_SHA256 = "9d35d9596119c1857165f4f11b8600f9dc1dd9d9c79abc0ece915f7e2c66b959"


def test_varied_build_is_byte_identical_across_paths():
    result = parse_feed(_varied_feed())
    assert result.report.publishable, result.report.to_dict()
    blob = build_snapshot(_varied_campaign(), result.catalog, feed_sha256="f" * 64)
    assert hashlib.sha256(blob).hexdigest() == VARIED_SNAPSHOT_SHA256
    snap = load_snapshot(blob)
    assert snap.rows == 600 and isinstance(snap.columns["title"], DictColumn)
    assert isinstance(snap.columns["link"], TextColumn) and not isinstance(snap.columns["link"], DictColumn)


def test_dictionary_encoding_threshold_is_exact():
    # GIVEN 10 products: a column with 5 distinct values is dictionary-encoded, one with 6 is stored as text
    rows = [(f"p{i}", f"t{i % 5}", f"https://s.example/{i}", "1.00 USD", f"b{i % 6}", "in_stock", "Boots", "US", "")
            for i in range(10)]
    header = "id\ttitle\tlink\tprice\tbrand\tavailability\tproduct_type\tcountry\tcustom_label_0\n"
    feed = (header + "".join("\t".join(r) + "\n" for r in rows)).encode()
    snap = load_snapshot(build_snapshot(campaign_data(), parse_feed(feed).catalog))
    assert isinstance(snap.columns["title"], DictColumn) and snap.columns["title"].values == [f"t{i}" for i in range(5)]
    assert type(snap.columns["brand"]) is TextColumn
    assert [snap.columns["brand"].get(i) for i in range(10)] == [f"b{i % 6}" for i in range(10)]


def test_distinct_counting_stops_early_only_when_certain():
    from dco.snapshot import _Coded, _more_distinct_than

    unique = [f"u{i}" for i in range(100)]
    assert _more_distinct_than(unique, 49, step=8)
    assert not _more_distinct_than(unique, 100, step=8)
    assert not _more_distinct_than(["a", "b"] * 50, 1, step=8)  # low cardinality: left to the coding pass
    assert _Coded.of(unique, ordered=True, limit=50) is None
    coded = _Coded.of(["b", "a", "b", "c"], ordered=True, limit=3)
    assert coded is not None and coded.keys == ["a", "b", "c"] and list(coded.codes) == [1, 0, 1, 2]
