"""Helpers of the decide / track / ingest functional tests (fixtures of moto itself live in conftest.py).

* :func:`load_event` / :func:`http_event` / :func:`s3_event`: the sample events of events/<function>/ and
  variations of them (API Gateway HTTP API payload v2, S3 notifications).
* :data:`SAMPLE_KEYS`, :data:`SAMPLE_NOW`: the fixed tracking key and time the sample track events were signed
  with. The key is a test key, published here on purpose; never deploy it.
* :class:`FixedClock`: the injectable clock of every handler (``app.clock = FixedClock(...)``).
* :class:`OutageClient`: an S3 client whose reads fail with ``EndpointConnectionError`` while ``down`` is set.
* :func:`put_retail` / :func:`ingest_key`: drop the retail example into the bucket and run ingest on it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

from dco.aws.keys import KeyRing
from dco.tracking import TokenClaims, sign

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "retail"
CAMPAIGN = "retail-demo"
BUCKET = "dco-test-bucket"

SAMPLE_KID = "sample"
SAMPLE_KEYS = {SAMPLE_KID: b"dco-sample-events-test-key-0001!"}  # 32 bytes; test-only
SAMPLE_RING = KeyRing(current=SAMPLE_KID, keys=SAMPLE_KEYS)
SAMPLE_NOW = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
SAMPLE_DECISION = "sample-decision-0001"
SAMPLE_PRODUCT = "SKU-0000001"
SAMPLE_LANDING = "https://shop.example.com/cookware/ultra-cast-iron-skillet-slate-blue-sku-0000001"
BROWSER_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def load_event(function: str, scenario: str) -> dict[str, Any]:
    """The sample event events/<function>/<scenario>.json (a fresh copy)."""
    return json.loads((ROOT / "events" / function / f"{scenario}.json").read_text())


def load_app(name: str) -> ModuleType:
    """Import functions/<name>/app.py as a fresh module (module scope re-runs: new warm state)."""
    module_name = f"{name}_app_under_test"
    sys.modules.pop(module_name, None)
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "functions" / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


class FixedClock:
    """A clock that only moves when told to."""

    def __init__(self, now: datetime = SAMPLE_NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# ------------------------------------------------------------------------------------------------ events


def http_event(
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    *,
    headers: dict[str, str] | None = None,
    body: str | None = None,
    request_id: str = "req-sample-0001",
    now: datetime = SAMPLE_NOW,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) request event."""
    all_headers = {
        "accept": "*/*",
        "host": "ads.example.com",
        "user-agent": BROWSER_UA,
        "x-forwarded-for": "203.0.113.10",
        "x-forwarded-proto": "https",
        **(headers or {}),
    }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api0sample",
            "domainName": "ads.example.com",
            "domainPrefix": "ads",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": all_headers["user-agent"],
            },
            "requestId": request_id,
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if body is not None:
        event["body"] = body
    return event


def with_query(event: dict[str, Any], **changes: str | None) -> dict[str, Any]:
    """A copy of an HTTP event with query parameters set (or removed with None)."""
    out = copy.deepcopy(event)
    query = dict(out.get("queryStringParameters") or {})
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    out["queryStringParameters"] = query
    out["rawQueryString"] = urlencode(query)
    return out


def with_headers(event: dict[str, Any], **changes: str) -> dict[str, Any]:
    out = copy.deepcopy(event)
    out["headers"].update({k.replace("_", "-"): v for k, v in changes.items()})
    out["requestContext"]["http"]["userAgent"] = out["headers"].get("user-agent", "")
    return out


