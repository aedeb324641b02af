"""fold: the Events table stream -> the Counters table, exactly once in effect (docs/fold.md).

One invocation = one batch of one shard: decode (poison records set aside), aggregate per counter
(dco.fold.aggregate), apply with one conditional UpdateItem per distinct counter (dco.aws.counters), answer
with a partial batch response naming the poison records and the first record of every counter not applied.

Why not Powertools' BatchProcessor: it calls a handler once per record, while fold must see the whole batch to
aggregate it (writes grow with distinct counters, not events) and must decide failures per counter. So the
handler builds the same response shape itself: ``{"batchItemFailures": [{"itemIdentifier": <sequence>}]}``
(plus ``"state": {}`` when the mapping uses a tumbling window, which Lambda then requires; the window's
``shardId`` names the stream shard that the counters' watermarks follow).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from dco.aws.counters import CounterStore, decode_stream, shard_of
from dco.aws.handler_support import optional_tracer
from dco.aws.settings import COUNTERS_TABLE, Settings
from dco.fold import aggregate

tracer, _capture = optional_tracer()  # untraced without aws_xray_sdk


logger = Logger()
metrics = Metrics()
settings = Settings.from_env(os.environ, required=(COUNTERS_TABLE,))


def make_store() -> CounterStore:
    """The Counters adapter; tests replace ``STORE`` (or this factory) with one on moto or a fault injector."""
    return CounterStore(settings.counters_table)


STORE = make_store()


def _sequence_order(sequence: str) -> str:
    return sequence.zfill(40)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@_capture
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raw_records = event.get("Records") or []
    shard = shard_of(event)
    if raw_records:
        first = raw_records[0].get("dynamodb", {}).get("SequenceNumber", "")
        logger.set_correlation_id(f"{shard}:{first}")
    records, poison = decode_stream(raw_records, shard)
    for sequence, reason in poison:
        logger.warning("poison record", extra={"sequence": sequence, "reason": reason})
    batch = aggregate(records)
    result = STORE.apply(batch)

    metrics.add_metric(name="FoldedEvents", unit=MetricUnit.Count, value=batch.events)
    metrics.add_metric(name="PoisonRecords", unit=MetricUnit.Count, value=len(poison))
    metrics.add_metric(name="CounterWrites", unit=MetricUnit.Count, value=result.writes)
    metrics.add_metric(name="ConditionalSkips", unit=MetricUnit.Count, value=result.skipped)
    metrics.add_metric(name="FailedCounters", unit=MetricUnit.Count, value=result.failed)
    logger.info(
        "folded",
        extra={
            "shard": shard, "events": batch.events, "counters": result.counters, "writes": result.writes,
            "applied": result.applied, "skipped": result.skipped, "failed": result.failed,
            "throttled": result.throttled, "pruned": result.pruned, "expired": result.expired, "poison": len(poison),
        },
    )
    failed = sorted({seq for seq, _ in poison} | set(result.failed_sequences), key=_sequence_order)
    response: dict[str, Any] = {"batchItemFailures": [{"itemIdentifier": seq} for seq in failed]}
    if "window" in event or "state" in event:
        response["state"] = {}
    return response


# The name the SAM template (Handler: app.handler) and the local stack call.
handler = lambda_handler
