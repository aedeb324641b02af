"""ingest: S3 object-created notifications for campaign and feed drops -> validated, published snapshots.

    campaigns/<campaign>.yaml|.yml|.json        -> rebuild with the campaign's newest feed
    feeds/<campaign>/<name>.tsv|.csv|.txt       -> rebuild with the campaign's config

Each record goes through :func:`dco.ingest.process` over :class:`dco.aws.store.S3Store`: build, write the
immutable snapshot, swap the pointer conditionally (a duplicate or out-of-order notification never rolls a newer
snapshot back), write ``reports/<campaign>/<name>.json``. Keys under other prefixes (snapshots, pointers,
reports, stats) are ignored, so ingest's own writes can never re-trigger it even if the template's notification
filters were widened.

A rejected drop is not an error (its report says why; nothing is published). A storage failure raises, so Lambda
retries the asynchronous invocation; a retry is harmless (same snapshot key, the pointer's sequence check).

Tests replace ``get_settings``, ``get_store`` and ``clock``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from dco.aws.settings import BUCKET, DEFAULT_METRICS_NAMESPACE, METRICS_NAMESPACE, Settings
from dco.aws.store import S3Store
from dco.ingest import PUBLISHED, REJECTED, SUPERSEDED, UNCHANGED, IngestStore, drop_from_record, process

logger = Logger()
tracer = Tracer()  # disabled outside Lambda; aws-xray-sdk ships in the deps layer
metrics = Metrics(namespace=os.environ.get(METRICS_NAMESPACE) or DEFAULT_METRICS_NAMESPACE)

_OUTCOME_METRIC = {PUBLISHED: "SnapshotsPublished", UNCHANGED: "SnapshotsUnchanged",
                   SUPERSEDED: "DropsSuperseded", REJECTED: "DropsRejected"}


def clock() -> datetime:
    return datetime.now(UTC)


def get_settings() -> Settings:
    return Settings.from_env(os.environ, required=(BUCKET,))


def get_store() -> IngestStore:
    return S3Store(get_settings().bucket)


_state: dict[str, Any] = {}


def _store() -> IngestStore:
    if "store" not in _state:
        _state["store"] = get_store()
    return _state["store"]


def _bucket() -> str:
    if "bucket" not in _state:
        _state["bucket"] = get_settings().bucket
    return _state["bucket"]


@tracer.capture_lambda_handler
@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    results = []
    for record in event.get("Records", []):
        key = record.get("s3", {}).get("object", {}).get("key")
        bucket = record.get("s3", {}).get("bucket", {}).get("name")
        if bucket != _bucket():
            logger.warning("notification from another bucket; ignored", extra={"bucket": bucket, "key": key})
            results.append({"key": key, "outcome": "ignored"})
            continue
        try:
            drop = drop_from_record(record)
        except ValueError as exc:
            logger.error("malformed S3 event record; skipped", extra={"key": key, "error": str(exc)})
            results.append({"key": key, "outcome": "malformed"})
            continue
        if drop is None:
            logger.info("not an input key; ignored", extra={"key": key, "event": record.get("eventName")})
            results.append({"key": key, "outcome": "ignored"})
            continue
        outcome = process(drop, _store(), now=int(clock().timestamp()))
        metrics.add_metric(name=_OUTCOME_METRIC[outcome.outcome], unit=MetricUnit.Count, value=1)
        logger.info(
            "drop processed",
            extra={"key": drop.key, "campaign": drop.campaign, "outcome": outcome.outcome,
                   "sequence": drop.sequence, "version": outcome.report.get("version"),
                   "report": outcome.report_key, "error": outcome.report.get("error")},
        )
        results.append({"key": drop.key, "outcome": outcome.outcome, "version": outcome.report.get("version"),
                        "report": outcome.report_key})
    return {"results": results}
