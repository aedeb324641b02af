"""fold on moto: the handler with its sample events, and exactly-once under redelivery and injected failures.

The fault-injection tests replay Lambda's stream semantics: a batch is a contiguous run of one shard; after a
crash the whole batch comes again; after a partial batch response the shard is re-read from the lowest reported
sequence number (and the new batch may run further, ending at a different sequence number); much later the
same records may come again. Whatever happens, the counters, and the discounted sums the ctx: counters keep in
their items, must equal one clean application.
"""

from __future__ import annotations

import copy
import random
import re
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from dco.aws.counters import CounterStore, decode_stream
from dco.fold import Delta, EventRecord, aggregate, decay_rows, parse_event
from dco.learning.contract import DECAY_SUFFIX, EPOCH_S, KEEP_EPOCHS, decay_stamp

from tests.conftest import load_event
from tests.functional.conftest import AwsResources, load_handler

SHARD = "shardId-00000001714550000000-0a1b2c3d"
BOUNDARY = (1_714_550_400 // EPOCH_S + 1) * EPOCH_S  # the first second of the epoch after the sample events'


# ------------------------------------------------------------------------------------------------ helpers


def item_counters(item: dict[str, Any]) -> dict[str, Delta]:
    """A counter item's counts as Deltas: its all-time counts under its pk and the discounted sums of each epoch
    it keeps under ``<pk>#d<epoch>`` (the keys of FoldBatch.deltas; watermarks left out)."""
    pk = item["pk"]["S"]
    out = {pk: Delta(int(item["impressions"]["N"]), int(item["clicks"]["N"]), int(item["conversions"]["N"]),
                     Decimal(item["value"]["N"]))}
    plain = {name: TypeDeserializer().deserialize(value) for name, value in item.items()}
    for epoch, (i, c, n) in decay_rows(plain).items():
        out[f"{pk}{DECAY_SUFFIX}{epoch}"] = Delta(i, c, n)
    return out


def item_of(pk: str) -> str:
    """The item that holds counter ``<campaign>#<key>``: the discounted sums ``<key>#d<epoch>`` are attributes of
    the item of ``<key>`` (docs/storage.md)."""
    return re.sub(r"#d\d+$", "", pk)


def counters(aws: AwsResources) -> dict[str, Delta]:
    """Every counter (and epoch of discounted sums) of the table as a Delta."""
    out: dict[str, Delta] = {}
    paginator = aws.dynamodb.get_paginator("scan")
    for page in paginator.paginate(TableName=aws.counters_table, ConsistentRead=True):
        for item in page["Items"]:
            out.update(item_counters(item))
    return out


def campaign_counters(aws: AwsResources, records: list[EventRecord]) -> dict[str, Delta]:
    """The counters of the keys ``records`` touch (BatchGetItem: no scan of the whole table)."""
    out: dict[str, Delta] = {}
    keys = sorted({item_of(k) for k in expected(records)})
    for start in range(0, len(keys), 100):
        request = {aws.counters_table: {"Keys": [{"pk": {"S": k}} for k in keys[start:start + 100]],
                                        "ConsistentRead": True}}
        for item in aws.dynamodb.batch_get_item(RequestItems=request)["Responses"][aws.counters_table]:
            out.update(item_counters(item))
    return out


def expected(records: list[EventRecord]) -> dict[str, Delta]:
    """What one clean application of ``records`` gives (pure)."""
    return {f"{c}#{k}": d for (c, k), d in aggregate(records).deltas().items()}


def synthetic(
    seed: int, n: int, campaign: str, shards: tuple[str, ...] = (SHARD,), *, arms: int = 4, small: bool = False
) -> list[EventRecord]:
    """``n`` events over a few arms, variants and contexts, spread over ``shards`` with increasing sequences.

    ``small`` keeps the variants few (one slot), for the write-by-write tests. Every event has a region and a
    device. Event times straddle an epoch boundary, so the ctx: counters add discounted sums to two epochs in
    one write; one event in twenty has no time (no discounted sum).
    """
    rng = random.Random(seed)
    records = []
    for i in range(n):
        arm_n = rng.randrange(arms)
        kind = rng.choices(["imp", "click", "conv"], weights=[8, 2, 1])[0]
        context = {"region": rng.choice(["pnw", "ne"]), "device": rng.choice(["mobile", "desktop"])}
        image = {
            "campaign": campaign, "kind": kind, "arm": f"cr|h{arm_n}.i{arm_n % 2}", "creative": "cr",
            "variants": [f"headline=h{arm_n}"] if small else [f"headline=h{arm_n}", f"image=i{arm_n % 2}"],
            "context": context,
            "holdout": rng.random() < 0.1, "value": Decimal(f"{rng.randrange(1, 9999)}.{rng.randrange(100):02d}"),
        }
        at = BOUNDARY - n // 2 + i  # the batch straddles an epoch boundary
        if rng.random() >= 0.05:
            image["ts"] = Decimal(at)
        shard = shards[i % len(shards)]
        records.append(parse_event(image, sequence=str(4421584500000000017450439000 + i), shard=shard,
                                   created_at=at))
    return records


class Crash(RuntimeError):
    """The function dies mid-batch (timeout, out of memory): Lambda retries the whole batch."""


class FaultyClient:
    """A DynamoDB client that lets ``allow`` UpdateItem calls through, then crashes or throttles."""

    def __init__(self, client: Any, allow: int, mode: str) -> None:
        self.client, self.allow, self.mode, self.calls = client, allow, mode, 0

    def update_item(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls > self.allow:
            if self.mode == "crash":
                raise Crash(f"killed after {self.allow} writes")
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                              "UpdateItem")
        return self.client.update_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def deliver(store: CounterStore, records: list[EventRecord]) -> list[str]:
    """One invocation over ``records`` (one shard's run); returns the failed sequence numbers (raises on crash)."""
    return store.apply(aggregate(records)).failed_sequences


def from_sequence(records: list[EventRecord], sequence: str) -> list[EventRecord]:
    """Lambda's redelivery after a partial batch response: the shard from ``sequence`` on."""
    return [r for r in records if r.sequence_key >= sequence.zfill(40)]


# ------------------------------------------------------------------------------------------------ handler


@pytest.fixture
def fold_app(settings: Any, aws: AwsResources) -> Any:
    return load_handler("fold")


def test_handler_folds_the_sample_batch(fold_app: Any, aws: AwsResources, lambda_context: Any) -> None:
    event = load_event("fold", "batch")
    response = fold_app.lambda_handler(event, lambda_context)

    assert response == {"batchItemFailures": []}
    records, poison = decode_stream(event["Records"], "stream")
    assert poison == []
    got = counters(aws)
    assert got == expected(records)
    assert got["spring-sale#arm:cr-retail|h01.img07"] == Delta(impressions=2, clicks=1)
    assert got["spring-sale#split:holdout"] == Delta(impressions=1)
    assert got["spring-sale#arm:cr-product|SKU-1"] == Delta(impressions=1)
    # AND the steered retail decision's ctx: counter holds its counts and, in its epoch, the events' weights
    ctx = "spring-sale#ctx:cr-retail|h01.img07@device=mobile@region=pnw"
    epoch, first = decay_stamp(1_714_550_400)
    assert got[ctx] == Delta(impressions=2, clicks=1)
    assert got[f"{ctx}#d{epoch}"] == Delta(first + decay_stamp(1_714_550_401)[1], decay_stamp(1_714_550_405)[1])
    assert sorted(k for k in got if "#ctx:" in k) == [ctx, f"{ctx}#d{epoch}"]  # holdout and static: none
    item = aws.dynamodb.get_item(TableName=aws.counters_table, Key={"pk": {"S": ctx}})["Item"]
    assert item[f"d{epoch}i"] == {"N": str(first + decay_stamp(1_714_550_401)[1])}
    assert f"d{epoch}n" not in item  # a field that is zero is not written


def test_writes_equal_distinct_counters(aws: AwsResources, settings: Any) -> None:
    records = synthetic(1, 1000, "c-writes")
    batch = aggregate(records)
    result = CounterStore(aws.counters_table, aws.dynamodb).apply(batch)
    assert result.writes == result.counters == len(batch.counters) == result.applied
    assert result.counters < len(records)  # 1,000 events, a few dozen counters
    assert counters(aws) == expected(records)


def test_redelivered_batch_changes_nothing(fold_app: Any, aws: AwsResources, lambda_context: Any) -> None:
    event = load_event("fold", "batch")
    fold_app.lambda_handler(event, lambda_context)
    once = counters(aws)

    # WHEN the whole batch, then its second half (a partial redelivery) come again
    assert fold_app.lambda_handler(copy.deepcopy(event), lambda_context) == {"batchItemFailures": []}
    half = {"Records": event["Records"][2:]}
    assert fold_app.lambda_handler(half, lambda_context) == {"batchItemFailures": []}

    # THEN the counters are those of one application, and every counter was a conditional skip
    assert counters(aws) == once
    result = fold_app.STORE.apply(aggregate(decode_stream(event["Records"], "stream")[0]))
    assert result.applied == 0 and result.skipped == result.counters == result.writes


def test_poison_record_is_reported_and_the_rest_applied_once(
    fold_app: Any, aws: AwsResources, lambda_context: Any
) -> None:
    event = load_event("fold", "poison")
    poison_sequence = event["Records"][2]["dynamodb"]["SequenceNumber"]

    response = fold_app.lambda_handler(event, lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": poison_sequence}]}
    good, poison = decode_stream(event["Records"], "stream")
    assert [seq for seq, _ in poison] == [poison_sequence] and len(good) == 4
    assert counters(aws) == expected(good)

    # Lambda redelivers from the poison record on, until it gives up: nothing is counted twice.
    redelivery = {"Records": event["Records"][2:]}
    for _ in range(3):
        assert fold_app.lambda_handler(redelivery, lambda_context) == response
    assert counters(aws) == expected(good)
    assert counters(aws)["spring-sale#arm:cr-retail"] == Delta(2, 1, 1, Decimal("42.50"))


def test_windowed_event_names_the_shard_and_returns_state(
    fold_app: Any, aws: AwsResources, lambda_context: Any
) -> None:
    event = load_event("fold", "windowed")
    assert fold_app.lambda_handler(event, lambda_context) == {"batchItemFailures": [], "state": {}}
    item = aws.dynamodb.get_item(TableName=aws.counters_table, Key={"pk": {"S": "spring-sale#arm:cr-retail"}})
    watermark = item["Item"][f"seq_{event['shardId']}"]["S"]
    assert watermark == "0000000000004421584500000000017450439094@1714550407"


# ------------------------------------------------------------------------------------------------ exactly once


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("mode", ["crash", "throttle"])
def test_exactly_once_under_failure_after_every_write(aws: AwsResources, seed: int, mode: str) -> None:
    shards = (SHARD, "shardId-00000001714550000000-ffff0000")
    clean = CounterStore(aws.counters_table, aws.dynamodb, max_workers=1)
    k = 0
    while True:
        campaign = f"c{seed}-{mode}-{k}"
        records = synthetic(seed, 16, campaign, shards, arms=2, small=True)
        first, later = records[:10], records[10:]  # the stream grows while the batch is retried
        epochs = {key.rpartition(DECAY_SUFFIX)[2] for key in expected(first) if DECAY_SUFFIX in key}
        assert epochs == {str(BOUNDARY // EPOCH_S - 1), str(BOUNDARY // EPOCH_S)}  # sums on both sides of it
        by_shard = {s: [r for r in first if r.shard == s] for s in shards}
        if k >= len(aggregate(by_shard[SHARD]).counters):
            break
        faulty = CounterStore(aws.counters_table, FaultyClient(aws.dynamodb, k, mode), max_workers=1,
                              max_attempts=2, sleep=lambda _s: None)
        # GIVEN the other shard folds into the same counters
        assert deliver(clean, by_shard[shards[1]]) == []
        # WHEN the first shard's batch fails after k writes
        if mode == "crash":
            with pytest.raises(Crash):
                deliver(faulty, by_shard[SHARD])
            # THEN Lambda retries the whole batch...
            assert deliver(clean, by_shard[SHARD]) == []
        else:
            failed = deliver(faulty, by_shard[SHARD])
            assert failed, "the throttled counters are reported"
            # ...or, after a partial batch response, re-reads the shard from the lowest failed record: a batch
            # that runs further than the first one (new records arrived meanwhile)
            shard_records = [r for r in records if r.shard == SHARD]
            assert deliver(clean, from_sequence(shard_records, failed[0])) == []
        # AND the rest of the stream is folded, and an hour later it all comes again
        for shard in shards:
            whole = [r for r in records if r.shard == shard]
            assert deliver(clean, [r for r in later if r.shard == shard]) == []
            assert deliver(clean, whole) == []
        assert campaign_counters(aws, records) == expected(records), f"seed {seed}, {mode} after {k} writes"
        k += 1
    assert k > 5


def test_exactly_once_with_concurrent_writers(aws: AwsResources) -> None:
    records = synthetic(9, 300, "c-parallel")
    store = CounterStore(aws.counters_table, aws.dynamodb, max_workers=8)
    assert deliver(store, records[:200]) == []
    assert deliver(store, records[100:]) == []  # overlaps the first batch
    assert deliver(store, records) == []
    assert counters(aws) == expected(records)


def test_throttling_is_retried_then_reported(aws: AwsResources) -> None:
    records = synthetic(4, 50, "c-throttle")

    class Throttled(FaultyClient):
        def update_item(self, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls % 3:  # two throttles before each success
                raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "UpdateItem")
            return self.client.update_item(**kwargs)

    sleeps: list[float] = []
    store = CounterStore(aws.counters_table, Throttled(aws.dynamodb, 0, ""), max_workers=1, sleep=sleeps.append)
    result = store.apply(aggregate(records))
    assert result.failed_sequences == [] and result.applied == result.counters
    assert result.throttled == 2 * result.counters and sleeps[:2] == [0.05, 0.1]
    assert counters(aws) == expected(records)

    # With fewer attempts than throttles, every counter is reported by its first record, nothing applied twice.
    more = synthetic(5, 20, "c-throttle-2")
    stubborn = CounterStore(aws.counters_table, FaultyClient(aws.dynamodb, 0, "throttle"), max_workers=1,
                            max_attempts=3, sleep=lambda _s: None)
    result = stubborn.apply(aggregate(more))
    assert result.failed == result.counters and result.failed_sequences[0] == more[0].sequence
    assert deliver(CounterStore(aws.counters_table, aws.dynamodb), more) == []
    assert {pk: d for pk, d in counters(aws).items() if pk.startswith("c-throttle-2#")} == expected(more)


def test_stale_watermarks_of_closed_shards_are_pruned(aws: AwsResources) -> None:
    store = CounterStore(aws.counters_table, aws.dynamodb)
    old = [EventRecord("c-prune", "imp", "a", "a", sequence="100", shard="old-shard", created_at=1_000)]
    new = [EventRecord("c-prune", "imp", "a", "a", sequence="5", shard="new-shard", created_at=1_000 + 49 * 3600)]
    assert deliver(store, old) == []
    result = store.apply(aggregate(new))
    assert result.pruned == 2 and result.writes == 2 + 2  # 2 counters, each updated then pruned
    item = aws.dynamodb.get_item(TableName=aws.counters_table, Key={"pk": {"S": "c-prune#arm:a"}})["Item"]
    assert "seq_old-shard" not in item and "seq_new-shard" in item
    assert item["impressions"] == {"N": "2"}


def test_epochs_older_than_the_window_are_removed(aws: AwsResources) -> None:
    # GIVEN a ctx: counter with discounted sums in epoch E (an impression and a click: two attributes), then events
    # KEEP_EPOCHS - 1 and KEEP_EPOCHS epochs later
    store = CounterStore(aws.counters_table, aws.dynamodb)
    first = BOUNDARY // EPOCH_S
    pk = "c-expire#ctx:cr|h1"

    def record(sequence: int, ts: int, kind: str = "imp") -> EventRecord:
        return parse_event({"campaign": "c-expire", "kind": kind, "arm": "cr|h1", "creative": "cr",
                            "variants": ["headline=h1"], "ts": ts}, sequence=str(sequence), shard="s1",
                           created_at=ts)

    def attributes() -> set[str]:
        item = aws.dynamodb.get_item(TableName=aws.counters_table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        return {name for name in item["Item"] if re.fullmatch(r"d\d+[icn]", name)}

    early = BOUNDARY + 5
    opening = [record(1, early), record(2, early + 1, "click")]
    assert deliver(store, opening) == []
    later = BOUNDARY + (KEEP_EPOCHS - 1) * EPOCH_S
    result = store.apply(aggregate([record(3, later)]))
    assert result.expired == 0 and result.writes == result.counters  # E is still among the newest KEEP_EPOCHS
    assert attributes() == {f"d{first}i", f"d{first}c", f"d{first + KEEP_EPOCHS - 1}i"}
    # WHEN an event of epoch E + KEEP_EPOCHS arrives (a click), THEN epoch E leaves the window of the ctx: counter
    # (the only counter with discounted sums): one REMOVE write, one epoch expired
    last = BOUNDARY + KEEP_EPOCHS * EPOCH_S + 7
    result = store.apply(aggregate([record(4, last, "click")]))
    assert result.expired == 1 and result.writes == result.counters + 1
    got = counters(aws)
    assert f"{pk}#d{first}" not in got
    assert got[f"{pk}#d{first + KEEP_EPOCHS - 1}"] == Delta(decay_stamp(later)[1])
    assert got[f"{pk}#d{first + KEEP_EPOCHS}"] == Delta(0, decay_stamp(last)[1])
    assert got[pk] == Delta(2, 2)  # the all-time counts keep everything
    assert attributes() == {f"d{first + KEEP_EPOCHS - 1}i", f"d{first + KEEP_EPOCHS}c"}
    # AND a redelivery of the first batch changes nothing: a conditional skip, epoch E does not come back
    result = store.apply(aggregate(opening))
    assert result.skipped == result.counters and result.writes == result.counters and result.expired == 0
    # AND a late record of epoch E (newer in the stream) counts all-time, and its sum is dropped in the same batch
    result = store.apply(aggregate([record(5, early + 60)]))
    assert result.applied == result.counters and result.expired == 1
    assert attributes() == {f"d{first + KEEP_EPOCHS - 1}i", f"d{first + KEEP_EPOCHS}c"}
    assert counters(aws)[pk] == Delta(3, 2)


def test_a_click_folded_in_a_later_batch_than_its_impression(aws: AwsResources) -> None:
    # GIVEN an impression in the last second of an epoch and, in later batches, its click in the next epoch and a
    # second impression of the same decision there too
    store = CounterStore(aws.counters_table, aws.dynamodb)
    decision = {"campaign": "c-late", "arm": "cr|h1.i2", "creative": "cr", "variants": ["headline=h1", "image=i2"],
                "context": {"region": "pnw", "device": "mobile"}}
    impression, click, again = (
        parse_event({**decision, "kind": kind, "ts": ts}, sequence=str(900 + n), shard=SHARD, created_at=ts)
        for n, (kind, ts) in enumerate((("imp", BOUNDARY - 1), ("click", BOUNDARY + 3600), ("imp", BOUNDARY + 3601)))
    )
    # WHEN each is folded in its own batch (the click's batch delivered twice)
    for batch in ([impression], [click], [click], [again]):
        assert deliver(store, batch) == []
    # THEN the counters are one clean application of all three: the impression's weight in its epoch, the click's
    # and the second impression's in the next
    got = campaign_counters(aws, [impression, click, again])
    assert got == expected([impression, click, again])
    ctx = "c-late#ctx:cr|h1.i2@device=mobile@region=pnw"
    epoch = BOUNDARY // EPOCH_S
    assert got[ctx] == Delta(2, 1)
    assert got[f"{ctx}#d{epoch - 1}"] == Delta(decay_stamp(BOUNDARY - 1)[1])
    assert got[f"{ctx}#d{epoch}"] == Delta(decay_stamp(BOUNDARY + 3601)[1], decay_stamp(BOUNDARY + 3600)[1])
