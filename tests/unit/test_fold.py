"""dco.fold: parsing Events images, per-counter aggregation, counters -> stats rows (pure, no AWS)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from dco.fold import (
    Delta,
    EventRecord,
    Past,
    PoisonRecordError,
    aggregate,
    bucket_rows,
    cell_attribute,
    cell_field,
    cell_rows,
    counter_row,
    counter_rows,
    parse_event,
    prune_buckets,
    sequence_key,
    stats_updates,
)
from dco.learning import cell_host, counter_keys

IMAGE = {
    "campaign": "c1",
    "kind": "imp",
    "arm": "cr|h1.i2",
    "creative": "cr",
    "variants": ["headline=h1", "image=i2"],
    "context": {"region": "pnw", "device": "mobile"},
    "holdout": False,
}


def event(seq: int, kind: str = "imp", **changes: object) -> EventRecord:
    return parse_event({**IMAGE, "kind": kind, **changes}, sequence=str(seq), shard="s1")


def test_parse_event_reads_every_field() -> None:
    record = parse_event({**IMAGE, "kind": "conv", "value": Decimal("12.50")}, sequence="42", shard="s1",
                         created_at=7)
    assert record == EventRecord(
        campaign="c1", kind="conv", arm="cr|h1.i2", creative="cr", variants=("headline=h1", "image=i2"),
        context=(("device", "mobile"), ("region", "pnw")), holdout=False, value=Decimal("12.50"),
        sequence="42", shard="s1", created_at=7,
    )
    assert record.delta() == Delta(conversions=1, value=Decimal("12.50"))


def test_counter_keys_are_the_learning_contract() -> None:
    record = event(1)
    assert record.counter_keys() == counter_keys(
        arm="cr|h1.i2", creative="cr", variants=["headline=h1", "image=i2"],
        context={"region": "pnw", "device": "mobile"}, holdout=False,
    )
    timed = event(1, ts=Decimal(86400 * 3))
    assert timed.ts == 86400 * 3
    assert timed.counter_keys() == counter_keys(
        arm="cr|h1.i2", creative="cr", variants=["headline=h1", "image=i2"],
        context={"region": "pnw", "device": "mobile"}, holdout=False, now_s=86400 * 3,
    )
    assert "comp:cr|headline=h1#e3" in timed.counter_keys()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"campaign": None}, "campaign"),
        ({"arm": ""}, "arm"),
        ({"kind": "view"}, "kind"),
        ({"variants": ["no-equals"]}, "variants"),
        ({"variants": "headline=h1"}, "variants"),
        ({"context": {"region": 3}}, "context"),
        ({"holdout": "no"}, "holdout"),
        ({"ts": Decimal("1.5")}, "ts"),
        ({"kind": "conv", "value": "abc"}, "value"),
        ({"kind": "conv", "value": Decimal("-1")}, "value"),
        ({"kind": "conv", "value": Decimal("NaN")}, "value"),
    ],
)
def test_malformed_images_are_poison(changes: dict, reason: str) -> None:
    image = {**IMAGE, **changes}
    with pytest.raises(PoisonRecordError, match=reason):
        parse_event(image, sequence="1")


@pytest.mark.parametrize("sequence", ["", "12a", "-1", "1" * 41, "١٢"])
def test_malformed_sequence_numbers_are_poison(sequence: str) -> None:
    with pytest.raises(PoisonRecordError, match="sequence"):
        parse_event(IMAGE, sequence=sequence)


def test_sequence_keys_order_numerically() -> None:
    numbers = [random.Random(3).randrange(10**20, 10**40) for _ in range(200)] + [111, 222, 10**39]
    assert sorted(numbers) == sorted(numbers, key=lambda n: sequence_key(str(n)))
    assert len(sequence_key("1" * 40)) == 40


def test_aggregate_sums_per_counter() -> None:
    # GIVEN 3 impressions, 1 click and a conversion of 10.25 on one arm, and a holdout impression
    records = [event(1), event(2), event(3), event(4, "click"), event(5, "conv", value=Decimal("10.25")),
               event(6, arm="static", creative="static", variants=[], holdout=True)]
    # WHEN aggregated
    batch = aggregate(records)
    deltas = batch.deltas()
    # THEN each counter holds the sum of its events' deltas
    assert deltas[("c1", "arm:cr|h1.i2")] == Delta(3, 1, 1, Decimal("10.25"))
    assert deltas[("c1", "arm:cr")] == Delta(3, 1, 1, Decimal("10.25"))
    assert deltas[("c1", "comp:cr|headline=h1@region=pnw")] == Delta(3, 1, 1, Decimal("10.25"))
    assert deltas[("c1", "split:optimized")] == Delta(3, 1, 1, Decimal("10.25"))
    assert deltas[("c1", "split:holdout")] == Delta(1, 0, 0, Decimal(0))
    assert deltas[("c1", "arm:static")] == Delta(1)
    assert len(deltas) == len(records[0].counter_keys()) + 2  # grows with distinct counters, not events
    assert batch.events == 6
    assert batch.last_sequence == {"s1": sequence_key("6")}


def test_impressions_and_clicks_carry_no_value() -> None:
    assert event(1, value=Decimal(5)).delta() == Delta(impressions=1)
    assert event(1, "click", value=Decimal(5)).delta() == Delta(clicks=1)


def test_counter_fold_after_a_watermark() -> None:
    batch = aggregate([event(10), event(11, "click"), event(12), event(13, "conv", value=Decimal("2.5"))])
    fold = batch.counters[("s1", "c1", "arm:cr|h1.i2")]
    assert (fold.first, fold.last) == (sequence_key("10"), sequence_key("13"))
    assert fold.after(sequence_key("9")) == Past(Delta(2, 1, 1, Decimal("2.5")), {}, sequence_key("13"), "10", {})
    assert fold.after(sequence_key("11")) == Past(Delta(1, 0, 1, Decimal("2.5")), {}, sequence_key("13"), "12", {})
    assert fold.after(sequence_key("13")) is None


def test_counter_fold_after_a_watermark_splits_time_buckets() -> None:
    # GIVEN a batch that straddles midnight (bucket 3 -> 4) and one record without a time
    day = 86400
    records = [event(10, ts=3 * day + 5), event(11, "click", ts=4 * day - 1), event(12, ts=4 * day),
               event(13), event(14, "conv", value=Decimal("2.5"), ts=4 * day + 9)]
    batch = aggregate(records)
    comp = batch.counters[("s1", "c1", "comp:cr|headline=h1@region=pnw")]
    arm = batch.counters[("s1", "c1", "arm:cr|h1.i2")]
    # THEN the bucketed counter sums per bucket (the untimed record only in the all-time total)
    assert comp.bucketed and not arm.bucketed
    assert comp.total == Delta(3, 1, 1, Decimal("2.5"))
    assert comp.buckets == {3: Delta(1, 1), 4: Delta(1, 0, 1, Decimal("2.5"))}
    assert arm.buckets == {}
    # AND after() splits the steps past a watermark the same way
    assert comp.after(sequence_key("11")) == Past(
        Delta(2, 0, 1, Decimal("2.5")), {4: Delta(1, 0, 1, Decimal("2.5"))}, sequence_key("14"), "12", {})
    assert arm.after(sequence_key("11")).buckets == {}
    # AND the batch's deltas are learning.counter_keys' counters, time buckets under their #e keys
    deltas = batch.deltas()
    assert deltas[("c1", "comp:cr|headline=h1@region=pnw#e3")] == Delta(1, 1)
    assert deltas[("c1", "arm:cr|h1.i2@region=pnw#e4")] == Delta(1, 0, 1, Decimal("2.5"))
    assert {k for _, k in deltas} == {k for r in records for k in r.counter_keys()}


def test_one_bucket_batches_take_the_totals_as_the_bucket() -> None:
    # GIVEN a batch whose events are all in one bucket
    batch = aggregate([event(i, kind, ts=86400 * 7 + i) for i, kind in ((1, "imp"), (2, "click"), (3, "imp"))])
    for fold in batch.counters.values():
        # THEN every bucketed counter's bucket is its total, and the others have none
        assert fold.buckets == ({7: fold.total} if fold.bucketed else {})
    assert sum(f.bucketed for f in batch.counters.values()) == 7  # arm@region + 2 x (comp, comp@region, comp@device)


def test_aggregate_rejects_out_of_order_records() -> None:
    with pytest.raises(ValueError, match="out of order"):
        aggregate([event(2), event(1)])


def test_aggregate_is_exact_for_any_split() -> None:
    # Values are Decimals: summing any partition of a batch gives exactly the whole batch's sum.
    rng = random.Random(7)
    records = [event(i, "conv", value=Decimal(f"{rng.randrange(1, 10**6)}.{rng.randrange(100):02d}"))
               for i in range(1, 200)]
    whole = aggregate(records).deltas()[("c1", "arm:cr")]
    cut = rng.randrange(1, 198)
    parts = aggregate(records[:cut]).deltas()[("c1", "arm:cr")] + aggregate(records[cut:]).deltas()[("c1", "arm:cr")]
    assert parts == whole


def test_counter_row_maps_prefixes_to_sections() -> None:
    image = {"pk": "c1#comp:cr|headline=h1", "impressions": Decimal(10), "clicks": Decimal(2),
             "conversions": Decimal(1), "value": Decimal("4.5"), "seq_s1": "x"}
    assert counter_row(image) == ("c1", "components", "cr|headline=h1", [10, 2, 1, 4.5])
    assert counter_row({**image, "pk": "c1#split:holdout"})[1:3] == ("splits", "holdout")
    assert counter_row({**image, "pk": "c1#arm:cr|h1"})[1:3] == ("arms", "cr|h1")
    assert counter_row({**image, "pk": "c1#other:x"}) is None
    for bad in ({"pk": "no-hash"}, {**image, "impressions": Decimal("1.5")}, {**image, "clicks": "3"}):
        with pytest.raises(PoisonRecordError):
            counter_row(bad)


def test_counter_rows_expand_time_buckets_kept_in_the_item() -> None:
    # GIVEN a component counter item with two time buckets (fields not stored are 0) and a watermark
    image = {"pk": "c1#comp:cr|headline=h1", "impressions": Decimal(10), "clicks": Decimal(2),
             "conversions": Decimal(1), "value": Decimal("4.5"), "seq_s1": "x",
             "e20001i": Decimal(6), "e20001c": Decimal(1), "e20002i": Decimal(4), "e20002c": Decimal(1),
             "e20002n": Decimal(1), "e20002v": Decimal("4.5")}
    # THEN its rows are the all-time row and one #e<bucket> row per bucket, oldest first
    assert counter_rows(image) == [
        ("c1", "components", "cr|headline=h1", [10, 2, 1, 4.5]),
        ("c1", "components", "cr|headline=h1#e20001", [6, 1, 0, 0.0]),
        ("c1", "components", "cr|headline=h1#e20002", [4, 1, 1, 4.5]),
    ]
    assert bucket_rows(image)[20002] == [4, 1, 1, Decimal("4.5")]
    assert counter_rows({**image, "pk": "c1#other:x"}) == []
    # AND a malformed bucket attribute is poison that names it; look-alike names are not buckets
    for bad, name in (({"e20001c": Decimal("1.5")}, "e20001c"), ({"e20001v": "x"}, "e20001v"),
                      ({"e20001i": -1}, "e20001i"), ({"value": Decimal(-1)}, "'value'")):
        with pytest.raises(PoisonRecordError, match=name):
            counter_rows({**image, **bad})
    assert bucket_rows({**image, "e1x": 5, "eventual": 1, "e12": 3}).keys() == {20001, 20002}


def test_counter_rows_expand_device_cells_kept_in_the_item() -> None:
    # GIVEN a per-region combination item with a day bucket and two device cells (fields not stored are 0)
    image = {"pk": "c1#arm:cr|h1.i2@region=pnw", "impressions": Decimal(10), "clicks": Decimal(2),
             "seq_s1": "x", "e20001i": Decimal(10), "e20001c": Decimal(2),
             "@device=mobile:i": Decimal(7), "@device=mobile:c": Decimal(2), "@device=desktop:i": Decimal(3),
             "@device=desktop:n": Decimal(1), "@device=desktop:v": Decimal("9.5")}
    # THEN its rows are the all-time row, the bucket row and one @device=<d> row per cell (learning's keys)
    rows = counter_rows(image)
    assert rows == [
        ("c1", "arms", "cr|h1.i2@region=pnw", [10, 2, 0, 0.0]),
        ("c1", "arms", "cr|h1.i2@region=pnw#e20001", [10, 2, 0, 0.0]),
        ("c1", "arms", "cr|h1.i2@region=pnw@device=desktop", [3, 0, 1, 9.5]),
        ("c1", "arms", "cr|h1.i2@region=pnw@device=mobile", [7, 2, 0, 0.0]),
    ]
    assert all(cell_host(f"arm:{key}") == (f"arm:{rows[0][2]}", key[len(rows[0][2]):]) for _, _, key, _ in rows[2:])
    assert cell_rows(image)["@device=mobile"] == [7, 2, 0, Decimal(0)]
    assert cell_attribute("@device=mobile", 3) == "@device=mobile:v"
    assert cell_field("@device=mobile:v") == ("@device=mobile", 3)
    # AND a malformed cell attribute is poison that names it; look-alike names are not cells
    for bad, name in (({"@device=mobile:c": Decimal("1.5")}, "@device=mobile:c"),
                      ({"@device=tv:v": "x"}, "@device=tv:v"), ({"@device=tv:i": -1}, "@device=tv:i")):
        with pytest.raises(PoisonRecordError, match=name):
            counter_rows({**image, **bad})
    assert cell_rows({**image, "@device=tv": 5, "@device=tv:x": 1, "device=tv:i": 3}).keys() == {
        "@device=mobile", "@device=desktop"}


def test_cells_ride_in_their_host_and_split_at_its_watermark() -> None:
    # GIVEN one combination served on mobile (10, 11: click) and on desktop (12, 13), and a record without device
    records = [event(10, context={"region": "pnw", "device": "mobile"}),
               event(11, "click", context={"region": "pnw", "device": "mobile"}),
               event(12, context={"region": "pnw", "device": "desktop"}),
               event(13, "conv", value=Decimal("2.5"), context={"region": "pnw", "device": "desktop"}),
               event(14, context={"region": "pnw"})]
    batch = aggregate(records)
    host = batch.counters[("s1", "c1", "arm:cr|h1.i2@region=pnw")]
    # THEN the cells are not counters of their own (no write of their own) but sums in their host
    assert not any("@device=" in key and key.startswith("arm:") for _, _, key in batch.counters)
    assert host.total == Delta(3, 1, 1, Decimal("2.5"))
    assert host.cell_totals == {"@device=mobile": Delta(1, 1), "@device=desktop": Delta(1, 0, 1, Decimal("2.5"))}
    # AND after() splits them at the host's watermark
    assert host.after(sequence_key("11")).cells == {"@device=desktop": Delta(1, 0, 1, Decimal("2.5"))}
    assert host.after(sequence_key("13")).cells == {}
    # AND the batch's deltas name them with learning.counter_keys' keys
    assert {k for _, k in batch.deltas()} == {k for r in records for k in r.counter_keys()}


def test_stats_updates_keep_the_newest_image_per_counter() -> None:
    rows = [("c1", "arms", "a", [5, 1, 0, 0.0]), ("c1", "arms", "a", [7, 1, 0, 0.0]),
            ("c2", "splits", "optimized", [3, 0, 0, 0.0])]
    out = stats_updates(rows, now=99)
    assert out["c1"]["arms"] == {"a": [7, 1, 0, 0.0]}
    assert out["c1"]["updated_at"] == 99
    assert out["c2"]["splits"] == {"optimized": [3, 0, 0, 0.0]}


def test_prune_buckets_keeps_the_newest_window() -> None:
    obj = {"components": {"cr|h=1": [1, 0, 0, 0.0], "cr|h=1#e10": [1, 0, 0, 0.0], "cr|h=1#e20": [1, 0, 0, 0.0],
                          "cr|h=1@region=x#e7": [1, 0, 0, 0.0], "cr|h=1#e23": [1, 0, 0, 0.0]}}
    assert sorted(prune_buckets(obj, keep=14)["components"]) == ["cr|h=1", "cr|h=1#e10", "cr|h=1#e20", "cr|h=1#e23"]


def test_prune_buckets_prunes_combination_buckets_per_section() -> None:
    # GIVEN combination rows bucketed per region, an arm whose own name holds "#e", and components elsewhere
    obj = {"arms": {"cr|a@region=x#e30": [1, 0, 0, 0.0], "cr|a@region=x#e16": [1, 0, 0, 0.0],
                    "cr|a@region=x#e17": [1, 0, 0, 0.0], "cr|a@region=x": [3, 0, 0, 0.0], "sku#e1": [1, 0, 0, 0.0]},
           "components": {"cr|h=1#e2": [1, 0, 0, 0.0]}}
    pruned = prune_buckets(obj, keep=14)
    # THEN each section keeps its own newest window (30 - 14 < 17), and only per-region combination rows count
    assert sorted(pruned["arms"]) == ["cr|a@region=x", "cr|a@region=x#e17", "cr|a@region=x#e30", "sku#e1"]
    assert list(pruned["components"]) == ["cr|h=1#e2"]
