"""publish-stats on moto: merge by maximum, idempotent and order-free on the counts, conditional writes that survive
races, the learner's models refitted (warm) at every publication that changes the counts, a stored object that does
not validate never replaced, and the round trip events -> fold -> Counters stream -> publish-stats -> stats object
== counters."""

from __future__ import annotations

import copy
import math
from typing import Any

import msgpack
import pytest
from dco.aws.counters import decode_stream
from dco.aws.stats_store import StatsConflictError, StatsStore, stats_key
from dco.fold import aggregate
from dco.learning.contract import COUNTER_SECTIONS, DECAY_SUFFIX, KEEP_EPOCHS, decay_stamp, split_decay
from dco.learning.model import validate_models
from dco.stats import StatsTable, validate_stats

from tests.conftest import load_event
from tests.functional.conftest import AwsResources, load_handler

NOW = 1_714_551_000
COLD = [math.log(0.5), math.log(0.5)]  # the memory weights of a fit that starts from nothing


@pytest.fixture
def publish_app(settings: Any, aws: AwsResources) -> Any:
    app = load_handler("publish_stats")
    app.clock = lambda: NOW
    return app


def stored(aws: AwsResources, campaign: str, bucket: str | None = None) -> tuple[dict[str, Any], str]:
    response = aws.s3.get_object(Bucket=bucket or aws.bucket, Key=stats_key(campaign))
    return msgpack.unpackb(response["Body"].read(), raw=False), response["ETag"]


def counts(obj: dict[str, Any]) -> dict[str, Any]:
    """The counter sections of a stats object (what the merge by maximum decides alone)."""
    return {section: obj.get(section, {}) for section in COUNTER_SECTIONS}


def layout(obj: dict[str, Any]) -> dict[str, Any]:
    """Per creative and objective, what a model was fitted on: its impressions, variant ids and dimensions."""
    return {
        creative: {
            objective: (m["impressions"], [sorted(v) for v in m["variants"]], sorted(m["dims"]))
            for objective, m in per.items()
        }
        for creative, per in obj["models"].items()
    }


def learner_rows(ts: int, rows: dict[str, list[int]]) -> dict[str, list[Any]]:
    """``contexts`` rows as the fold keeps them: each key's totals and its events' discounted sums at ``ts``."""
    epoch, weight = decay_stamp(ts)
    out: dict[str, list[Any]] = {}
    for key, (impressions, clicks, conversions) in rows.items():
        out[key] = [impressions, clicks, conversions, 0.0]
        out[f"{key}{DECAY_SUFFIX}{epoch}"] = [impressions * weight, clicks * weight, conversions * weight, 0]
    return out


FIRST = learner_rows(NOW - 3600, {
    "cr|h1.i1@device=mobile@region=pnw": (400, 8, 1),
    "cr|h2.i1@device=mobile@region=pnw": (380, 21, 0),
    "cr|h1.i2@device=desktop@region=ne": (300, 3, 0),
    "cr|h2.i2@device=desktop@region=ne": (310, 9, 2),
})


# ------------------------------------------------------------------------------------------------ the handler


