"""decide on moto: serves from what ingest published, refreshes on schedule, survives S3 outages and bad objects."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any
from urllib.parse import unquote

import msgpack
import pytest
from _stack import (
    BUCKET,
    CAMPAIGN,
    EXAMPLE,
    ROOT,
    SAMPLE_KEYS,
    SAMPLE_RING,
    FixedClock,
    OutageClient,
    load_app,
    load_event,
    put_retail,
    read_json,
    record_of,
    with_headers,
    with_query,
)
from dco.aws.store import S3Store
from dco.tracking import verify

POINTER = f"pointers/{CAMPAIGN}.json"
IMP_URL = re.compile(r"https://ads\.example\.com/v1/events/imp\?t=([A-Za-z0-9_.\-]+)")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def ingest(settings: Any, clock: FixedClock) -> Any:
    app = load_app("ingest")
    app.clock = clock
    return app


@pytest.fixture
def outage(aws: Any) -> OutageClient:
    return OutageClient(aws.s3)


@pytest.fixture
def decide(settings: Any, clock: FixedClock, outage: OutageClient) -> Any:
    app = load_app("decide")
    app.clock = clock
    app.get_keys = lambda: SAMPLE_RING
    app.get_settings = lambda: settings  # DCO_HMAC_PARAMETER is not needed: keys are injected
    app.get_store = lambda: S3Store(settings.bucket, client=outage)
    return app


@pytest.fixture
def published(aws: Any, ingest: Any, lambda_context: Any) -> dict[str, Any]:
    put_retail(aws.s3)
    [result] = ingest.handler(load_event("ingest", "feed_drop"), lambda_context)["results"]
    assert result["outcome"] == "published"
    return result


def call(decide: Any, event: dict[str, Any], context: Any) -> dict[str, Any]:
    response = decide.handler(event, context)
    response["headers"] = {k.lower(): v for k, v in response.get("headers", {}).items()}
    return response


def served_version(decide: Any, context: Any) -> str:
    response = call(decide, load_event("decide", "debug_request"), context)
    assert response["statusCode"] == 200, response["body"]
    return json.loads(response["body"])["decision"]["snapshot"]


def drop_campaign(aws: Any, ingest: Any, context: Any, holdout: str, minutes: int) -> str:
    text = (EXAMPLE / "campaign.yaml").read_text().replace("holdout: 0.1", f"holdout: {holdout}")
    aws.s3.put_object(Bucket=BUCKET, Key=f"campaigns/{CAMPAIGN}.yaml", Body=text.encode())
    event = record_of(
        load_event("ingest", "campaign_drop"), event_time=f"2026-01-01T00:{minutes:02d}:00.000Z",
        sequencer=f"0065A1B2C3D4E5F7{minutes:02X}",
    )
    [result] = ingest.handler(event, context)["results"]
    assert result["outcome"] == "published"
    return result["version"]


# ------------------------------------------------------------------------------------------- sample events


def test_ad_request_serves_html_with_signed_tracking(decide, published, lambda_context):
    response = call(decide, load_event("decide", "ad_request"), lambda_context)
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"].startswith("text/html")
    assert response["headers"]["cache-control"] == "no-store"
    decision_id = response["headers"]["x-dco-decision"]
    token = unquote(IMP_URL.search(response["body"]).group(1))
    claims = verify(token, SAMPLE_KEYS, now=1_767_225_600, campaigns={CAMPAIGN})
    assert claims.decision_id == decision_id and claims.snapshot == published["version"]
    assert dict(claims.context) == {"region": "pnw", "device": "mobile"}  # what component learning counts


def test_tag_request_serves_js_with_the_dsp_click_prefix(decide, published, lambda_context):
    response = call(decide, load_event("decide", "tag_request"), lambda_context)
    assert response["statusCode"] == 200
    assert "javascript" in response["headers"]["content-type"]
    assert "https://dsp.example/click?r=https%3A%2F%2Fads.example.com%2Fv1%2Fevents%2Fclick" in response["body"]


def test_debug_request_returns_the_decision_and_its_explain_trace(decide, published, lambda_context):
    response = call(decide, load_event("decide", "debug_request"), lambda_context)
    body = json.loads(response["body"])
    assert response["statusCode"] == 200 and response["headers"]["content-type"] == "application/json"
    assert body["decision"]["seed"] == 7 and body["decision"]["snapshot"] == published["version"]
    assert body["decision"]["explain"]["targeting"]["theme"] == "th-pnw"
    assert body["ad"].startswith("<") and body["content_type"].startswith("text/html")
    again = json.loads(call(decide, load_event("decide", "debug_request"), lambda_context)["body"])
    assert again["decision"] == body["decision"]  # same seed, same snapshot, same request: same decision


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({}, "size"),  # the sample itself: size=300by250
        ({"size": None, "c": None}, "c"),
        ({"size": None, "c": "no-such-campaign"}, "c"),
        ({"size": None, "c": "../pointers/x"}, "c"),
        ({"size": None, "exp": None}, "exp"),
        ({"size": None, "exp": "nope"}, "exp"),
        ({"size": None, "fmt": "pdf"}, "fmt"),
        ({"size": None, "seed": "-1"}, "seed"),
    ],
)
def test_bad_requests_are_400_naming_the_parameter(decide, published, lambda_context, changes, param):
    response = call(decide, with_query(load_event("decide", "bad_request"), **changes), lambda_context)
    assert response["statusCode"] == 400
    assert response["headers"]["content-type"] == "application/json"
    assert json.loads(response["body"])["error"]["param"] == param


def test_bad_host_header_is_a_client_error(decide, published, lambda_context):
    event = with_headers(load_event("decide", "ad_request"), host="evil.example/<script>")
    response = call(decide, event, lambda_context)
    assert response["statusCode"] == 400 and json.loads(response["body"])["error"]["param"] == "Host"


def test_no_ad_without_a_default_creative_is_204(aws, decide, ingest, lambda_context):
    text = (EXAMPLE / "campaign.yaml").read_text()
    text = text.replace("default_creative: cr-house\n", "").replace("    else: th-national\n", "")
    aws.s3.put_object(Bucket=BUCKET, Key=f"campaigns/{CAMPAIGN}.yaml", Body=text.encode())
    put_retail(aws.s3, campaign=False)
    [result] = ingest.handler(load_event("ingest", "feed_drop"), lambda_context)["results"]
    assert result["outcome"] == "published", result
    response = call(decide, with_query(load_event("decide", "ad_request"), region="midwest-nowhere"), lambda_context)
    assert response["statusCode"] == 204 and response["body"] == ""


def test_unknown_route_is_a_json_404(decide, published, lambda_context):
    event = load_event("decide", "ad_request")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/nope"
    response = call(decide, event, lambda_context)
    assert response["statusCode"] == 404 and "error" in json.loads(response["body"])


# ------------------------------------------------------------------------------------------- warm state


def test_a_new_pointer_is_picked_up_only_after_the_refresh_interval(aws, decide, ingest, published, clock, lambda_context):
    assert served_version(decide, lambda_context) == published["version"]
    newer = drop_campaign(aws, ingest, lambda_context, "0.2", minutes=10)
    clock.advance(29)
    assert served_version(decide, lambda_context) == published["version"]  # within DCO_REFRESH_SECONDS=30
    clock.advance(2)
    assert served_version(decide, lambda_context) == newer


def test_refresh_is_conditional_and_never_per_request(decide, published, clock, outage, lambda_context):
    served_version(decide, lambda_context)
    cold_gets = outage.gets  # pointer + snapshot + stats
    for _ in range(5):
        served_version(decide, lambda_context)
    assert outage.gets == cold_gets
    clock.advance(31)
    served_version(decide, lambda_context)
    assert outage.gets == cold_gets + 2  # pointer (304) + stats: the immutable snapshot is not re-read


def test_s3_outage_keeps_serving_the_last_good_snapshot(aws, decide, ingest, published, clock, outage, lambda_context, capsys):
    assert served_version(decide, lambda_context) == published["version"]
    drop_campaign(aws, ingest, lambda_context, "0.2", minutes=10)
    outage.down = True
    clock.advance(60)
    capsys.readouterr()
    assert served_version(decide, lambda_context) == published["version"]
    assert '"SnapshotRefreshFailed"' in capsys.readouterr().out
    outage.down = False
    clock.advance(60)
    assert served_version(decide, lambda_context) != published["version"]  # recovered: the newer one


def test_cold_start_during_an_outage_is_503(decide, published, outage, lambda_context):
    outage.down = True
    response = call(decide, load_event("decide", "ad_request"), lambda_context)
    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error"]["message"]
    assert response["headers"]["retry-after"] == "5"


def test_a_corrupt_new_snapshot_is_rejected_and_the_old_one_kept(aws, decide, published, clock, lambda_context, capsys):
    assert served_version(decide, lambda_context) == published["version"]
    # A pointer naming a truncated object (a bad manual upload, a bit flip): checksum mismatch on load.
    good = aws.s3.get_object(Bucket=BUCKET, Key=read_json(aws.s3, POINTER)["key"])["Body"].read()
    bad_key = f"snapshots/{CAMPAIGN}/{'e' * 64}.msgpack"
    aws.s3.put_object(Bucket=BUCKET, Key=bad_key, Body=good[:-100])
    pointer = read_json(aws.s3, POINTER) | {"version": "sha256:" + "e" * 64, "key": bad_key}
    aws.s3.put_object(Bucket=BUCKET, Key=POINTER, Body=json.dumps(pointer).encode())
    clock.advance(31)
    capsys.readouterr()
    assert served_version(decide, lambda_context) == published["version"]
    assert '"SnapshotRefreshFailed"' in capsys.readouterr().out


def test_stats_are_read_and_a_bad_stats_object_keeps_the_last_good_one(aws, decide, published, clock, lambda_context, capsys):
    arm = "cr-retail"
    stats = {"version": 1, "campaign": CAMPAIGN, "updated_at": 1, "arms": {arm: [100, 7, 1, 12.5]}, "components": {}}
    aws.s3.put_object(Bucket=BUCKET, Key=f"stats/{CAMPAIGN}.msgpack", Body=msgpack.packb(stats))
    served_version(decide, lambda_context)
    warm = decide.get_cache().get(CAMPAIGN)
    assert warm.stats.get(arm).clicks == 7
    aws.s3.put_object(Bucket=BUCKET, Key=f"stats/{CAMPAIGN}.msgpack", Body=b"\xc1 not msgpack")
    clock.advance(31)
    capsys.readouterr()
    assert served_version(decide, lambda_context) == published["version"]
    assert '"StatsRefreshFailed"' in capsys.readouterr().out
    assert decide.get_cache().get(CAMPAIGN).stats.get(arm).clicks == 7


def test_openapi_documents_every_request_parameter():
    import re

    import yaml
    from _stack import ROOT
    from dco import request

    source = (ROOT / "layers/dco/dco/request.py").read_text()
    params = set(re.findall(r'q\.(?:get|folded|get_consent)\("([a-z_0-9]+)"', source))
    params |= {*request.DATA_KEYS, *request.PROFILE_KEYS, *request.CONTEXT_SHORTHANDS, *request.CONSENT_PARAMS, "c"}
    spec = yaml.safe_load((ROOT / "docs/openapi.yaml").read_text())
    documented = {p["name"] for p in spec["paths"]["/v1/ad"]["get"]["parameters"]}
    assert params <= documented, params - documented


# ------------------------------------------------------------------------------------------------ cold start

_IMPORT_ONLY = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("decide_app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(" ".join(name for name in sys.argv[2:] if name in sys.modules))
"""


def test_importing_decide_leaves_out_the_xray_sdk_and_the_ingest_pipeline():
    # GIVEN a fresh interpreter (module caches of this test process would hide what the import pulls in)
    unwanted = ["aws_xray_sdk", "dco.ingest", "dco.feed"]
    # WHEN it imports functions/decide/app.py
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ONLY, str(ROOT / "functions" / "decide" / "app.py"), *unwanted],
        capture_output=True, text=True, timeout=120, check=True,
    )
    # THEN none of them is loaded: decide's cold start does not pay for them (docs/performance.md, "coldstart")
    assert result.stdout.split() == []
