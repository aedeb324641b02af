"""track: impression, click and conversion beacons -> one Events item per distinct event (docs/api.md).

    GET  /v1/events/imp?t=TOKEN                      -> 200 1x1 transparent GIF
    GET  /v1/events/click?t=TOKEN                    -> 302 to the landing URL held in the current snapshot
    POST /v1/events/conversion  {"t", "order_id", "value", "currency"} (JSON or form) -> 200 JSON
    GET  /v1/events/conv?t=TOKEN&oid=&value=&currency= -> 200 GIF (the pixel form of a conversion)

Every beacon: ``verify(token, keys, now, max_age, campaigns=<published campaigns>)`` -> claims; a bad token
answers 403 (bad signature, unknown key) or 400 (malformed, expired, issued in the future, unknown campaign) with
``{"error": {"param": "t", "code", "message"}}`` and stores nothing. Then the Events item is put with
``attribute_not_exists(pk)``, so a repeated beacon is stored once (and still answered normally). Impressions and
clicks from bot user agents are answered but not stored. The click target comes only from the snapshot (never
from the query): the product's link, else the creative's landing URL, else the default creative's; none -> 404.

Tests replace ``get_settings``, ``get_store``, ``get_events``, ``get_keys`` and ``clock``; their bodies are shared
with decide (dco.aws.handler_support).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from dco.aws import handler_support as support
from dco.aws.events import EventsTable, EventsUnavailableError, event_item
from dco.aws.keys import KeyRing
from dco.aws.settings import (
    BUCKET,
    DEFAULT_METRICS_NAMESPACE,
    EVENTS_TABLE,
    HMAC_PARAMETER,
    METRICS_NAMESPACE,
    Settings,
)
from dco.bots import is_bot
from dco.errors import RequestError, TokenError
from dco.tracking import BAD_SIGNATURE, UNKNOWN_KEY, TokenClaims, safe_url, verify
from dco.warm import Source, WarmCache, WarmStateUnavailableError

logger = Logger()
tracer = Tracer()  # disabled outside Lambda; aws-xray-sdk ships in the deps layer
metrics = Metrics(namespace=os.environ.get(METRICS_NAMESPACE) or DEFAULT_METRICS_NAMESPACE)
app = APIGatewayHttpResolver()

# The smallest transparent 1x1 GIF (43 bytes).
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
MAX_VALUE = 1e12
MAX_ORDER_ID = 256
MAX_BODY_BYTES = 16_384
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_NO_STORE = {"Cache-Control": "no-store"}
_FORBIDDEN_CODES = frozenset({BAD_SIGNATURE, UNKNOWN_KEY})


# ------------------------------------------------------------------------------------ factories (replaceable)


def clock() -> datetime:
    return support.utc_now()


def get_settings() -> Settings:
    return Settings.from_env(os.environ, required=(BUCKET, EVENTS_TABLE, HMAC_PARAMETER))


def get_store() -> Source:
    return _clients.s3_store(_settings().bucket)


def get_events() -> EventsTable:
    return _clients.events_table(_settings().events_table)


def get_keys() -> KeyRing:
    return _clients.tracking_keys(_settings().hmac_parameter)


_state: dict[str, Any] = {}
_clients = support.Clients()  # botocore session and clients of this execution environment


def _settings() -> Settings:
    return support.once(_state, "settings", get_settings)


def _events() -> EventsTable:
    return support.once(_state, "events", get_events)


def get_cache() -> WarmCache:
    """Published campaigns and their snapshots (landing URLs), without stats."""
    return support.once(
        _state,
        "cache",
        lambda: support.warm_cache(
            # clock is looked up on every call: tests replace it after the cache is built
            get_store(), clock=lambda: clock(), settings=_settings(), on_failure=_refresh_failed, with_stats=False
        ),
    )


_refresh_failed = support.refresh_reporter(metrics, logger)


# ------------------------------------------------------------------------------------------------- routes


@app.get("/v1/events/imp")
def impression() -> Response:
    query = _query()
    claims = _verify(query.get("t"))
    if is_bot(_header("user-agent")):
        metrics.add_metric(name="BotImpressions", unit=MetricUnit.Count, value=1)
    else:
        _store("impression", claims)
    return _gif()


@app.get("/v1/events/click")
def click() -> Response:
    claims = _verify(_query().get("t"))
    location = _landing(claims)
    if location is None:
        return _error(404, "t", "no landing URL is known for this ad any more")
    if is_bot(_header("user-agent")):
        metrics.add_metric(name="BotClicks", unit=MetricUnit.Count, value=1)
    else:
        _store("click", claims)
    return Response(302, None, "", {**_NO_STORE, "Location": location})


@app.post("/v1/events/conversion")
def conversion() -> Response:
    body = _body()
    claims = _verify(body.get("t"))
    stored = _conversion(claims, body.get("order_id"), body.get("value"), body.get("currency"))
    return Response(200, "application/json", json.dumps({"stored": stored}), _NO_STORE)


@app.get("/v1/events/conv")
def conversion_pixel() -> Response:
    query = _query()
    claims = _verify(query.get("t"))
    _conversion(claims, query.get("oid"), query.get("value"), query.get("currency"))
    return _gif()


# ------------------------------------------------------------------------------------------------ helpers


def _query() -> dict[str, str]:
    return dict(app.current_event.query_string_parameters or {})


def _header(name: str) -> str:
    return next((v for k, v in (app.current_event.headers or {}).items() if k.lower() == name), "")


def _body() -> dict[str, Any]:
    event = app.current_event
    try:
        raw = event.decoded_body or ""
    except (UnicodeDecodeError, ValueError):  # a binary body (base64 from API Gateway) that is not UTF-8 text
        raise RequestError("body", "must be UTF-8 text: a JSON object or a form") from None
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError("body", f"longer than {MAX_BODY_BYTES} bytes")
    if "application/x-www-form-urlencoded" in _header("content-type").lower():
        return dict(parse_qsl(raw, keep_blank_values=False))
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise RequestError("body", "must be a JSON object (or a form with Content-Type x-www-form-urlencoded)") from None
    if not isinstance(data, dict):
        raise RequestError("body", "must be a JSON object")
    return data


def _verify(token: Any) -> TokenClaims:
    if not isinstance(token, str) or not token.strip():
        raise RequestError("t", "is required: the tracking token of the ad")
    keys = get_keys()
    return verify(
        token.strip(),
        keys.keys,
        now=int(clock().timestamp()),
        max_age=_settings().token_max_age,
        campaigns=get_cache(),
    )


def _landing(claims: TokenClaims) -> str | None:
    engine = get_cache().get(claims.campaign).engine
    url = engine.landing_url(claims.creative, claims.product)
    if safe_url(url) is None:
        default = engine.campaign.default_creative
        url = engine.landing_url(default, None) if default else None
    return safe_url(url)


def _conversion(claims: TokenClaims, order_id: Any, value: Any, currency: Any) -> bool:
    oid = _order_id(order_id)
    amount = _value(value)
    code = _currency(currency)
    return _store("conversion", claims, order_id=oid, value=amount, currency=code)


def _order_id(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_ORDER_ID or not value.isprintable():
        raise RequestError("order_id", f"must be printable text of at most {MAX_ORDER_ID} characters")
    return value.strip()


def _value(value: Any) -> float:
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool):
        raise RequestError("value", "must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError("value", f"must be a number, got {value!r}") from None
    if not math.isfinite(number) or not 0 <= number <= MAX_VALUE:
        raise RequestError("value", f"must be a number from 0 to {MAX_VALUE:g}")
    return number


def _currency(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value.strip()):
        raise RequestError("currency", "must be a three-letter ISO 4217 code")
    return value.strip().upper()


def _store(kind: str, claims: TokenClaims, **extra: Any) -> bool:
    settings = _settings()
    now = int(clock().timestamp())
    item = event_item(kind, claims, now=now, ttl_seconds=settings.event_ttl_seconds, **extra)
    stored = _events().put(item)
    name = {"impression": "Impressions", "click": "Clicks", "conversion": "Conversions"}[kind]
    metrics.add_metric(name=name if stored else "DuplicateEvents", unit=MetricUnit.Count, value=1)
    logger.info("event", extra={"pk": item["pk"], "stored": stored, "snapshot": claims.snapshot})
    return stored


def _gif() -> Response:
    return Response(200, "image/gif", GIF, {**_NO_STORE, "Content-Length": str(len(GIF))})


def _error(status: int, param: str | None, message: str, code: str | None = None, **headers: str) -> Response:
    error: dict[str, Any] = {"param": param, "message": message}
    if code:
        error["code"] = code
    return Response(status, "application/json", json.dumps({"error": error}), {**_NO_STORE, **headers})


# ------------------------------------------------------------------------------------------------- errors


@app.exception_handler(TokenError)
def _token_error(exc: TokenError) -> Response:
    metrics.add_metric(name="RejectedEvents", unit=MetricUnit.Count, value=1)
    logger.info("token rejected", extra={"code": exc.code, "reason": str(exc)})
    return _error(403 if exc.code in _FORBIDDEN_CODES else 400, "t", str(exc), exc.code)


@app.exception_handler(RequestError)
def _request_error(exc: RequestError) -> Response:
    metrics.add_metric(name="RequestErrors", unit=MetricUnit.Count, value=1)
    return _error(400, exc.param, exc.reason)


@app.exception_handler(WarmStateUnavailableError)
def _unavailable(exc: WarmStateUnavailableError) -> Response:
    logger.error("no warm state and storage unreachable", extra={"error": str(exc)})
    return _error(503, None, "temporarily unavailable; retry shortly", **{"Retry-After": "5"})


@app.exception_handler(EventsUnavailableError)
def _events_unavailable(exc: EventsUnavailableError) -> Response:
    # Throttled or unreachable after the client's retries: nothing stored, a server-side condition (not 4xx),
    # and the beacon can be retried safely (the conditional put counts it once).
    metrics.add_metric(name="EventsUnavailable", unit=MetricUnit.Count, value=1)
    logger.error("event not stored: Events table unavailable", extra={"error": str(exc)})
    return _error(503, None, "the event could not be recorded; retry shortly", **{"Retry-After": "1"})


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unexpected error")
    return _error(500, None, "internal error")


@app.not_found
def _not_found(exc: Exception) -> Response:
    return _error(404, None, "no such endpoint; see docs/api.md")


# ------------------------------------------------------------------------------------------------ handler


@tracer.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