def test_handler_publishes_the_sample_batch(publish_app: Any, aws: AwsResources, lambda_context: Any) -> None:
    response = publish_app.lambda_handler(load_event("publish_stats", "batch"), lambda_context)
    assert response == {"batchItemFailures": []}

    obj, _ = stored(aws, "spring-sale")
    # the counts: arms, splits and the learner's ctx: counters, each with a row per epoch of discounted sums
    mobile, desktop = "cr-retail|h01.img07@device=mobile@region=pnw", "cr-retail|h02.img07@device=desktop@region=pnw"
    assert {k: v for k, v in obj.items() if k != "models"} == {
        "version": 2,
        "campaign": "spring-sale",
        "updated_at": NOW,
        "arms": {"cr-retail|h01.img07": [121, 7, 0, 0.0], "cr-retail": [300, 11, 2, 85.0]},
        "splits": {"optimized": [1200, 40, 5, 210.0]},
        "contexts": {
            mobile: [90, 4, 1, 42.5],
            f"{mobile}#d2479": [60 * 10_569_577, 3 * 10_569_577, 10_569_577, 0.0],
            f"{mobile}#d2480": [30 * 1_321_197, 1_321_197, 0, 0.0],
            desktop: [31, 0, 0, 0.0],
            f"{desktop}#d2480": [31 * 1_321_197, 0, 0, 0.0],
        },
    }
    # AND the models fitted from them: one per objective of the assembled creative, valid, fitted now
    assert validate_models(obj["models"]) == obj["models"]
    assert set(obj["models"]) == {"cr-retail"} and set(obj["models"]["cr-retail"]) == {"click", "conversion"}
    for model in obj["models"]["cr-retail"].values():
        assert model["fitted_at"] == NOW and model["impressions"] == 121
        assert model["variants"] == [["h01", "h02"], ["img07"]]
        assert model["dims"] == ["device", "region"] and model["values"] == [["mobile", "desktop"], ["pnw"]]
        assert model["log_weights"] == COLD  # the first fit
    table = StatsTable.from_object(obj)  # what decide loads
    assert table.get("cr-retail|h01.img07").impressions == 121
    assert table.model("cr-retail", "click") == obj["models"]["cr-retail"]["click"]
    assert table.context_rows()[mobile] == [90, 4, 1, 42.5]
    # a campaign without ctx: counters has no models
    other, _ = stored(aws, "winter-clearance")
    assert other["arms"] == {"cr-static-300x250": [75, 1, 0, 0.0]}
    assert other["contexts"] == {} and other["models"] == {}


def test_same_batch_twice_changes_nothing(publish_app: Any, aws: AwsResources, lambda_context: Any) -> None:
    event = load_event("publish_stats", "batch")
    publish_app.lambda_handler(event, lambda_context)
    first, etag = stored(aws, "spring-sale")

    publish_app.clock = lambda: NOW + 60  # a replay later: counts unchanged -> no new object version (no refit)
    assert publish_app.lambda_handler(copy.deepcopy(event), lambda_context) == {"batchItemFailures": []}
    assert stored(aws, "spring-sale") == (first, etag)


def test_two_batches_in_either_order_give_the_same_counts(
    aws: AwsResources, settings: Any, lambda_context: Any
) -> None:
    records = load_event("publish_stats", "batch")["Records"]
    a, b = {"Records": records[:3] + records[5:]}, {"Records": records[3:5] + records[:1]}
    aws.s3.create_bucket(Bucket="dco-other-bucket")
    app = load_handler("publish_stats")
    app.clock = lambda: NOW
    results = []
    for bucket, order in ((aws.bucket, (a, b)), ("dco-other-bucket", (b, a))):
        app.STORE = StatsStore(bucket, aws.s3)
        for event in order:
            assert app.lambda_handler(copy.deepcopy(event), lambda_context)["batchItemFailures"] == []
        results.append(stored(aws, "spring-sale", bucket)[0])
    assert counts(results[0]) == counts(results[1])
    assert results[0]["updated_at"] == results[1]["updated_at"] == NOW
    # the older image of arm cr-retail|h01.img07 (120 impressions) never wins over the newer (121)
    assert results[0]["arms"]["cr-retail|h01.img07"] == [121, 7, 0, 0.0]
    # AND the models are fitted on the same data (their numbers carry each order's history: warm starts)
    assert layout(results[0]) == layout(results[1]) == {
        "cr-retail": {objective: (121, [["h01", "h02"], ["img07"]], ["device", "region"])
                      for objective in ("click", "conversion")}}


def test_poison_counter_record_is_reported(publish_app: Any, aws: AwsResources, lambda_context: Any) -> None:
    event = load_event("publish_stats", "batch")
    event["Records"][1]["dynamodb"]["NewImage"]["impressions"] = {"S": "lots"}
    response = publish_app.lambda_handler(event, lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["dynamodb"]["SequenceNumber"]}]}
    assert "cr-retail" not in stored(aws, "spring-sale")[0]["arms"]


