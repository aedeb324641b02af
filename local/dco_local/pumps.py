"""Pumps: what Lambda's event sources do, done by the local stack over moto.

Two kinds, both driven by the template's event definitions (:mod:`dco_local.template`):

    S3 PutObject ──moto──> SQS queue (the bucket's notification configuration, one per template S3 event)
        ──NotificationPump.poll()──> S3 event records shaped like Lambda's ──> ingest

    DynamoDB write ──moto stream──> StreamPump.poll() per stream mapping
        describe_stream -> shards -> GetShardIterator (TRIM_HORIZON, then AFTER_SEQUENCE_NUMBER of a checkpoint)
        -> GetRecords (BatchSize) -> FilterCriteria -> {"Records": [...]} ──> fold / publish_stats

Lambda's stream semantics are kept where the functions rely on them: batches of one shard are delivered in
order, one at a time; a partial batch response (``batchItemFailures``) checkpoints before the lowest failed
sequence number and redelivers from there; a function error retries the whole batch (halved when
``BisectBatchOnFunctionError``); after ``MaximumRetryAttempts`` retries the failed range goes to the on-failure
destination (an SQS message like Lambda's ``DDBStreamBatchInfo``, also kept in :attr:`StreamPump.failures`) and
the shard moves on. Records filtered out by ``FilterCriteria`` count as processed.

Each poll delivers at most one batch per shard, so the stack's pump rounds alternate between the streams (fold
and publish_stats both progress under steady traffic). A batching window (``MaximumBatchingWindowInSeconds``,
:attr:`StreamPump.batching_window`) is honoured by polls with ``flush=False`` (the stack's background pumps):
records accumulate until the batch is full (``BatchSize``) or the oldest pending record has waited the window.
``flush=True`` (the default, :meth:`LocalStack.pump`) delivers what is there at once. Not emulated:
``MaximumRecordAgeInSeconds``, parallelization (one shard at a time), and asynchronous-invoke retries of ingest
are immediate (three attempts, like Lambda's default of two retries).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from dco_local.template import S3Notification, StreamMapping, matches_filter

log = logging.getLogger("dco_local.pumps")

Invoke = Callable[[str, dict[str, Any]], Any]  # (function logical id, event) -> response
ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: the first try and two retries


@dataclass
class PumpStats:
    """What one or more pump rounds delivered."""

    notifications: int = 0  # S3 event records delivered to a function
    stream_records: int = 0  # stream records delivered (a redelivered record counts again)
    invocations: int = 0
    retries: int = 0  # deliveries that repeat records after a failure
    failures: int = 0  # records (or notifications) given up on: sent to the on-failure destination
    passes: int = 0
    waiting: int = 0  # stream records held back by a batching window (not delivered yet)

    @property
    def delivered(self) -> int:
        return self.notifications + self.stream_records

    def add(self, other: PumpStats) -> PumpStats:
        for name in ("notifications", "stream_records", "invocations", "retries", "failures", "passes", "waiting"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


# ------------------------------------------------------------------------------------------ S3 notifications


class NotificationPump:
    """Delivers the S3 notifications moto put in an SQS queue to the functions the template names."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        notifications: dict[str, S3Notification],  # notification configuration id -> its template event
        invoke: Invoke,
        *,
        region: str,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.notifications = notifications
        self.invoke = invoke
        self.region = region
        self.failures: list[dict[str, Any]] = []
        self._sequencer = 0

    def poll(self) -> PumpStats:
        stats = PumpStats()
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                AttributeNames=["ApproximateReceiveCount"],
            )
            messages = answer.get("Messages") or []
            if not messages:
                return stats
            for message in messages:
                self._deliver(message, stats)

    def _deliver(self, message: dict[str, Any], stats: PumpStats) -> None:
        receipt = message["ReceiptHandle"]
        try:
            body = json.loads(message.get("Body") or "{}")
        except ValueError:
            body = {}
        records = body.get("Records") if isinstance(body, dict) else None
        if not records:  # s3:TestEvent (S3 sends one when the configuration is set) or garbage
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
            return
        attempts = int((message.get("Attributes") or {}).get("ApproximateReceiveCount", "1"))
        ok = True
        for raw in records:
            notification = self.notifications.get(str(raw.get("s3", {}).get("configurationId", "")))
            if notification is None:
                log.warning("S3 notification for an unknown configuration: %s", raw.get("s3", {}))
                continue
            record = self._lambda_record(raw)
            stats.notifications += 1
            stats.invocations += 1
            stats.retries += attempts > 1
            try:
                self.invoke(notification.function, {"Records": [record]})
            except Exception as exc:  # noqa: BLE001 - a function error, as Lambda sees it
                ok = False
                log.error("%s failed on s3://%s/%s (attempt %d): %s", notification.function,
                          record["s3"]["bucket"]["name"], record["s3"]["object"]["key"], attempts, exc)
        if ok or attempts >= ASYNC_ATTEMPTS:
            if not ok:
                stats.failures += 1
                self.failures.append(body)
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
        else:  # retry on the next poll
            self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0)

    def _next_sequencer(self) -> str:
        self._sequencer = max(self._sequencer + 1, time.time_ns())
        return f"{self._sequencer:X}"

    def _lambda_record(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The record as Lambda delivers it: moto's record completed (sequencer, identities) and its key
        re-encoded the way S3 encodes keys (``quote_plus`` keeping ``/``)."""
        s3 = raw.get("s3", {})
        bucket = s3.get("bucket", {}).get("name", "")
        obj = s3.get("object", {})
        key = unquote_plus(str(obj.get("key", "")))
        out_object: dict[str, Any] = {
            "key": quote_plus(key, safe="/"),
            "size": obj.get("size", 0),
            "eTag": obj.get("eTag", ""),
            "sequencer": obj.get("sequencer") or self._next_sequencer(),
        }
        if obj.get("versionId"):
            out_object["versionId"] = obj["versionId"]
        return {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": raw.get("awsRegion") or self.region,
            "eventTime": raw.get("eventTime") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "eventName": raw.get("eventName", "ObjectCreated:Put"),
            "userIdentity": {"principalId": "AWS:LOCALSTACKUSER"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), "x-amz-id-2": "local"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": s3.get("configurationId", ""),
                "bucket": {"name": bucket, "ownerIdentity": {"principalId": "LOCAL"}, "arn": f"arn:aws:s3:::{bucket}"},
                "object": out_object,
            },
        }


# ------------------------------------------------------------------------------------------ DynamoDB streams


@dataclass
class _Shard:
    shard_id: str
    checkpoint: str | None = None  # sequence number of the last record handled; None = start of the shard
    attempts: int = 0  # failed deliveries of the current batch
    limit: int = 0  # current batch size (halved by bisect-on-error)
    iterator: str | None = None  # positioned right after ``checkpoint`` (saves a GetShardIterator per poll)
    pending: list[dict[str, Any]] = field(default_factory=list)  # read, not yet delivered (batching window)
    pending_since: float = 0.0  # monotonic time the oldest pending record was read


@dataclass
class StreamPump:
    """One DynamoDB event source mapping: a table's stream -> a function, Lambda's way."""

    streams: Any  # dynamodbstreams client
    stream_arn: str
    mapping: StreamMapping
    invoke: Invoke
    region: str
    sqs: Any = None  # for the on-failure destination
    failure_queue_url: str | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)  # on-failure records, newest last
    shard_refresh_seconds: float = 5.0  # DescribeStream at most this often
    batching_window: float = 0.0  # seconds records may wait for a fuller batch (polls with flush=False)
    _shards: dict[str, _Shard] = field(default_factory=dict)
    _described_at: float = -1e9

    def poll(self, *, flush: bool = True) -> PumpStats:
        """Deliver at most one batch per shard (failed batches are retried on the next poll).

        With ``flush=False`` a batch smaller than ``BatchSize`` waits until its oldest record has waited
        :attr:`batching_window` seconds (Lambda's batching window); ``flush=True`` delivers what is there."""
        stats = PumpStats()
        if time.monotonic() - self._described_at >= self.shard_refresh_seconds or not self._shards:
            self._refresh_shards()
        for shard in list(self._shards.values()):
            self._deliver_one(shard, stats, flush=flush)
        return stats

    def skip_existing(self) -> None:
        """Start every current shard after its last record (restored items are history, not new events)."""
        self._refresh_shards()
        for shard in self._shards.values():
            last = self._last_sequence(shard.shard_id)
            if last is not None:
                shard.checkpoint = last

    def _refresh_shards(self) -> None:
        self._described_at = time.monotonic()
        description = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for item in description.get("Shards", []):
            shard_id = item["ShardId"]
            if shard_id not in self._shards:
                shard = _Shard(shard_id=shard_id, limit=self.mapping.batch_size)
                if self.mapping.starting_position == "LATEST":
                    shard.checkpoint = self._last_sequence(shard_id)
                self._shards[shard_id] = shard

    def _last_sequence(self, shard_id: str) -> str | None:
        last, after = None, None
        while True:
            records = self._read(shard_id, after, limit=1000)
            if not records:
                return last
            last = after = records[-1]["dynamodb"]["SequenceNumber"]

    def _read(self, shard_id: str, after: str | None, *, limit: int,
              shard: _Shard | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` records of a shard, from its start or after a sequence number (through the shard's
        kept iterator when it has one; the iterator after the read is kept in ``shard.iterator``)."""
        if shard is not None and shard.iterator is not None:
            try:
                return self._pages(shard.iterator, limit, shard)
            except Exception:  # noqa: BLE001 - an expired or unknown iterator: ask for a fresh one
                shard.iterator = None
        if after is None:
            iterator = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        else:
            iterator = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                SequenceNumber=after)["ShardIterator"]
        return self._pages(iterator, limit, shard)

    def _pages(self, iterator: str | None, limit: int, shard: _Shard | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while iterator and len(out) < limit:
            asked = min(1000, limit - len(out))
            page = self.streams.get_records(ShardIterator=iterator, Limit=asked)
            records = page.get("Records") or []
            out.extend(records)
            iterator = page.get("NextShardIterator")
            if len(records) < asked:
                break
        if shard is not None:
            shard.iterator = iterator
        return out

    def _deliver_one(self, shard: _Shard, stats: PumpStats, *, flush: bool = True) -> bool:
        """Deliver one batch of ``shard``; True when something was handled and more may follow."""
        limit = max(1, shard.limit)
        if len(shard.pending) < limit:
            more = self._read(shard.shard_id, shard.pending[-1]["dynamodb"]["SequenceNumber"] if shard.pending
                              else shard.checkpoint, limit=limit - len(shard.pending), shard=shard)
            if more and not shard.pending:
                shard.pending_since = time.monotonic()
            shard.pending.extend(more)
        if not shard.pending:
            return False
        if (not flush and len(shard.pending) < limit
                and time.monotonic() - shard.pending_since < self.batching_window):
            stats.waiting += len(shard.pending)
            return False  # the batching window is still open
        raw, shard.pending = shard.pending[:limit], shard.pending[limit:]
        shard.pending_since = time.monotonic()
        records = [self._lambda_record(r) for r in raw]
        batch = [r for r in records if all(matches_filter(f, r) for f in self.mapping.filters)] \
            if self.mapping.filters else records
        if not batch:  # everything filtered out: processed, as far as the mapping is concerned
            shard.checkpoint = records[-1]["dynamodb"]["SequenceNumber"]
            return True
        stats.invocations += 1
        stats.stream_records += len(batch)
        stats.retries += shard.attempts > 0
        sequences = [r["dynamodb"]["SequenceNumber"] for r in batch]
        failed_from: str | None
        try:
            response = self.invoke(self.mapping.function, {"Records": batch})
        except Exception as exc:  # noqa: BLE001 - a function error: the whole batch failed
            log.error("%s failed on a batch of %d records from %s: %s",
                      self.mapping.function, len(batch), shard.shard_id, exc)
            failed_from = sequences[0]
            if self.mapping.bisect_on_error and len(batch) > 1:
                shard.limit = max(1, len(raw) // 2)
        else:
            failed_from = self._lowest_failure(response, sequences)
        if failed_from is None:
            shard.checkpoint = records[-1]["dynamodb"]["SequenceNumber"]
            shard.attempts = 0
            shard.limit = self.mapping.batch_size
            return True
        shard.iterator = None  # redelivery starts from the checkpoint, not after what was read
        shard.pending = []
        index = sequences.index(failed_from)
        # Records before the lowest failure are done; redelivery starts at the lowest failure.
        position = next(i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] == failed_from)
        if position > 0:
            shard.checkpoint = records[position - 1]["dynamodb"]["SequenceNumber"]
        shard.attempts += 1
        retries = self.mapping.maximum_retry_attempts
        if retries >= 0 and shard.attempts > retries:
            self._give_up(shard, batch[index:], stats)
            shard.checkpoint = records[-1]["dynamodb"]["SequenceNumber"]
            shard.attempts = 0
            shard.limit = self.mapping.batch_size
            return True
        return False  # retried on the next poll, like Lambda's backoff

    def _lowest_failure(self, response: Any, sequences: list[str]) -> str | None:
        if not self.mapping.report_batch_item_failures or not isinstance(response, dict):
            return None
        items = response.get("batchItemFailures")
        if not items:
            return None
        failed = []
        for item in items:
            identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not identifier or identifier not in sequences:
                return sequences[0]  # Lambda: an invalid identifier fails the whole batch
            failed.append(identifier)
        return min(failed, key=lambda s: int(s))

    def _give_up(self, shard: _Shard, records: list[dict[str, Any]], stats: PumpStats) -> None:
        stats.failures += len(records)
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        info = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"arn:aws:lambda:{self.region}:123456789012:function:{self.mapping.function}",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": shard.attempts,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": None},
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(first.get("ApproximateCreationDateTime")),
                "approximateArrivalOfLastRecord": _iso(last.get("ApproximateCreationDateTime")),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
        self.failures.append(info)
        log.error("%s: %d records of %s (%s..%s) sent to the on-failure destination after %d attempts",
                  self.mapping.function, len(records), shard.shard_id, first["SequenceNumber"],
                  last["SequenceNumber"], shard.attempts)
        if self.sqs is not None and self.failure_queue_url:
            self.sqs.send_message(QueueUrl=self.failure_queue_url, MessageBody=json.dumps(info))

    def _lambda_record(self, raw: dict[str, Any]) -> dict[str, Any]:
        stream = dict(raw.get("dynamodb") or {})
        moment = stream.get("ApproximateCreationDateTime")
        if isinstance(moment, datetime):
            stream["ApproximateCreationDateTime"] = int(moment.timestamp())
        return {
            "eventID": raw.get("eventID") or uuid.uuid4().hex,
            "eventName": raw.get("eventName"),
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": raw.get("awsRegion") or self.region,
            "dynamodb": stream,
            "eventSourceARN": self.stream_arn,
        }


def _iso(epoch: Any) -> str | None:
    if isinstance(epoch, int | float):
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return None
