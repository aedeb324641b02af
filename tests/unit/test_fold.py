"""dco.fold: parsing Events images, per-counter aggregation, counters -> stats rows (pure, no AWS)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from dco.fold import (
    Delta,
    EventRecord,
    PoisonRecordError,
    aggregate,
    counter_row,
    parse_event,
    prune_buckets,
    sequence_key,
    stats_updates,
)
from dco.learning import counter_keys

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
    assert fold.after(sequence_key("9")) == (Delta(2, 1, 1, Decimal("2.5")), sequence_key("13"), "10")
    assert fold.after(sequence_key("11")) == (Delta(1, 0, 1, Decimal("2.5")), sequence_key("13"), "12")
    assert fold.after(sequence_key("13")) is None


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