def test_an_invalid_stored_object_fails_its_campaign_only(
    publish_app: Any, aws: AwsResources, lambda_context: Any
) -> None:
    # GIVEN a stored object of one campaign that does not validate
    bad = {"version": 2, "campaign": "spring-sale", "arms": {"cr-retail": [1, -1, 0, 0.0]}}
    aws.s3.put_object(Bucket=aws.bucket, Key=stats_key("spring-sale"), Body=msgpack.packb(bad))
    before = stored(aws, "spring-sale")
    # WHEN a batch comes
    event = load_event("publish_stats", "batch")
    response = publish_app.lambda_handler(event, lambda_context)
    # THEN that campaign's records are reported (Lambda retries them), its object is left as it was, and the
    # other campaign is published
    spring = sorted(r["dynamodb"]["SequenceNumber"] for r in event["Records"]
                    if r["dynamodb"]["Keys"]["pk"]["S"].startswith("spring-sale#"))
    assert response == {"batchItemFailures": [{"itemIdentifier": s} for s in spring]}
    assert stored(aws, "spring-sale") == before
    assert stored(aws, "winter-clearance")[0]["arms"] == {"cr-static-300x250": [75, 1, 0, 0.0]}


# ------------------------------------------------------------------------------------------------ the store


def test_first_write_is_if_none_match(aws: AwsResources, settings: Any) -> None:
    store = StatsStore(aws.bucket, aws.s3)
    assert store.load("new") == (None, None)
    result = store.publish("new", {"arms": {"a": [1, 0, 0, 0.0]}}, now=NOW)
    assert result.written and result.attempts == 1 and result.conflicts == 0
    obj, etag = store.load("new")
    assert obj is not None and obj["version"] == 2 and obj["arms"] == {"a": [1, 0, 0, 0.0]} and etag


def test_concurrent_writer_between_read_and_write_is_merged(aws: AwsResources, settings: Any) -> None:
    class Racing:
        """An S3 client under which another publisher writes right after our first read."""

        def __init__(self, client: Any) -> None:
            self.client, self.raced, self.puts = client, False, []

        def get_object(self, **kwargs: Any) -> Any:
            response = self.client.get_object(**kwargs)
            if not self.raced:
                self.raced = True
                other = StatsStore(aws.bucket, self.client)
                other.publish("c1", {"arms": {"y": [5, 1, 0, 0.0]}, "contexts": {"cr|h2@region=ne": [5, 1, 0, 0.0]}},
                              now=NOW)
            return response

        def put_object(self, **kwargs: Any) -> Any:
            self.puts.append({k: v for k, v in kwargs.items() if k.startswith("If")})
            return self.client.put_object(**kwargs)

    StatsStore(aws.bucket, aws.s3).publish("c1", {"arms": {"x": [1, 0, 0, 0.0]}}, now=NOW)
    racing = Racing(aws.s3)
    result = StatsStore(aws.bucket, racing, sleep=lambda _s: None).publish(
        "c1", {"arms": {"x": [10, 2, 0, 0.0]}, "contexts": {"cr|h1@region=ne": [10, 2, 0, 0.0]}}, now=NOW + 1
    )
    assert result.written and result.conflicts == 1 and result.attempts == 2
    assert [set(p) for p in racing.puts] == [{"IfMatch"}, {"IfMatch"}]
    obj, _ = stored(aws, "c1")
    assert obj["arms"] == {"x": [10, 2, 0, 0.0], "y": [5, 1, 0, 0.0]}  # neither writer's counts lost
    assert obj["contexts"] == {"cr|h1@region=ne": [10, 2, 0, 0.0], "cr|h2@region=ne": [5, 1, 0, 0.0]}
    assert obj["updated_at"] == NOW + 1
    # AND the model of the write that won is fitted on both writers' counters
    assert obj["models"]["cr"]["click"]["fitted_at"] == NOW + 1
    assert obj["models"]["cr"]["click"]["impressions"] == 15


