"""publish-stats: the Counters table stream -> ``stats/<campaign>.msgpack`` in S3 (docs/fold.md).

One invocation: decode the changed counters' NEW_IMAGEs (absolute counts), group them per campaign
(dco.fold.stats_updates), merge each campaign's rows into its stats object by maximum with a conditional
write (dco.aws.stats_store.StatsStore.publish). A campaign whose write fails after bounded retries has its
records reported in ``batchItemFailures``; replaying them is harmless (merge by maximum is idempotent).

Like fold, this aggregates the whole batch (one S3 write per campaign, not per record), so it answers with
the partial batch response shape directly instead of Powertools' per-record BatchProcessor.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError
from dco.aws.handler_support import optional_tracer
from dco.aws.settings import BUCKET, Settings
from dco.aws.stats_store import StatsConflictError, StatsStore, decode_counters
from dco.fold import stats_updates

tracer, _capture = optional_tracer()  # untraced without aws_xray_sdk


logger = Logger()
metrics = Metrics()
settings = Settings.from_env(os.environ, required=(BUCKET,))
clock: Callable[[], float] = time.time  # tests pin it


def make_store() -> StatsStore:
    """The stats object adapter; tests replace ``STORE`` (or this factory)."""
    return StatsStore(settings.bucket)


STORE = make_store()


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@_capture
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raw_records = event.get("Records") or []
    if raw_records:
        logger.set_correlation_id(str(raw_records[0].get("dynamodb", {}).get("SequenceNumber", "")))
    rows, poison = decode_counters(raw_records)
    for sequence, reason in poison:
        logger.warning("poison record", extra={"sequence": sequence, "reason": reason})
    now = int(clock())
    updates = stats_updates((row for _, row in rows), now=now)
    sequences: dict[str, list[str]] = {}
    for sequence, row in rows:
        sequences.setdefault(row[0], []).append(sequence)

    failed = [seq for seq, _ in poison]
    written = unchanged = conflicts = 0
    for campaign, update in updates.items():
        try:
            result = STORE.publish(campaign, update, now=now)
        except (StatsConflictError, ClientError, ValueError) as exc:
            logger.error("stats not published", extra={"campaign": campaign, "error": str(exc)})
            failed.extend(sequences[campaign])
            continue
        written += result.written
        unchanged += not result.written
        conflicts += result.conflicts

    metrics.add_metric(name="StatsWrites", unit=MetricUnit.Count, value=written)
    metrics.add_metric(name="StatsUnchanged", unit=MetricUnit.Count, value=unchanged)
    metrics.add_metric(name="StatsConflicts", unit=MetricUnit.Count, value=conflicts)
    metrics.add_metric(name="PoisonRecords", unit=MetricUnit.Count, value=len(poison))
    metrics.add_metric(name="FailedCampaigns", unit=MetricUnit.Count, value=len(updates) - written - unchanged)
    logger.info("published", extra={"campaigns": len(updates), "written": written, "conflicts": conflicts})
    ordered = sorted(set(failed), key=lambda s: s.zfill(40))
    response: dict[str, Any] = {"batchItemFailures": [{"itemIdentifier": seq} for seq in ordered]}
    if "window" in event or "state" in event:
        response["state"] = {}
    return response


# The name the SAM template (Handler: app.handler) and the local stack call.
handler = lambda_handler
