"""The full loop on the local stack, over real HTTP: decide -> beacons -> Events -> fold -> Counters ->
publish_stats -> stats object -> decide's warm state.

Every step goes through the same wiring as on AWS: the gateway turns requests into API Gateway v2 events for
decide and track (routes read from the template), moto's DynamoDB streams feed fold and publish_stats through
the stream pump, and the retail example was published by ingest from an S3 notification (conftest).
"""

from __future__ import annotations

import csv
import io
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.conftest import CAMPAIGN, Http, count_of, counters, tracking_urls

AD_QUERY = "c=retail-demo&exp=retail-main&size=300x250&region=pnw&country=US"


def _claims(stack: Any, url: str) -> Any:
    from dco.tracking import verify

    token = parse_qs(urlsplit(url).query)["t"][0]
    return verify(token, stack.hmac_keys, now=int(time.time()))


def _feed_links() -> dict[str, str]:
    from dco_local.stack import EXAMPLE_FEED

    rows = csv.DictReader(io.StringIO(EXAMPLE_FEED.read_text()), delimiter="\t")
    return {row["id"]: row["link"] for row in rows}


def _serve(stack: Any, http: Http, query: str = AD_QUERY) -> tuple[Any, dict[str, str]]:
    reply = http.get(f"{stack.base_url}/v1/ad?{query}")
    assert reply.status == 200, reply.text
    assert reply.headers["Content-Type"].startswith("text/html")
    urls = tracking_urls(reply.text)
    assert set(urls) == {"imp", "click"}, reply.text
    return reply, urls


def test_full_loop_over_http(retail_stack: Any, http: Http) -> None:
    stack = retail_stack
    # GIVEN a decision served over HTTP by decide, with signed tracking URLs on the gateway
    reply, urls = _serve(stack, http)
    assert reply.headers.get("X-DCO-Decision")
    assert all(url.startswith(f"{stack.base_url}/v1/events/") for url in urls.values())
    claims = _claims(stack, urls["imp"])
    assert claims.campaign == CAMPAIGN and claims.product

    # WHEN the viewer's browser fires the impression pixel and clicks
    impression = http.get(urls["imp"])
    assert impression.status == 200
    assert impression.headers["Content-Type"] == "image/gif"
    assert impression.body.startswith(b"GIF89a")  # the base64 body was decoded by the gateway
    click = http.get(urls["click"])
    assert click.status == 302
    landing = click.headers["Location"]
    expected = _feed_links()[claims.product]
    assert landing == expected
    assert urlsplit(landing).hostname == "shop.example.com"

    # AND the pumps deliver the Events stream to fold and the Counters stream to publish_stats
    pumped = stack.pump()
    assert pumped.stream_records >= 2 and pumped.failures == 0

    # THEN the Counters table holds one impression and one click for the arm
    items = counters(stack)
    assert count_of(items, f"arm:{claims.arm}", "impressions") == 1
    assert count_of(items, f"arm:{claims.arm}", "clicks") == 1
    # AND the stats object carries them
    stats = stack.stats(CAMPAIGN)
    assert stats is not None
    assert stats["arms"][claims.arm][:2] == [1, 1]

    # AND a later decide (after DCO_REFRESH_SECONDS) has loaded the new stats into its warm state
    time.sleep(stack.refresh_seconds + 0.2)
    _serve(stack, http)
    warm = stack.function("decide").module.get_cache().get(CAMPAIGN)
    arm = warm.stats.get(claims.arm)
    assert (arm.impressions, arm.clicks) == (1, 1)


def test_repeated_beacons_count_once(retail_stack: Any, http: Http) -> None:
    stack = retail_stack
    stack.pump()
    _, urls = _serve(stack, http)
    claims = _claims(stack, urls["imp"])
    before = counters(stack)

    for _ in range(3):
        assert http.get(urls["imp"]).status == 200
        assert http.get(urls["click"]).status == 302
    stack.pump()

    after = counters(stack)
    key = f"arm:{claims.arm}"
    assert count_of(after, key, "impressions") - count_of(before, key, "impressions") == 1
    assert count_of(after, key, "clicks") - count_of(before, key, "clicks") == 1
    events = stack.client("dynamodb").scan(TableName=stack.events_table)["Items"]
    mine = [item for item in events if item["pk"]["S"].endswith(claims.decision_id)]
    assert sorted(item["kind"]["S"] for item in mine) == ["click", "imp"]