def test_a_writer_that_always_loses_gives_up(aws: AwsResources, settings: Any) -> None:
    class AlwaysBeaten:
        """Another publisher writes newer counts between each of our reads and our write."""

        def __init__(self, client: Any) -> None:
            self.client, self.rounds = client, 0

        def put_object(self, **kwargs: Any) -> Any:
            self.rounds += 1
            StatsStore(aws.bucket, self.client).publish("c1", {"arms": {"y": [self.rounds, 0, 0, 0.0]}}, now=NOW)
            return self.client.put_object(**kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.client, name)

    StatsStore(aws.bucket, aws.s3).publish("c1", {"arms": {"x": [1, 0, 0, 0.0]}}, now=NOW)
    sleeps: list[float] = []
    store = StatsStore(aws.bucket, AlwaysBeaten(aws.s3), max_attempts=3, backoff_seconds=0.5, sleep=sleeps.append)
    with pytest.raises(StatsConflictError):
        store.publish("c1", {"arms": {"x": [9, 0, 0, 0.0]}}, now=NOW + 1)
    assert sleeps == [0.5, 1.0, 2.0]  # backed off after each lost race
    obj, _ = stored(aws, "c1")
    assert obj["arms"] == {"x": [1, 0, 0, 0.0], "y": [3, 0, 0, 0.0]}  # only the rival's writes landed


def test_unchanged_counts_write_nothing(aws: AwsResources, settings: Any) -> None:
    store = StatsStore(aws.bucket, aws.s3)
    store.publish("c1", {"arms": {"cr": [1500, 41, 3, 0.0]}, "contexts": FIRST}, now=NOW)
    first = stored(aws, "c1")
    epoch = decay_stamp(NOW)[0]
    older = {key: [x // 2 for x in row] for key, row in FIRST.items()}
    for update in (
        {"arms": {"cr": [1500, 41, 3, 0.0]}, "contexts": FIRST},  # the same batch again
        {"arms": {"cr": [1000, 20, 3, 0.0]}, "contexts": older},  # older images of the same counters
        {"contexts": {f"cr|h1.i1@device=mobile@region=pnw#d{epoch - KEEP_EPOCHS}": [10**9, 0, 0, 0]}},  # pruned
        {},
    ):
        # WHEN a later publication brings no new counts
        result = store.publish("c1", update, now=NOW + 600)
        # THEN nothing is written: no refit, the same object version (decide's conditional GETs keep their ETag)
        assert (result.written, result.attempts, result.conflicts) == (False, 0, 0)
        assert stored(aws, "c1") == first


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1 not msgpack",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"version": 3, "arms": {}}),
        msgpack.packb({"version": 2, "contexts": {"cr|h1@region=ne": [1, 0, 0]}}),
        msgpack.packb({"version": 2, "models": {"cr": {"click": {"version": 1, "variants": [], "memories": []}}}}),
    ],
    ids=["not-msgpack", "not-a-mapping", "version-3", "short-context-row", "bad-model"],
)
def test_a_stored_object_that_does_not_validate_is_never_replaced(
    aws: AwsResources, settings: Any, body: bytes
) -> None:
    aws.s3.put_object(Bucket=aws.bucket, Key=stats_key("c1"), Body=body)
    etag = aws.s3.head_object(Bucket=aws.bucket, Key=stats_key("c1"))["ETag"]
    store = StatsStore(aws.bucket, aws.s3)
    with pytest.raises(ValueError, match="stats"):
        store.load("c1")
    with pytest.raises(ValueError, match="stats"):
        store.publish("c1", {"arms": {"a": [1, 0, 0, 0.0]}, "contexts": FIRST}, now=NOW)
    response = aws.s3.get_object(Bucket=aws.bucket, Key=stats_key("c1"))
    assert (response["Body"].read(), response["ETag"]) == (body, etag)


def test_a_model_with_nan_variance_is_named_and_never_replaced(aws: AwsResources, settings: Any) -> None:
    # GIVEN a published object whose model was corrupted (a NaN variance)
    store = StatsStore(aws.bucket, aws.s3)
    store.publish("c1", {"contexts": FIRST}, now=NOW)
    obj, _ = stored(aws, "c1")
    obj["models"]["cr"]["click"]["memories"][1]["groups"]["main:0"]["var"][0] = float("nan")
    aws.s3.put_object(Bucket=aws.bucket, Key=stats_key("c1"), Body=msgpack.packb(obj))
    body = aws.s3.get_object(Bucket=aws.bucket, Key=stats_key("c1"))["Body"].read()
    # THEN publishing raises, naming the path, and the object stays as it is
    with pytest.raises(ValueError, match=r"models\['cr'\]\['click'\]\.memories\[1\]\.groups\['main:0'\]\.var"):
        store.publish("c1", {"arms": {"a": [1, 0, 0, 0.0]}}, now=NOW + 60)
    assert aws.s3.get_object(Bucket=aws.bucket, Key=stats_key("c1"))["Body"].read() == body


