"""track on moto: verified beacons are stored once; bad tokens store nothing; clicks go only where the snapshot says.

The sample events under events/track/ carry tokens signed with the test key ``_stack.SAMPLE_KEYS`` at
``_stack.SAMPLE_NOW`` (2026-01-01T00:00:00Z); the handler's clock is fixed a minute later.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from _stack import (
    BOT_UA,
    CAMPAIGN,
    SAMPLE_DECISION,
    SAMPLE_LANDING,
    SAMPLE_NOW,
    SAMPLE_RING,
    FixedClock,
    load_app,
    load_event,
    publish_retail,
    sample_token,
    with_headers,
    with_query,
)


@pytest.fixture
def published(aws: Any, settings: Any) -> None:
    publish_retail(aws.s3)  # as ingest would (tests/functional/test_ingest.py covers ingest itself)


@pytest.fixture
def track(settings: Any, published: None) -> Any:
    app = load_app("track")
    app.clock = FixedClock(SAMPLE_NOW + timedelta(seconds=60))
    app.get_keys = lambda: SAMPLE_RING
    app.get_settings = lambda: settings
    return app


def call(track: Any, event: dict[str, Any], context: Any) -> dict[str, Any]:
    response = track.handler(event, context)
    response["headers"] = {k.lower(): v for k, v in response.get("headers", {}).items()}
    return response


def items(aws: Any) -> list[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    raw = aws.dynamodb.scan(TableName=aws.events_table)["Items"]
    return sorted(({k: TypeDeserializer().deserialize(v) for k, v in item.items()} for item in raw), key=lambda i: i["pk"])


def error_of(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["body"])["error"]


# ---------------------------------------------------------------------------------------------- beacons


def test_impression_is_a_gif_and_is_stored_once(aws, track, lambda_context):
    event = load_event("track", "impression")
    first = call(track, event, lambda_context)
    assert first["statusCode"] == 200 and first["headers"]["content-type"] == "image/gif"
    assert first["isBase64Encoded"] and base64.b64decode(first["body"]).startswith(b"GIF89a")
    assert first["headers"]["cache-control"] == "no-store"
    assert call(track, event, lambda_context)["statusCode"] == 200  # a repeated beacon: same answer
    [item] = items(aws)
    assert item["pk"] == f"{CAMPAIGN}#imp#{SAMPLE_DECISION}"
    assert item["kind"] == "imp" and item["arm"] == "cr-product|SKU-0000001" and item["creative"] == "cr-product"
    assert item["context"] == {"device": "mobile", "region": "pnw"} and item["holdout"] is False
    assert item["ts"] == 1_767_225_660 and item["expires_at"] == 1_767_225_660 + 30 * 86_400


def test_click_redirects_to_the_snapshot_landing_url_and_is_stored_once(aws, track, lambda_context):
    event = with_query(load_event("track", "click"), url="https://evil.example/", redirect="https://evil.example/")
    for _ in range(2):
        response = call(track, event, lambda_context)
        assert response["statusCode"] == 302
        assert response["headers"]["location"] == SAMPLE_LANDING  # the feed's link; never the query's URL
    assert [i["pk"] for i in items(aws)] == [f"{CAMPAIGN}#click#{SAMPLE_DECISION}"]


def test_click_on_a_product_gone_from_the_feed_falls_back_to_the_default_creative(aws, track, lambda_context):
    token = sample_token(product="SKU-GONE").token
    response = call(track, with_query(load_event("track", "click"), t=token), lambda_context)
    assert response["statusCode"] == 302 and response["headers"]["location"] == "https://shop.example.com/"


def test_conversion_post_is_stored_once_per_order_with_its_value(aws, track, lambda_context):
    event = load_event("track", "conversion")
    first = call(track, event, lambda_context)
    assert first["statusCode"] == 200 and json.loads(first["body"]) == {"stored": True}
    assert json.loads(call(track, event, lambda_context)["body"]) == {"stored": False}
    [item] = items(aws)
    assert item["kind"] == "conv" and item["value"] == Decimal("59.5") and item["currency"] == "USD"
    assert item["pk"].startswith(f"{CAMPAIGN}#conv#{SAMPLE_DECISION}#")


def test_conversion_as_a_form_post_and_as_a_pixel(aws, track, lambda_context):
    token = sample_token().token
    form = load_event("track", "conversion")
    form["headers"]["content-type"] = "application/x-www-form-urlencoded"
    form["body"] = f"t={token}&order_id=order-9&value=10"
    assert call(track, form, lambda_context)["statusCode"] == 200
    pixel = call(track, load_event("track", "conversion_pixel"), lambda_context)
    assert pixel["statusCode"] == 200 and pixel["headers"]["content-type"] == "image/gif"
    assert sorted(i["value"] for i in items(aws)) == [Decimal("10"), Decimal("24.99")]


@pytest.mark.parametrize(
    ("body", "param"),
    [({"value": -1}, "value"), ({"value": "NaN"}, "value"), ({"value": "ten"}, "value"),
     ({"currency": "dollars"}, "currency"), ({"order_id": "x" * 300}, "order_id"), ({"t": None}, "t")],
)
def test_bad_conversion_fields_are_400_and_store_nothing(aws, track, lambda_context, body, param):
    event = load_event("track", "conversion")
    payload = json.loads(event["body"]) | body
    event["body"] = json.dumps({k: v for k, v in payload.items() if v is not None})
    response = call(track, event, lambda_context)
    assert response["statusCode"] == 400 and error_of(response)["param"] == param
    assert items(aws) == []


def test_bot_impressions_and_clicks_are_answered_but_not_stored(aws, track, lambda_context, capsys):
    imp = call(track, with_headers(load_event("track", "impression"), user_agent=BOT_UA), lambda_context)
    click = call(track, with_headers(load_event("track", "click"), user_agent=BOT_UA), lambda_context)
    assert imp["statusCode"] == 200 and click["statusCode"] == 302
    assert items(aws) == []
    assert '"BotImpressions"' in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- tokens


def tampered(token: str) -> str:
    """One payload character flipped (a claim changed), the MAC kept."""
    version, payload, mac = token.split(".")
    flipped = payload[:20] + ("A" if payload[20] != "A" else "B") + payload[21:]
    return f"{version}.{flipped}.{mac}"


@pytest.mark.parametrize(
    ("make_token", "status", "code"),
    [
        (lambda: load_event("track", "forged_token")["queryStringParameters"]["t"], 403, "bad_signature"),
        (lambda: tampered(sample_token().token), 403, "bad_signature"),
        (lambda: sample_token(keys={"k9": b"x" * 32}, kid="k9").token, 403, "unknown_key"),
        (lambda: sample_token(issued_at=SAMPLE_NOW - timedelta(days=2)).token, 400, "expired"),
        (lambda: sample_token(issued_at=SAMPLE_NOW + timedelta(hours=1)).token, 400, "future"),
        (lambda: sample_token(campaign="never-published").token, 400, "unknown_campaign"),
        (lambda: "v1.not-a-token", 400, "malformed"),
    ],
)
@pytest.mark.parametrize("scenario", ["impression", "click", "conversion_pixel"])
def test_bad_tokens_are_4xx_and_store_nothing(aws, track, lambda_context, make_token, status, code, scenario):
    response = call(track, with_query(load_event("track", scenario), t=make_token()), lambda_context)
    assert response["statusCode"] == status
    assert error_of(response) | {"message": ""} == {"param": "t", "code": code, "message": ""}
    assert "location" not in response["headers"]
    assert items(aws) == []


def test_forged_token_sample_is_rejected(aws, track, lambda_context):
    response = call(track, load_event("track", "forged_token"), lambda_context)
    assert response["statusCode"] == 403 and items(aws) == []


def test_missing_token_is_400_naming_t(aws, track, lambda_context):
    response = call(track, with_query(load_event("track", "impression"), t=None), lambda_context)
    assert response["statusCode"] == 400 and error_of(response)["param"] == "t"


def test_tracking_keys_come_from_ssm_first_key_current(aws, settings):
    import boto3
    from dco.aws.keys import load_keys

    value = json.dumps({"k2": base64.b64encode(b"k" * 32).decode(), "k1": base64.urlsafe_b64encode(b"j" * 32).decode()})
    boto3.client("ssm", region_name=aws.region).put_parameter(
        Name="/dco/test-keys", Value=value, Type="SecureString"
    )
    ring = load_keys("/dco/test-keys", max_age=0)
    assert ring.current == "k2" and ring.keys == {"k2": b"k" * 32, "k1": b"j" * 32}
    assert "kkkk" not in repr(ring)
