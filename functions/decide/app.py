"""decide: GET /v1/ad -> the rendered ad of one decision (docs/api.md, docs/openapi.yaml).

HTTP API (payload v2) -> Powertools APIGatewayHttpResolver -> ``ad()``:

    ?c=<campaign>&exp=...  ──parse_request(query, headers, now=clock())──> AdRequest
    WarmCache.get(campaign) ──> Engine (built once per snapshot version) + StatsTable   (no per-request I/O;
                                 conditional GETs at most every DCO_REFRESH_SECONDS, last good state on failure)
    Engine.decide(request, stats, seed) ──> Decision ──Engine.render(base_url, keys)──> markup with signed URLs

Responses: 200 with the ad's content type (``Cache-Control: no-store``, ``X-DCO-Decision``), 200 JSON with the
decision and its explain trace when ``debug=1``, 204 when there is nothing to serve (no default creative),
400 ``{"error": {"param", "message"}}`` for any client mistake (including a missing or unknown ``c``), 503 when
nothing is loaded and S3 cannot be reached, 500 with a generic message for bugs.

Tests replace the module-level factories ``get_settings``, ``get_store``, ``get_keys`` and ``clock``; their
bodies are shared with track (dco.aws.handler_support).

Cold start (docs/performance.md, "coldstart"): no X-Ray SDK. decide makes no downstream call worth a subsegment
(at most a few conditional S3 GETs per refresh interval and one SSM read per five minutes), and Powertools'
Tracer would import aws-xray-sdk (about 250 ms). With ``Tracing: Active`` (infra/template.yaml) Lambda still
records the function's init and invocation segments. No boto3 and no Jinja2 either: the S3 and SSM clients come
from one botocore session (dco.aws.handler_support.Clients) and ads render with dco.minitemplate, the default
engine of dco.render (byte-identical to Jinja2 for the shipped templates). tests/unit/test_handler_support.py
serves a first decision in a fresh interpreter where neither can be imported.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from dco.aws import handler_support as support
from dco.aws.keys import KeyRing
from dco.aws.settings import BUCKET, DEFAULT_METRICS_NAMESPACE, HMAC_PARAMETER, METRICS_NAMESPACE, Settings
from dco.config import ID_PATTERN
from dco.errors import RequestError
from dco.request import parse_request
from dco.warm import Source, UnknownCampaignError, WarmCache, WarmStateUnavailableError

logger = Logger()
metrics = Metrics(namespace=os.environ.get(METRICS_NAMESPACE) or DEFAULT_METRICS_NAMESPACE)
app = APIGatewayHttpResolver()

_CAMPAIGN = re.compile(ID_PATTERN)
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::[0-9]{1,5})?")
_NO_STORE = {"Cache-Control": "no-store"}


# ------------------------------------------------------------------------------------ factories (replaceable)


def clock() -> datetime:
    return support.utc_now()


def get_settings() -> Settings:
    return Settings.from_env(os.environ, required=(BUCKET, HMAC_PARAMETER))


def get_store() -> Source:
    return _clients.s3_store(_settings().bucket)


def get_keys() -> KeyRing:
    return _clients.tracking_keys(_settings().hmac_parameter)


_state: dict[str, Any] = {}
_clients = support.Clients()  # botocore session and clients of this execution environment


def _settings() -> Settings:
    return support.once(_state, "settings", get_settings)


def get_cache() -> WarmCache:
    """The warm state of this execution environment (built on first use)."""
    return support.once(
        _state,
        "cache",
        lambda: support.warm_cache(
            # clock is looked up on every call: tests replace it after the cache is built
            get_store(), clock=lambda: clock(), settings=_settings(), on_failure=_refresh_failed
        ),
    )


_refresh_failed = support.refresh_reporter(metrics, logger)


# -------------------------------------------------------------------------------------------------- route


@app.get("/v1/ad")
def ad() -> Response:
    started = time.perf_counter()
    event = app.current_event
    query = dict(event.query_string_parameters or {})
    headers = dict(event.headers or {})
    campaign = query.get("c", "").strip()
    if not campaign:
        raise RequestError("c", "is required: the campaign id")
    if not _CAMPAIGN.fullmatch(campaign):
        raise RequestError("c", f"must be a campaign id matching {ID_PATTERN}")
    request = parse_request(query, headers, now=clock())
    try:
        warm = get_cache().get(campaign)
    except UnknownCampaignError:
        raise RequestError("c", f'unknown campaign "{campaign}"') from None
    seed = request.seed if request.seed is not None else int.from_bytes(os.urandom(8), "big") >> 1
    decision = warm.engine.decide(request, warm.stats, seed=seed, explain=request.debug)
    metrics.add_metadata(key="snapshot", value=warm.version)
    metrics.add_metric(name="Decisions", unit=MetricUnit.Count, value=1)
    if decision.branch == "default":
        metrics.add_metric(name="Fallbacks", unit=MetricUnit.Count, value=1)
    logger.info(
        "decision",
        extra={k: v for k, v in decision.to_dict().items() if k != "explain"} | {"pointer": warm.pointer.get("sequence")},
    )
    rendered = None
    if decision.served:
        keys = get_keys()
        base_url = _base_url(headers, event)
        rendered = warm.engine.render(decision, request, base_url=base_url, keys=keys.keys, kid=keys.current)
    else:
        metrics.add_metric(name="NoAd", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="DecisionLatencyMs", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1e3)
    headers_out = {**_NO_STORE, "X-DCO-Decision": decision.decision_id}
    if request.debug:
        body = {
            "decision": decision.to_dict(),
            "ad": None if rendered is None else rendered.body,
            "content_type": None if rendered is None else rendered.content_type,
            "pointer": {k: warm.pointer.get(k) for k in ("version", "sequence", "feed", "published_at")},
        }
        return Response(200, "application/json", json.dumps(body, default=_plain), headers_out)
    if rendered is None:
        return Response(204, None, "", headers_out)
    return Response(200, rendered.content_type, rendered.body, headers_out)


def _base_url(headers: dict[str, str], event: Any) -> str:
    configured = _settings().public_base_url
    if configured:
        return configured
    lowered = {k.lower(): v for k, v in headers.items()}
    host = (lowered.get("host") or event.request_context.domain_name or "").strip()
    if not _HOST.fullmatch(host):
        raise RequestError("Host", "the Host header must be a host name (set DCO_PUBLIC_BASE_URL behind a proxy)")
    return f"https://{host}"


def _plain(value: Any) -> Any:
    """JSON for what the explain trace may hold besides plain types (numpy scalars, sets, tuples)."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)


# ------------------------------------------------------------------------------------------------- errors


def _error(status: int, param: str | None, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"param": param, "message": message}})
    return Response(status, "application/json", body, {**_NO_STORE, **(headers or {})})


@app.exception_handler(RequestError)
def _request_error(exc: RequestError) -> Response:
    metrics.add_metric(name="RequestErrors", unit=MetricUnit.Count, value=1)
    logger.info("bad request", extra={"param": exc.param, "reason": exc.reason})
    return _error(400, exc.param, exc.reason)


@app.exception_handler(WarmStateUnavailableError)
def _unavailable(exc: WarmStateUnavailableError) -> Response:
    metrics.add_metric(name="Unavailable", unit=MetricUnit.Count, value=1)
    logger.error("no warm state and storage unreachable", extra={"error": str(exc)})
    return _error(503, None, "campaign data is temporarily unavailable; retry shortly", {"Retry-After": "5"})


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unexpected error")
    return _error(500, None, "internal error")


@app.not_found
def _not_found(exc: Exception) -> Response:
    return _error(404, None, "no such endpoint; see docs/api.md")


# ------------------------------------------------------------------------------------------------ handler


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