def test_a_version_1_object_is_read_and_replaced_by_version_2(aws: AwsResources, settings: Any) -> None:
    # GIVEN a version 1 object (per-region arm rows and components, before the learner)
    v1 = {"version": 1, "campaign": "c1", "updated_at": NOW - 86_400,
          "arms": {"cr|h1.i1": [700, 20, 1, 0.0], "cr|h1.i1@region=pnw": [400, 8, 1, 0.0]},
          "components": {"cr|headline=h1": [700, 20, 1, 0.0]}, "splits": {"optimized": [700, 20, 1, 0.0]}}
    aws.s3.put_object(Bucket=aws.bucket, Key=stats_key("c1"), Body=msgpack.packb(v1))
    # WHEN counts arrive
    result = StatsStore(aws.bucket, aws.s3).publish(
        "c1", {"arms": {"cr|h2.i1": [380, 21, 0, 0.0]}, "contexts": FIRST}, now=NOW)
    # THEN the object is version 2: the version 1 arms and splits kept (not the per-region rows, nor the
    # components), the new counts merged, models fitted
    assert result.written
    obj, _ = stored(aws, "c1")
    assert obj["version"] == 2 and "components" not in obj
    assert obj["arms"] == {"cr|h1.i1": [700, 20, 1, 0.0], "cr|h2.i1": [380, 21, 0, 0.0]}
    assert obj["splits"] == {"optimized": [700, 20, 1, 0.0]} and obj["contexts"] == FIRST
    assert obj["models"]["cr"]["click"]["impressions"] == 1390
    assert validate_stats(obj)["models"] == obj["models"]


# ------------------------------------------------------------------------------------------------ the models


def test_models_are_refitted_after_every_merge(aws: AwsResources, settings: Any) -> None:
    store = StatsStore(aws.bucket, aws.s3)
    store.publish("c1", {"contexts": FIRST}, now=NOW)
    first, _ = stored(aws, "c1")
    assert validate_models(first["models"]) == first["models"]
    assert set(first["models"]["cr"]) == {"click", "conversion"}  # conversions in the rows: a conversion model
    assert first["models"]["cr"]["click"]["impressions"] == 1390
    # WHEN one counter grows (an update of one row: merged with the three others)
    grown = {**learner_rows(NOW - 60, {"cr|h2.i2@device=desktop@region=ne": (510, 19, 2)})}
    store.publish("c1", {"contexts": grown}, now=NOW + 600)
    second, _ = stored(aws, "c1")
    # THEN the model is fitted again on every row of the merged object
    assert set(second["contexts"]) == set(FIRST)
    for model in second["models"]["cr"].values():
        assert model["fitted_at"] == NOW + 600 and model["impressions"] == 1590
        assert model["variants"] == [["h1", "h2"], ["i1", "i2"]]
    assert second["models"] != first["models"]
    assert StatsTable.from_object(second).model("cr", "click") == second["models"]["cr"]["click"]


