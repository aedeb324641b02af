"""dco.fold: parsing Events images, per-counter aggregation, counters -> stats rows (pure, no AWS)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from decimal import Decimal

import pytest
from dco.fold import (
    Delta,
    EventRecord,
    FoldBatch,
    Past,
    PoisonRecordError,
    aggregate,
    counter_row,
    counter_rows,
    decay_rows,
    parse_event,
    sequence_key,
    stats_updates,
)
from dco.learning.contract import (
    EPOCH_S,
    RECENT_HALF_LIFE_S,
    WEIGHT_SCALE,
    counter_keys,
    decay_attribute,
    decay_stamp,
)

IMAGE = {
    "campaign": "c1",
    "kind": "imp",
    "arm": "cr|h1.i2",
    "creative": "cr",
    "variants": ["headline=h1", "image=i2"],
    "context": {"region": "pnw", "device": "mobile"},
    "holdout": False,
}
CTX = "ctx:cr|h1.i2@device=mobile@region=pnw"  # the learner's counter of IMAGE
BOUNDARY = 2551 * EPOCH_S  # the first second of epoch 2551
HALF = RECENT_HALF_LIFE_S


def weight(offset: int) -> int:
    """The integer weight of an event ``offset`` seconds into its epoch, as the contract spells it out."""
    return round(2 ** (offset / HALF) * WEIGHT_SCALE)


FIRST = WEIGHT_SCALE  # the weight of an epoch's first second
LAST = weight(EPOCH_S - 1)  # the weight of its last second: just under 2 ** 8 times more


def event(seq: int, kind: str = "imp", **changes: object) -> EventRecord:
    return parse_event({**IMAGE, "kind": kind, **changes}, sequence=str(seq), shard="s1")


def summed(*parts: Mapping[tuple[str, str], Delta]) -> dict[tuple[str, str], Delta]:
    """Deltas of several applications added per key (what the Counters table holds after all of them)."""
    out: dict[tuple[str, str], Delta] = {}
    for part in parts:
        for key, delta in part.items():
            out[key] = out.get(key, Delta()) + delta
    return out


def test_parse_event_reads_every_field() -> None:
    record = parse_event({**IMAGE, "kind": "conv", "value": Decimal("12.50"), "ts": Decimal(BOUNDARY)},
                         sequence="42", shard="s1", created_at=7)
    assert record == EventRecord(
        campaign="c1", kind="conv", arm="cr|h1.i2", creative="cr", variants=("headline=h1", "image=i2"),
        context=(("device", "mobile"), ("region", "pnw")), holdout=False, value=Decimal("12.50"),
        sequence="42", shard="s1", created_at=7, ts=BOUNDARY,
    )
    assert record.delta() == Delta(conversions=1, value=Decimal("12.50"))
    assert event(1).ts is None


def test_counter_keys_are_the_learning_contract() -> None:
    # GIVEN a steered event of an assembled creative, with and without a time
    record = event(1)
    timed = event(1, ts=Decimal(BOUNDARY + 3))
    assert timed.ts == BOUNDARY + 3
    # THEN its counters are contract.counter_keys': the arm, the creative, the split and one ctx: counter; the time
    # adds no key (it weighs the ctx: counter's discounted sums, attributes of its item)
    assert record.counter_keys() == timed.counter_keys() == counter_keys(
        arm="cr|h1.i2", creative="cr", variants=["headline=h1", "image=i2"],
        context={"region": "pnw", "device": "mobile"}, holdout=False,
    ) == ["arm:cr|h1.i2", "arm:cr", "split:optimized", CTX]
    # AND a holdout event, and a creative that is its own arm, have no ctx: counter
    assert event(1, holdout=True).counter_keys() == ["arm:cr|h1.i2", "arm:cr", "split:holdout"]
    assert event(1, arm="static", creative="static", variants=[]).counter_keys() == ["arm:static", "split:optimized"]


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
        ({"ts": Decimal("-1")}, "ts"),
        ({"ts": "1714550400"}, "ts"),
        ({"ts": True}, "ts"),
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
    assert deltas[("c1", CTX)] == Delta(3, 1, 1, Decimal("10.25"))
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
    assert fold.after(sequence_key("9")) == Past(Delta(2, 1, 1, Decimal("2.5")), {}, sequence_key("13"), "10")
    assert fold.after(sequence_key("11")) == Past(Delta(1, 0, 1, Decimal("2.5")), {}, sequence_key("13"), "12")
    assert fold.after(sequence_key("13")) is None


def test_discounted_sums_straddle_an_epoch_boundary_and_split_at_a_watermark() -> None:
    # GIVEN a batch that straddles the start of epoch 2551 (the last second of 2550, then 2551's first seconds)
    # and one record without a time
    records = [event(10, ts=BOUNDARY - 1), event(11, "click", ts=BOUNDARY - 1), event(12, ts=BOUNDARY),
               event(13), event(14, "conv", value=Decimal("2.5"), ts=BOUNDARY + 1)]
    batch = aggregate(records)
    ctx = batch.counters[("s1", "c1", CTX)]
    arm = batch.counters[("s1", "c1", "arm:cr|h1.i2")]
    # THEN only the ctx: counter keeps discounted sums: per epoch, each field the sum of its events' integer
    # weights (the untimed record is only in the all-time total, the conversion's value in no discounted sum)
    assert ctx.discounted and not arm.discounted
    assert ctx.total == Delta(3, 1, 1, Decimal("2.5"))
    assert ctx.decayed == {2550: Delta(LAST, LAST), 2551: Delta(FIRST, 0, FIRST + 1)}
    assert arm.decayed == {}
    # AND after() splits the steps past a watermark the same way
    assert ctx.after(sequence_key("11")) == Past(
        Delta(2, 0, 1, Decimal("2.5")), {2551: Delta(FIRST, 0, FIRST + 1)}, sequence_key("14"), "12")
    assert ctx.after(sequence_key("10")).decayed == {2550: Delta(0, LAST), 2551: Delta(FIRST, 0, FIRST + 1)}
    assert ctx.after(sequence_key("12")).decayed == {2551: Delta(0, 0, FIRST + 1)}
    assert arm.after(sequence_key("11")).decayed == {}
    # AND the batch's deltas are contract.counter_keys' counters plus the discounted sums under #d<epoch> keys
    deltas = batch.deltas()
    assert deltas[("c1", f"{CTX}#d2550")] == Delta(LAST, LAST)
    assert deltas[("c1", f"{CTX}#d2551")] == Delta(FIRST, 0, FIRST + 1)
    assert {k for _, k in deltas} == {k for r in records for k in r.counter_keys()} | {
        f"{CTX}#d2550", f"{CTX}#d2551"}


def test_one_epoch_batches_sum_the_weights_of_their_events() -> None:
    # GIVEN a batch whose events are all in one epoch, an hour apart
    times = [BOUNDARY + 3600 * i for i in range(3)]
    kinds = ("imp", "click", "imp")
    batch = aggregate([event(i, kind, ts=t) for i, (kind, t) in enumerate(zip(kinds, times, strict=True), 1)])
    weights = [decay_stamp(t)[1] for t in times]
    assert weights == [FIRST, weight(3600), weight(7200)] and FIRST < weights[1] < weights[2]
    for fold in batch.counters.values():
        # THEN the ctx: counter's one epoch holds the summed weights, and the other counters have none
        assert fold.decayed == ({2551: Delta(weights[0] + weights[2], weights[1])} if fold.key == CTX else {})
    assert [f.key for f in batch.counters.values() if f.discounted] == [CTX]


def test_events_without_a_time_add_no_discounted_sums() -> None:
    # GIVEN a batch of steered events without ts (an older track function)
    batch = aggregate([event(1), event(2, "click"), event(3, "conv", value=Decimal(4))])
    ctx = batch.counters[("s1", "c1", CTX)]
    # THEN the ctx: counter counts them all-time, and keeps no discounted sums (nothing to write or publish)
    assert ctx.discounted and ctx.total == Delta(1, 1, 1, Decimal(4))
    assert ctx.decay_sums == {} and ctx.decayed == {} and ctx.after("").decayed == {}
    assert not any("#d" in key for _, key in batch.deltas())


def test_a_click_folded_in_a_later_batch_than_its_impression() -> None:
    # GIVEN an impression in the last second of epoch 2550, and its click a half-life later (epoch 2551) and a
    # conversion a second after that, each folded in its own batch
    impression = event(10, ts=BOUNDARY - 1)
    click = event(11, "click", ts=BOUNDARY + HALF - 1)
    conversion = event(12, "conv", value=Decimal("3.5"), ts=BOUNDARY + HALF)
    alone = [aggregate([r]).deltas() for r in (impression, click, conversion)]
    # THEN each batch adds its event's weight in its own epoch and field
    assert alone[0][("c1", f"{CTX}#d2550")] == Delta(LAST)
    assert alone[1][("c1", f"{CTX}#d2551")] == Delta(0, weight(HALF - 1))
    assert alone[2][("c1", f"{CTX}#d2551")] == Delta(0, 0, 2 * WEIGHT_SCALE)  # a half-life in: twice the first
    # AND the three batches sum to exactly the one batch that holds them all
    assert summed(*alone) == aggregate([impression, click, conversion]).deltas()


def test_aggregate_rejects_out_of_order_records() -> None:
    with pytest.raises(ValueError, match="out of order"):
        aggregate([event(2), event(1)])


def _split_at(batch: FoldBatch, prefix: FoldBatch, watermark: str) -> dict[tuple[str, str, str], tuple]:
    """Per counter of ``batch``: what the prefix's application plus ``after(watermark)`` add (the adapter's
    second round), as ``(total, decayed)``."""
    out = {}
    for ident, fold in batch.counters.items():
        done = prefix.counters.get(ident)
        total = done.total if done else Delta()
        decayed = dict(done.decayed) if done else {}
        past = fold.after(watermark)
        if past is not None:
            total = total + past.delta
            for epoch, part in past.decayed.items():
                decayed[epoch] = decayed.get(epoch, Delta()) + part
        out[ident] = (total, decayed)
    return out


def test_any_split_at_a_watermark_sums_exactly_to_the_clean_application() -> None:
    # GIVEN a batch of steered and holdout events with Decimal values, straddling an epoch boundary, some untimed
    rng = random.Random(7)
    records = []
    for i in range(1, 200):
        kind = rng.choice(["imp", "imp", "click", "conv"])
        changes: dict = {"ts": None if rng.random() < 0.1 else BOUNDARY + rng.randint(-4000, 4000),
                         "holdout": rng.random() < 0.1, "arm": rng.choice(["cr|h1.i2", "cr|h2.i2"])}
        if kind == "conv":
            changes["value"] = Decimal(f"{rng.randrange(1, 10**6)}.{rng.randrange(100):02d}")
        records.append(event(i, kind, **changes))
    whole = aggregate(records)
    want = {ident: (fold.total, fold.decayed) for ident, fold in whole.counters.items()}
    assert any(len(fold.decayed) == 2 for fold in whole.counters.values())  # the split crosses epochs
    for cut in range(len(records) + 1):
        # WHEN the counters already hold the records up to a watermark (an earlier, partial application)
        prefix = aggregate(records[:cut])
        watermark = records[cut - 1].sequence_key if cut else ""
        # THEN the prefix plus the steps past the watermark is exactly the clean application, discounted sums too
        assert _split_at(whole, prefix, watermark) == want, cut
        # AND the two applications' deltas sum to the whole batch's
        assert summed(prefix.deltas(), aggregate(records[cut:]).deltas()) == whole.deltas(), cut


def test_counter_row_maps_prefixes_to_sections() -> None:
    image = {"pk": "c1#ctx:cr|h1.i2@region=pnw", "impressions": Decimal(10), "clicks": Decimal(2),
             "conversions": Decimal(1), "value": Decimal("4.5"), "seq_s1": "x"}
    assert counter_row(image) == ("c1", "contexts", "cr|h1.i2@region=pnw", [10, 2, 1, 4.5])
    assert counter_row({**image, "pk": "c1#split:holdout"})[1:3] == ("splits", "holdout")
    assert counter_row({**image, "pk": "c1#arm:cr|h1"})[1:3] == ("arms", "cr|h1")
    assert counter_row({**image, "pk": "c1#other:x"}) is None
    assert counter_row({**image, "pk": "c1#arm:"}) is None
    for bad in ({"pk": "no-hash"}, {"pk": "#arm:a"}, {**image, "impressions": Decimal("1.5")},
                {**image, "clicks": "3"}, {**image, "value": Decimal(-1)}):
        with pytest.raises(PoisonRecordError):
            counter_row(bad)


def test_counter_rows_expand_the_discounted_sums_kept_in_the_item() -> None:
    # GIVEN a ctx: counter item with discounted sums in two epochs (fields not stored are 0) and a watermark
    image = {"pk": f"c1#{CTX}", "impressions": Decimal(10), "clicks": Decimal(2),
             "conversions": Decimal(1), "value": Decimal("4.5"), "seq_s1": "x",
             "d2551i": Decimal(700_000), "d2551c": Decimal(70_000), "d2550i": Decimal(6_000_000),
             "d2550n": Decimal(900_000)}
    # THEN its rows are the all-time row and one #d<epoch> row per epoch, oldest first, with no value
    key = CTX[len("ctx:"):]
    assert counter_rows(image) == [
        ("c1", "contexts", key, [10, 2, 1, 4.5]),
        ("c1", "contexts", f"{key}#d2550", [6_000_000, 0, 900_000, 0.0]),
        ("c1", "contexts", f"{key}#d2551", [700_000, 70_000, 0, 0.0]),
    ]
    assert decay_rows(image) == {2550: [6_000_000, 0, 900_000], 2551: [700_000, 70_000, 0]}
    assert counter_rows({**image, "pk": "c1#other:x"}) == []
    # AND a malformed discounted sum is poison that names it; look-alike names are not sums
    for bad, name in (({"d2551c": Decimal("1.5")}, "d2551c"), ({"d2551n": "x"}, "d2551n"),
                      ({"d2551i": -1}, "d2551i"), ({"value": Decimal(-1)}, "'value'")):
        with pytest.raises(PoisonRecordError, match=name):
            counter_rows({**image, **bad})
    assert decay_rows({**image, "d1x": 5, "d1v": 5, "deleted": 1, "d12": 3, "dx1i": 2}).keys() == {2550, 2551}


def test_counter_rows_of_the_written_item_are_the_batch_deltas() -> None:
    # GIVEN a batch over an epoch boundary, and the items one clean application writes (docs/storage.md: the
    # all-time counts and, per epoch, d<epoch><i|c|n> for the fields that are not zero)
    records = [event(1, ts=BOUNDARY - 5), event(2, "click", ts=BOUNDARY - 4), event(3, ts=BOUNDARY + 9),
               event(4, "conv", value=Decimal("7.25"), ts=BOUNDARY + 10), event(5, holdout=True, ts=BOUNDARY)]
    batch = aggregate(records)
    rows = []
    for fold in batch.counters.values():
        total = fold.total
        image: dict = {"pk": fold.pk, "impressions": total.impressions, "clicks": total.clicks,
                       "conversions": total.conversions, "value": total.value}
        for epoch, part in fold.decayed.items():
            for index, amount in enumerate((part.impressions, part.clicks, part.conversions)):
                if amount:
                    image[decay_attribute(epoch, index)] = Decimal(amount)
        rows += counter_rows(image)
    # THEN publish-stats reads back every counter and discounted sum of the batch, under the same keys
    prefix = {"arms": "arm:", "splits": "split:", "contexts": "ctx:"}
    read = {(c, prefix[s] + k): Delta(i, n_c, n, Decimal(str(v))) for c, s, k, (i, n_c, n, v) in rows}
    assert read == batch.deltas()
    assert read[("c1", f"{CTX}#d2550")] == Delta(decay_stamp(BOUNDARY - 5)[1], decay_stamp(BOUNDARY - 4)[1])


def test_stats_updates_keep_the_newest_image_per_counter() -> None:
    rows = [("c1", "arms", "a", [5, 1, 0, 0.0]), ("c1", "arms", "a", [7, 1, 0, 0.0]),
            ("c1", "contexts", "cr|a@region=x#d2551", [70_000, 0, 0, 0.0]),
            ("c1", "contexts", "cr|a@region=x#d2551", [65_536, 67_476, 0, 0.0]),
            ("c2", "splits", "optimized", [3, 0, 0, 0.0])]
    out = stats_updates(rows, now=99)
    assert out["c1"]["arms"] == {"a": [7, 1, 0, 0.0]}
    assert out["c1"]["contexts"] == {"cr|a@region=x#d2551": [70_000, 67_476, 0, 0.0]}  # sums only grow: maxed
    assert out["c1"]["updated_at"] == 99 and out["c1"]["version"] == 2
    assert out["c2"]["splits"] == {"optimized": [3, 0, 0, 0.0]}
    assert set(out["c2"]) == {"version", "campaign", "updated_at", "arms", "splits", "contexts"}
