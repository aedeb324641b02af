"""The whole serverless loop on moto, handler by handler, with real stream records:

feed drop -> ingest -> pointer swap -> decide -> impression and click beacons -> Events stream -> fold ->
Counters -> Counters stream -> publish-stats -> stats object -> a later decide sees the new stats.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

import boto3
import msgpack
import pytest
from _stack import CAMPAIGN, SAMPLE_RING, FixedClock, http_event, load_app, load_event, put_retail
from dco.aws.store import S3Store

IMP = re.compile(r"https://ads\.example\.com(/v1/events/imp)\?t=([A-Za-z0-9_.\-]+)")
CLICK = re.compile(r"https://ads\.example\.com(/v1/events/click)\?t=([A-Za-z0-9_.\-]+)")

# Newer botocore resolves DynamoDB Streams to an account-scoped host moto does not route; the regional host does.
STREAMS_ENDPOINT = "https://streams.dynamodb.us-east-1.amazonaws.com"


class StreamReader:
    """Reads a table's stream like the event source mapping: every shard from TRIM_HORIZON, in order."""

    def __init__(self, aws: Any, table: str) -> None:
        self.client = boto3.client("dynamodbstreams", region_name=aws.region, endpoint_url=STREAMS_ENDPOINT)
        self.arn = aws.dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.after: dict[str, str] = {}

    def batch(self) -> dict[str, Any]:
        """One Lambda-shaped event with every new record of the first shard that has any (plus its shardId)."""
        shards = self.client.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id in self.after:
                iterator = self.client.get_shard_iterator(
                    StreamArn=self.arn, ShardId=shard_id, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                    SequenceNumber=self.after[shard_id],
                )["ShardIterator"]
            else:
                iterator = self.client.get_shard_iterator(
                    StreamArn=self.arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            records = self.client.get_records(ShardIterator=iterator)["Records"]
            if records:
                self.after[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
                for record in records:
                    record["eventSourceARN"] = self.arn
                    record["dynamodb"].pop("ApproximateCreationDateTime", None)  # a datetime from boto3
                return {"Records": records, "shardId": shard_id, "window": {}, "state": {}}
        return {"Records": []}


def get(app: Any, url_path: str, token: str, context: Any) -> dict[str, Any]:
    return app.handler(http_event("GET", url_path, {"t": unquote(token)}), context)


@pytest.fixture
def loop(aws: Any, settings: Any, lambda_context: Any) -> dict[str, Any]:
    clock = FixedClock()
    apps = {name: load_app(name) for name in ("ingest", "decide", "track", "fold", "publish_stats")}
    for name in ("ingest", "decide", "track"):
        apps[name].clock = clock
    apps["publish_stats"].clock = lambda: clock().timestamp()  # publish-stats' clock is unix seconds
    for name in ("decide", "track"):
        apps[name].get_keys = lambda: SAMPLE_RING
        apps[name].get_settings = lambda: settings
        apps[name].get_store = lambda: S3Store(settings.bucket, client=aws.s3)
    return {"apps": apps, "clock": clock, "context": lambda_context}


def test_feed_drop_to_learning_and_back(aws: Any, loop: dict[str, Any]) -> None:
    apps, clock, context = loop["apps"], loop["clock"], loop["context"]

    # GIVEN a feed drop, ingest publishes a snapshot and swaps the pointer
    put_retail(aws.s3)
    [result] = apps["ingest"].handler(load_event("ingest", "feed_drop"), context)["results"]
    assert result["outcome"] == "published"
    pointer = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key=f"pointers/{CAMPAIGN}.json")["Body"].read())
    assert pointer["version"] == result["version"]

    # WHEN decide serves an ad (HTML with signed tracking URLs)
    query = {"c": CAMPAIGN, "exp": "retail-main", "region": "pnw", "country": "US", "fmt": "html", "rid": "loop-1"}
    response = apps["decide"].handler(http_event("GET", "/v1/ad", query), context)
    assert response["statusCode"] == 200, response["body"]
    body = response["body"]
    imp_path, imp_token = IMP.search(body).groups()
    click_path, click_token = CLICK.search(body).groups()

    # AND the beacons come back (the impression twice: stored once)
    for _ in range(2):
        assert get(apps["track"], imp_path, imp_token, context)["statusCode"] == 200
    click = get(apps["track"], click_path, click_token, context)
    assert click["statusCode"] == 302
    assert click["headers"]["Location"].startswith("https://shop.example.com/")
    events = aws.dynamodb.scan(TableName=aws.events_table)["Items"]
    assert sorted(item["kind"]["S"] for item in events) == ["click", "imp"]

    # AND the Events stream is folded into the counters
    stream = StreamReader(aws, aws.events_table)
    batch = stream.batch()
    assert len(batch["Records"]) == 2
    assert apps["fold"].handler(batch, context)["batchItemFailures"] == []
    arm = events[0]["arm"]["S"]
    item = aws.dynamodb.get_item(TableName=aws.counters_table, Key={"pk": {"S": f"{CAMPAIGN}#arm:{arm}"}})["Item"]
    assert (int(item["impressions"]["N"]), int(item["clicks"]["N"])) == (1, 1)

    # AND a redelivery of the same batch changes nothing
    assert apps["fold"].handler(batch, context)["batchItemFailures"] == []
    again = aws.dynamodb.get_item(TableName=aws.counters_table, Key={"pk": {"S": f"{CAMPAIGN}#arm:{arm}"}})["Item"]
    assert (int(again["impressions"]["N"]), int(again["clicks"]["N"])) == (1, 1)

    # AND the Counters stream publishes the stats object
    counters = StreamReader(aws, aws.counters_table)
    for _ in range(200):  # a few batches; a stream that never drains fails here instead of hanging CI
        if not (changes := counters.batch())["Records"]:
            break
        assert apps["publish_stats"].handler(changes, context)["batchItemFailures"] == []
    else:
        pytest.fail("the Counters stream still had records after 200 batches")
    stats = msgpack.unpackb(aws.s3.get_object(Bucket=aws.bucket, Key=f"stats/{CAMPAIGN}.msgpack")["Body"].read())
    assert stats["arms"][arm][:2] == [1, 1]
    assert stats["splits"]["optimized"][:2] == [1, 1]
    # AND (version 2) the learner's counter of the served combination in its context, and its creative's model
    assert stats["version"] == 2
    [ctx] = [key for key in stats["contexts"] if key.startswith(f"{arm}@") and "#d" not in key]
    assert "@region=pnw" in ctx and stats["contexts"][ctx] == [1, 1, 0, 0.0]
    creative = arm.partition("|")[0]
    model = stats["models"][creative]["click"]
    assert model["impressions"] == 1 and model["fitted_at"] == int(clock().timestamp())

    # THEN a later decide (after the refresh interval) reads the new stats
    clock.advance(3600)
    debug = apps["decide"].handler(http_event("GET", "/v1/ad", {**query, "debug": "1", "rid": "loop-2"}), context)
    assert debug["statusCode"] == 200, debug["body"]
    table = apps["decide"].get_cache().get(CAMPAIGN).stats
    assert (table.get(arm).impressions, table.get(arm).clicks) == (1, 1)
    assert table.model(creative, "click") == model