def test_two_publications_in_a_row_start_warm(aws: AwsResources, settings: Any) -> None:
    store = StatsStore(aws.bucket, aws.s3)
    store.publish("c1", {"arms": {"cr": [1390, 41, 3, 0.0]}, "contexts": FIRST}, now=NOW)
    first = stored(aws, "c1")[0]["models"]["cr"]["click"]
    assert first["log_weights"] == COLD

    # WHEN new outcomes arrive on the learner's counters
    more = learner_rows(NOW + 300, {"cr|h1.i1@device=mobile@region=pnw": (600, 9, 1),
                                    "cr|h2.i1@device=mobile@region=pnw": (590, 40, 0)})
    store.publish("c1", {"contexts": more}, now=NOW + 600)
    second = stored(aws, "c1")[0]["models"]["cr"]["click"]
    # THEN the fit starts from the first one: the memories are re-weighted by how well each predicted them
    assert second["log_weights"] != first["log_weights"]
    assert math.isclose(sum(math.exp(w) for w in second["log_weights"]), 1.0, rel_tol=1e-9)

    # WHEN only the arm counts change (no new outcome for the learner)
    store.publish("c1", {"arms": {"cr": [1800, 60, 3, 0.0]}}, now=NOW + 1200)
    third_obj = stored(aws, "c1")[0]
    third = third_obj["models"]["cr"]["click"]
    # THEN the object is written and the model refitted, with the memory weights it had
    assert third_obj["arms"]["cr"] == [1800, 60, 3, 0.0] and third["fitted_at"] == NOW + 1200
    assert third["log_weights"] == second["log_weights"]

    # AND the same counts published at once (a cold fit) keep the cold weights: the move came from the warm start
    aws.s3.create_bucket(Bucket="dco-cold-bucket")
    StatsStore("dco-cold-bucket", aws.s3).publish("c1", counts(third_obj), now=NOW + 1200)
    cold = stored(aws, "c1", "dco-cold-bucket")[0]
    assert counts(cold) == counts(third_obj)
    assert cold["models"]["cr"]["click"]["log_weights"] == COLD


# ------------------------------------------------------------------------------------------------ fold -> publish


def test_fold_then_publish_gives_the_counters(
    aws: AwsResources, settings: Any, lambda_context: Any
) -> None:
    # GIVEN the sample events folded into the counters (and then a replay of them)
    fold = load_handler("fold")
    publish = load_handler("publish_stats")
    publish.clock = lambda: NOW
    for scenario in ("batch", "poison", "batch"):
        fold.lambda_handler(load_event("fold", scenario), lambda_context)

    # WHEN publish-stats gets the Counters stream: one NEW_IMAGE record per counter item, in small batches
    # (built from the table: moto's DynamoDB Streams API answers "Not yet implemented" to this botocore)
    items = aws.dynamodb.scan(TableName=aws.counters_table, ConsistentRead=True)["Items"]
    records = [
        {"eventName": "MODIFY", "eventSource": "aws:dynamodb",
         "dynamodb": {"Keys": {"pk": item["pk"]}, "NewImage": item, "SequenceNumber": str(900 + i),
                      "StreamViewType": "NEW_IMAGE"}}
        for i, item in enumerate(items)
    ]
    for start in range(0, len(records), 7):  # in small batches, like the event source mapping
        batch = {"Records": records[start:start + 7]}
        assert publish.lambda_handler(batch, lambda_context) == {"batchItemFailures": []}

    # THEN the stats object holds exactly the counters of one clean application of the events, the discounted
    # sums (attributes of their counter's item) under their #d<epoch> keys
    good = [r for name in ("batch", "poison") for r in decode_stream(load_event("fold", name)["Records"], "s")[0]]
    obj, _ = stored(aws, "spring-sale")
    sections = {"arm:": "arms", "ctx:": "contexts", "split:": "splits"}
    want: dict[str, dict[str, list[Any]]] = {"arms": {}, "contexts": {}, "splits": {}}
    for (campaign, key), delta in aggregate(sorted(set(good), key=lambda r: r.sequence_key)).deltas().items():
        assert campaign == "spring-sale"
        prefix = next(p for p in sections if key.startswith(p))
        want[sections[prefix]][key[len(prefix):]] = [
            delta.impressions, delta.clicks, delta.conversions, float(delta.value)]
    assert counts(obj) == want
    assert any(split_decay(key)[1] is not None for key in obj["contexts"])
    assert not any(split_decay(key)[1] is not None for key in obj["arms"])
    assert obj["arms"]["cr-retail"] == [2, 1, 1, 42.5]
    # AND the learner's model of the assembled creative, fitted on its ctx: rows
    creatives = {key.partition("|")[0] for key in obj["contexts"]}
    assert set(obj["models"]) == creatives and validate_models(obj["models"]) == obj["models"]
    absolute = sum(row[0] for key, row in obj["contexts"].items() if split_decay(key)[1] is None)
    assert sum(m["click"]["impressions"] for m in obj["models"].values()) == absolute