def s3_event(key: str, *, event_time: str, sequencer: str, bucket: str = BUCKET, size: int = 1024) -> dict[str, Any]:
    """An S3 ObjectCreated:Put notification with one record."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": event_time,
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AIDASAMPLE"},
                "requestParameters": {"sourceIPAddress": "203.0.113.20"},
                "responseElements": {"x-amz-request-id": "SAMPLE0001", "x-amz-id-2": "sample"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "IngestFunctionFeedTsv",
                    "bucket": {"name": bucket, "ownerIdentity": {"principalId": "SAMPLE"},
                               "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": key, "size": size, "eTag": "0123456789abcdef0123456789abcdef",
                               "sequencer": sequencer},
                },
            }
        ]
    }


def record_of(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of an S3 event with its single record's eventTime / object key / sequencer changed."""
    out = copy.deepcopy(event)
    record = out["Records"][0]
    if "event_time" in changes:
        record["eventTime"] = changes["event_time"]
    for name in ("key", "sequencer"):
        if name in changes:
            record["s3"]["object"][name] = changes[name]
    return out


# ---------------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class SampleToken:
    claims: TokenClaims
    token: str


def sample_token(
    *,
    campaign: str = CAMPAIGN,
    creative: str = "cr-product",
    product: str | None = SAMPLE_PRODUCT,
    decision_id: str = SAMPLE_DECISION,
    issued_at: datetime = SAMPLE_NOW,
    keys: dict[str, bytes] = SAMPLE_KEYS,
    kid: str = SAMPLE_KID,
) -> SampleToken:
    """A token as decide would sign it for the retail example (product card, with context)."""
    claims = TokenClaims(
        campaign=campaign,
        experience="retail-tag",
        arm=f"{creative}|{product}" if product else creative,
        creative=creative,
        product=product,
        variants=(),
        snapshot="sha256:" + "0" * 64,
        decision_id=decision_id,
        issued_at=int(issued_at.timestamp()),
        holdout=False,
        context=(("device", "mobile"), ("region", "pnw")),
    )
    return SampleToken(claims, sign(claims, keys, kid))


# ---------------------------------------------------------------------------------------------- bucket


def put_retail(s3: Any, *, campaign: bool = True, feed: bool = True, bucket: str = BUCKET) -> None:
    """Put the retail example's campaign config and feed where a drop would put them."""
    if campaign:
        s3.put_object(Bucket=bucket, Key=f"campaigns/{CAMPAIGN}.yaml", Body=(EXAMPLE / "campaign.yaml").read_bytes())
    if feed:
        s3.put_object(Bucket=bucket, Key=f"feeds/{CAMPAIGN}/products.tsv", Body=(EXAMPLE / "feed.tsv").read_bytes())


def read_json(s3: Any, key: str, bucket: str = BUCKET) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


class OutageClient:
    """Wraps an S3 client; while ``down`` is true every GetObject fails like an unreachable endpoint."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.down = False
        self.gets = 0

    def get_object(self, **kwargs: Any) -> Any:
        from botocore.exceptions import EndpointConnectionError

        self.gets += 1
        if self.down:
            raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")
        return self._client.get_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


_BUILT: dict[str, Any] = {}


def publish_retail(s3: Any, bucket: str = BUCKET) -> str:
    """Publish the retail example the way ingest does (snapshot + pointer), building it once per session.

    For tests whose subject is not ingest (track); returns the snapshot version.
    """
    from dco.aws.store import S3Store
    from dco.ingest import build, next_pointer, snapshot_key

    if "retail" not in _BUILT:
        _BUILT["retail"] = build(
            CAMPAIGN, (EXAMPLE / "campaign.yaml").read_bytes(), (EXAMPLE / "feed.tsv").read_bytes(),
            campaign_source=f"campaigns/{CAMPAIGN}.yaml", feed_source=f"feeds/{CAMPAIGN}/products.tsv",
            built_at=int(SAMPLE_NOW.timestamp()),
        )
    result = _BUILT["retail"]
    store = S3Store(bucket, client=s3)
    store.put_snapshot(snapshot_key(CAMPAIGN, result.version), result.snapshot)
    decision = next_pointer(
        None, campaign=CAMPAIGN, version=result.version, sequence="1", feed=None, published_at=0
    )
    assert decision.pointer is not None
    store.swap_pointer(CAMPAIGN, decision.pointer, None)
    return str(result.version)
