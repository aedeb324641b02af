"""publish-stats on moto: merge by maximum, idempotent and order-free, conditional writes that survive races,
and the round trip events -> fold -> Counters stream -> publish-stats -> stats object == counters."""

from __future__ import annotations

import copy
from typing import Any

import msgpack
import pytest
from dco.aws.counters import decode_stream
from dco.aws.stats_store import StatsStore, stats_key
from dco.fold import aggregate
from dco.stats import StatsTable

from tests.conftest import load_event
from tests.functional.conftest import AwsResources, load_handler

NOW = 1_714_551_000


@pytest.fixture
def publish_app(settings: Any, aws: AwsResources) -> Any:
    app = load_handler("publish_stats")
    app.clock = lambda: NOW
    return app


def stored(aws: AwsResources, campaign: str, bucket: str | None = None) -> tuple[dict[str, Any], str]:
    response = aws.s3.get_object(Bucket=bucket or aws.bucket, Key=stats_key(campaign))
    return msgpack.unpackb(response["Body"].read(), raw=False), response["ETag"]


def test_handler_publishes_the_sample_batch(publish_app: Any, aws: AwsResources, lambda_context: Any) -> None:
    response = publish_app.lambda_handler(load_event("publish_stats", "batch"), lambda_context)
    assert response == {"batchItemFailures": []}

    obj, _ = stored(aws, "spring-sale")
    assert obj == {
        "version": 1,
        "campaign": "spring-sale",
        "updated_at": NOW,
        "arms": {"cr-retail|h01.img07": [121, 7, 0, 0.0], "cr-retail": [300, 11, 2, 85.0]},
        "components": {"cr-retail|headline=h01": [300, 11, 2, 85.0],
                       "cr-retail|headline=h01@region=pnw": [90, 4, 1, 42.5]},
        "splits": {"optimized": [1200, 40, 5, 210.0]},
    }
    table = StatsTable.from_object(obj)  # what decide loads
    assert table.get("cr-retail|h01.img07").impressions == 121
    assert stored(aws, "winter-clearance")[0]["arms"] == {"cr-static-300x250": [75, 1, 0, 0.0]}


def test_same_batch_twice_changes_nothing(publish_app: Any, aws: AwsResources, lambda_context: Any) -> None:
    event = load_event("publish_stats", "batch")
    publish_app.lambda_handler(event, lambda_context)
    first, etag = stored(aws, "spring-sale")

    publish_app.clock = lambda: NOW + 60  # a replay later: counts unchanged -> no new object version
    assert publish_app.lambda_handler(copy.deepcopy(event), lambda_context) == {"batchItemFailures": []}
    assert stored(aws, "spring-sale") == (first, etag)


def test_two_batches_in_either_order_give_the_same_object(
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
    assert results[0] == results[1]
    # the older image of arm cr-retail|h01.img07 (120 impressions) never wins over the newer (121)
    assert results[0]["arms"]["cr-retail|h01.img07"] == [121, 7, 0, 0.0]


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
                other.publish("c1", {"arms": {"y": [5, 1, 0, 0.0]}, "components": {}}, now=NOW)
            return response

        def put_object(self, **kwargs: Any) -> Any:
            self.puts.append({k: v for k, v in kwargs.items() if k.startswith("If")})
            return self.client.put_object(**kwargs)

    StatsStore(aws.bucket, aws.s3).publish("c1", {"arms": {"x": [1, 0, 0, 0.0]}, "components": {}}, now=NOW)
    racing = Racing(aws.s3)
    result = StatsStore(aws.bucket, racing, sleep=lambda _s: None).publish(
        "c1", {"arms": {"x": [10, 2, 0, 0.0]}, "components": {}}, now=NOW + 1
    )
    assert result.written and result.conflicts == 1 and result.attempts == 2
    assert [set(p) for p in racing.puts] == [{"IfMatch"}, {"IfMatch"}]
    obj, _ = stored(aws, "c1")
    assert obj["arms"] == {"x": [10, 2, 0, 0.0], "y": [5, 1, 0, 0.0]}  # neither writer's counts lost
    assert obj["updated_at"] == NOW + 1


def test_first_write_is_if_none_match(aws: AwsResources, settings: Any) -> None:
    store = StatsStore(aws.bucket, aws.s3)
    assert store.load("new") == (None, None)
    store.publish("new", {"arms": {"a": [1, 0, 0, 0.0]}, "components": {}}, now=NOW)
    obj, etag = store.load("new")
    assert obj is not None and obj["arms"] == {"a": [1, 0, 0, 0.0]} and etag


def test_poison_counter_record_is_reported(publish_app: Any, aws: AwsResources, lambda_context: Any) -> None:
    event = load_event("publish_stats", "batch")
    event["Records"][1]["dynamodb"]["NewImage"]["impressions"] = {"S": "lots"}
    response = publish_app.lambda_handler(event, lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["dynamodb"]["SequenceNumber"]}]}
    assert "cr-retail" not in stored(aws, "spring-sale")[0]["arms"]


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

    # THEN the stats object holds exactly the counters of one clean application of the events, time buckets
    # (attributes of their counter's item) under their #e<bucket> keys
    good = [r for name in ("batch", "poison") for r in decode_stream(load_event("fold", name)["Records"], "s")[0]]
    obj, _ = stored(aws, "spring-sale")
    sections = {"arm:": "arms", "comp:": "components", "split:": "splits"}
    want: dict[str, dict[str, list[Any]]] = {"arms": {}, "components": {}, "splits": {}}
    for (campaign, key), delta in aggregate(sorted(set(good), key=lambda r: r.sequence_key)).deltas().items():
        assert campaign == "spring-sale"
        prefix = next(p for p in sections if key.startswith(p))
        want[sections[prefix]][key[len(prefix):]] = [
            delta.impressions, delta.clicks, delta.conversions, float(delta.value)]
    assert {s: obj[s] for s in want} == want
    assert any("#e" in key for key in obj["components"]) and any("#e" in key for key in obj["arms"])
    assert obj["arms"]["cr-retail"] == [2, 1, 1, 42.5]