def _forge(token: str) -> str:
    version, payload, mac = token.split(".")
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    return ".".join((version, payload, flipped))


def test_forged_token_is_rejected_and_nothing_counted(retail_stack: Any, http: Http) -> None:
    from dco.tracking import sign

    stack = retail_stack
    stack.pump()
    _, urls = _serve(stack, http)
    claims = _claims(stack, urls["imp"])
    token = parse_qs(urlsplit(urls["imp"]).query)["t"][0]
    events_before = stack.client("dynamodb").scan(TableName=stack.events_table, Select="COUNT")["Count"]

    forged_mac = http.get(f"{stack.base_url}/v1/events/imp?t={_forge(token)}")
    other_key = sign(claims, {"local-other": b"k" * 32}, "local-other")  # an unknown key id
    stranger = http.get(f"{stack.base_url}/v1/events/click?t={other_key}")
    garbage = http.get(f"{stack.base_url}/v1/events/click?t=v1.not-a-token")

    for reply in (forged_mac, stranger, garbage):
        assert 400 <= reply.status < 500, reply.text
        assert reply.json()["error"]["param"] == "t"
    assert forged_mac.status == 403
    assert "Location" not in stranger.headers
    assert stack.client("dynamodb").scan(TableName=stack.events_table, Select="COUNT")["Count"] == events_before
    assert stack.pump().stream_records == 0


def test_gateway_routes_are_the_templates(retail_stack: Any, http: Http) -> None:
    from dco_local.template import load_template

    stack = retail_stack
    health = http.get(f"{stack.base_url}/healthz").json()
    template_routes = {route.route_key for route in load_template().routes()}
    assert set(health["routes"]) == template_routes
    assert "GET /v1/ad" in template_routes
    # A path the template does not route answers like API Gateway.
    missing = http.get(f"{stack.base_url}/v1/nope")
    assert missing.status == 404 and missing.json() == {"message": "Not Found"}
    # A method the template does not route on a known path, too.
    assert http.request("POST", f"{stack.base_url}/v1/ad", body=b"{}").status == 404


def test_conversion_post_and_demo_page(retail_stack: Any, http: Http) -> None:
    stack = retail_stack
    _, urls = _serve(stack, http)
    token = parse_qs(urlsplit(urls["imp"]).query)["t"][0]
    reply = http.request("POST", f"{stack.base_url}/v1/events/conversion",
                         body=f'{{"t": "{token}", "order_id": "o-1", "value": 12.5}}'.encode(),
                         headers={"Content-Type": "application/json"})
    assert reply.status == 200 and reply.json() == {"stored": True}

    page = http.get(f"{stack.base_url}/demo?region=california")
    assert page.status == 200
    assert '<script src="/v1/ad?c=retail-demo&amp;exp=retail-main&amp;size=300x250&amp;fmt=js&amp;region=california' \
        in page.text
    tag = http.get(f"{stack.base_url}/v1/ad?c=retail-demo&exp=retail-main&size=300x250&fmt=js&region=california")
    assert tag.status == 200 and tag.headers["Content-Type"].startswith("application/javascript")


def test_http_event_shape() -> None:
    from dco_local.gateway import http_event
    from dco_local.template import Route

    event = http_event(
        Route("GET", "/v1/ad", "DecideFunction"),
        method="GET",
        target="/v1/ad?c=x&seg=a&seg=b&empty=&q=%3Cb%3E",
        headers=[("Host", "127.0.0.1:1"), ("User-Agent", "UA"), ("Cookie", "a=1; b=2"), ("X-Multi", "1"),
                 ("X-Multi", "2"), ("CloudFront-Viewer-Country", "US")],
        body=None,
        source_ip="10.0.0.1",
    )
    assert event["version"] == "2.0" and event["routeKey"] == "GET /v1/ad"
    assert event["rawPath"] == "/v1/ad"
    assert event["rawQueryString"] == "c=x&seg=a&seg=b&empty=&q=%3Cb%3E"
    assert event["queryStringParameters"] == {"c": "x", "seg": "a,b", "empty": "", "q": "<b>"}
    assert event["cookies"] == ["a=1", "b=2"] and "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "1,2"
    assert event["headers"]["cloudfront-viewer-country"] == "US"
    assert event["headers"]["x-forwarded-for"] == "10.0.0.1"
    http = event["requestContext"]["http"]
    assert (http["method"], http["path"], http["sourceIp"], http["userAgent"]) == ("GET", "/v1/ad", "10.0.0.1", "UA")
    assert "body" not in event and event["isBase64Encoded"] is False

    binary = http_event(Route("POST", "/x", "F"), method="POST", target="/x", body=b"\x00\xff",
                        headers=[("Content-Type", "application/octet-stream")], source_ip="1.1.1.1")
    assert binary["isBase64Encoded"] is True and binary["body"] == "AP8="


@pytest.mark.parametrize("retries", [1])
def test_stream_pump_partial_failures(retail_stack: Any, retries: int) -> None:
    """Lambda's rules on a real moto stream: redelivery from the lowest failed sequence number, bounded
    retries, then the on-failure destination (an SQS message) and the shard moves on."""
    from dataclasses import replace

    from dco_local.pumps import StreamPump

    stack = retail_stack
    ddb = stack.client("dynamodb")
    fold = next(f for f in stack.functions.values() if f.spec.name == "fold")
    mapping = replace(fold.spec.streams[0], maximum_retry_attempts=retries, batch_size=10)
    # A table of its own (the stack's pumps must not see these records), with the Events table's stream view.
    table = "e2e-pump-table"
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST",
                     StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    queue = stack.client("sqs").create_queue(QueueName="e2e-on-failure")["QueueUrl"]
    deliveries: list[list[str]] = []
    poisoned: set[str] = set()

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        sequences = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        deliveries.append([r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]])
        failed = [s for r, s in zip(event["Records"], sequences, strict=True)
                  if r["dynamodb"]["Keys"]["pk"]["S"] in poisoned]
        assert all(r["eventSourceARN"] == arn and r["eventSource"] == "aws:dynamodb" for r in event["Records"])
        return {"batchItemFailures": [{"itemIdentifier": s} for s in failed]}

    pump = StreamPump(streams=stack.client("dynamodbstreams"), stream_arn=arn, mapping=mapping, invoke=invoke,
                      region=stack.region, sqs=stack.client("sqs"), failure_queue_url=queue)
    pump.skip_existing()
    keys = [f"e2e-pump#{i}" for i in range(4)]
    poisoned.add(keys[2])
    for key in keys:
        ddb.put_item(TableName=table, Item={"pk": {"S": key}})
    ddb.update_item(TableName=table, Key={"pk": {"S": keys[0]}},
                    UpdateExpression="SET touched = :t", ExpressionAttributeValues={":t": {"N": "1"}})

    first = pump.poll()  # delivers all INSERTs (the MODIFY is filtered out); #2 fails
    assert deliveries == [keys]
    assert first.failures == 0
    second = pump.poll()  # the retry starts at the lowest failure, then retries are exhausted
    assert deliveries[1] == keys[2:]
    assert second.failures == 2
    assert pump.failures[0]["DDBStreamBatchInfo"]["batchSize"] == 2
    message = stack.client("sqs").receive_message(QueueUrl=queue)["Messages"][0]
    assert '"RetryAttemptsExhausted"' in message["Body"]
    assert pump.poll().invocations == 0  # the shard moved on


def test_rejected_drop_is_reported(retail_stack: Any) -> None:
    from dco_local.stack import EXAMPLE_CAMPAIGN, LocalStackError

    stack = retail_stack
    # The config's id is retail-demo; dropped as another campaign, ingest rejects it (and publishes nothing).
    stack.put_campaign("not-retail", EXAMPLE_CAMPAIGN)
    with pytest.raises(LocalStackError, match="ingest rejected campaigns/not-retail.yaml"):
        stack.wait_published("not-retail", timeout=30)
    assert stack.pointer("not-retail") is None
