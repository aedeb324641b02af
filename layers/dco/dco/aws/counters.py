"""The Counters table adapter: applies a :class:`dco.fold.FoldBatch` exactly once in effect.

One item per counter (``pk`` = ``<campaign>#<counter key>``, docs/storage.md) holding ``impressions``,
``clicks``, ``conversions``, ``value``, the discounted sums of the learner's counters per epoch (``d<epoch>i``,
``d<epoch>c``, ``d<epoch>n``: :func:`dco.learning.contract.decay_attribute`; only the newest ``KEEP_EPOCHS`` are
kept) and, per stream shard, a watermark ``seq_<shard>`` = the highest sequence
number of that shard already added to this item, stored as ``"<40-digit zero-padded sequence>@<unix seconds>"``
(a string: sequence numbers have up to 40 digits, DynamoDB numbers only 38 significant ones; zero padding makes
string order numeric order; the time lets stale watermarks of closed shards be pruned). The watermark covers the
item's discounted sums too: they are added in the same write.

Per counter of a batch (docs/fold.md has the proof sketch):

1. ``UpdateItem ADD <batch delta> SET seq_<shard> = <last>`` if ``attribute_not_exists(seq_<shard>) OR
   seq_<shard> < <first>``: the counter holds none of this batch's records. One write per distinct counter,
   no read: the common case.
2. When the condition fails the item comes back with the error (``ReturnValuesOnConditionCheckFailure``), so
   the watermark ``W`` is known without a read: nothing past ``W`` -> a conditional skip; else
   ``ADD <delta of the steps past W> SET seq_<shard> = <last>`` if ``seq_<shard> = W`` (compare-and-set; on a
   conflict the returned item gives the new ``W`` and the step repeats, bounded).

Throttling is retried with exponential backoff (botocore's standard retries below, this loop above); a counter
that still fails is reported through :attr:`ApplyResult.failed_sequences` (its first sequence number), so the
handler names it in ``batchItemFailures`` and Lambda redelivers from there. Any other exception propagates
(the whole batch is retried; the watermarks make that harmless).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from threading import Lock
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config
from botocore.exceptions import ClientError

from dco.fold import (
    CounterFold,
    Delta,
    EventRecord,
    FoldBatch,
    PoisonRecordError,
    parse_event,
)
from dco.learning.contract import DECAY_FIELDS, KEEP_EPOCHS, decay_attribute, decay_field

__all__ = ["ApplyResult", "CounterStore", "decode_stream", "default_client", "shard_of", "WATERMARK_PREFIX"]

logger = logging.getLogger(__name__)

WATERMARK_PREFIX = "seq_"
# A watermark whose last record is this much older than the batch belongs to a shard that can never deliver
# again (streams keep records 24 hours; the mapping drops records after MaximumRecordAgeInSeconds): pruned.
PRUNE_AFTER_SECONDS = 48 * 3600
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
_FALLBACK_LANE = "stream"
_deserializer = TypeDeserializer()


def default_client(region_name: str | None = None) -> Any:
    """A DynamoDB client with botocore's standard retry mode (throttling backoff under our own loop)."""
    import boto3

    config = Config(retries={"mode": "standard", "max_attempts": 3})
    return boto3.client("dynamodb", region_name=region_name, config=config)


def shard_of(event: Mapping[str, Any]) -> str:
    """The stream shard of a Lambda stream event: its ``shardId``.

    Lambda puts ``shardId`` in DynamoDB stream events when the mapping has a tumbling window
    (``TumblingWindowInSeconds``); plain events do not carry it. Without it every batch maps to one lane
    (``"stream"``), which is exact only while one shard at a time is processed (docs/fold.md).
    """
    shard = event.get("shardId")
    return shard if isinstance(shard, str) and shard else _FALLBACK_LANE


def decode_stream(
    raw_records: Iterable[Mapping[str, Any]], shard: str
) -> tuple[list[EventRecord], list[tuple[str, str]]]:
    """Decode the records of a DynamoDB stream event into ``(records, poison)``.

    ``poison`` lists ``(sequence number, reason)`` of records that can never be folded (no NEW_IMAGE, missing
    or malformed attributes): the handler reports them as batch item failures, the rest goes on.
    """
    records: list[EventRecord] = []
    poison: list[tuple[str, str]] = []
    for raw in raw_records:
        stream = raw.get("dynamodb") if isinstance(raw, Mapping) else None
        sequence = stream.get("SequenceNumber", "") if isinstance(stream, Mapping) else ""
        sequence = sequence if isinstance(sequence, str) else str(sequence)
        try:
            if not isinstance(stream, Mapping):
                raise PoisonRecordError("record has no dynamodb section")
            typed = stream.get("NewImage")
            if not isinstance(typed, Mapping):
                raise PoisonRecordError("record has no NewImage")
            try:
                image = {name: _deserializer.deserialize(value) for name, value in typed.items()}
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                raise PoisonRecordError(f"NewImage cannot be decoded: {exc}") from None
            created = stream.get("ApproximateCreationDateTime", 0)
            created_at = int(created) if isinstance(created, int | float | Decimal) else 0
            records.append(parse_event(image, sequence=sequence, shard=shard, created_at=created_at))
        except PoisonRecordError as exc:
            poison.append((sequence, exc.reason))
    return records, poison


@dataclass
class ApplyResult:
    """What applying a batch did.

    ``writes`` counts every UpdateItem request sent (a clean first application: one per distinct counter);
    ``applied`` counters changed; ``skipped`` counters already held all their records (conditional skips);
    ``conflicts`` compare-and-set retries; ``throttled`` throttled requests retried; ``pruned`` stale
    watermarks removed; ``expired`` epochs of discounted sums removed (older than the newest ``KEEP_EPOCHS`` of
    their item); ``failed_sequences`` the first sequence number (as delivered) of each counter that
    could not be applied, to report as batch item failures.
    """

    counters: int = 0
    writes: int = 0
    applied: int = 0
    skipped: int = 0
    conflicts: int = 0
    throttled: int = 0
    pruned: int = 0
    expired: int = 0
    failed_sequences: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failed_sequences)


class _Failed(Exception):
    """A counter could not be applied after retries (throttling or an error DynamoDB returned)."""


def _watermark_value(seq_key: str, created_at: int) -> str:
    return f"{seq_key}@{created_at}"


def _watermark_seq(value: str) -> str:
    return value.partition("@")[0]


def _watermark_time(value: str) -> int | None:
    _, sep, tail = value.partition("@")
    return int(tail) if sep and tail.isdigit() else None


class CounterStore:
    """Applies folded batches to the Counters table. ``client`` is a boto3 DynamoDB client (built if absent).

    ``max_workers`` counters are written concurrently (distinct items never conflict); ``max_attempts`` bounds
    the throttling retries and the compare-and-set rounds of one counter; ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        table_name: str,
        client: Any | None = None,
        *,
        max_workers: int = 16,
        max_attempts: int = 6,
        backoff_seconds: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not table_name:
            raise ValueError("CounterStore needs a table name")
        self.table_name = table_name
        self.client = client if client is not None else default_client()
        self.max_workers = max(1, int(max_workers))
        self.max_attempts = max(1, int(max_attempts))
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep

    # ------------------------------------------------------------------------------------------- public

    def apply(self, batch: FoldBatch) -> ApplyResult:
        """Apply every counter of ``batch``; see the module docstring for the protocol."""
        result = ApplyResult(counters=len(batch.counters))
        lock = Lock()
        folds = list(batch.counters.values())

        def one(fold: CounterFold) -> None:
            stats = ApplyResult()
            try:
                self._apply_one(fold, batch.created_at, stats)
            except _Failed:
                stats.failed_sequences.append(fold.steps[0][1])
            with lock:
                result.writes += stats.writes
                result.applied += stats.applied
                result.skipped += stats.skipped
                result.conflicts += stats.conflicts
                result.throttled += stats.throttled
                result.pruned += stats.pruned
                result.expired += stats.expired
                result.failed_sequences.extend(stats.failed_sequences)

        if self.max_workers == 1 or len(folds) <= 1:
            for fold in folds:
                one(fold)
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(folds))) as pool:
                for future in [pool.submit(one, fold) for fold in folds]:
                    future.result()  # re-raises anything but _Failed: the whole batch is retried
        result.failed_sequences.sort(key=lambda s: s.zfill(40))
        return result

    def read(self, campaign: str, key: str) -> dict[str, Any] | None:
        """The plain attributes of one counter item (tests, tools); ``None`` when absent."""
        response = self.client.get_item(
            TableName=self.table_name, Key={"pk": {"S": f"{campaign}#{key}"}}, ConsistentRead=True
        )
        item = response.get("Item")
        return None if item is None else {k: _deserializer.deserialize(v) for k, v in item.items()}

    # ------------------------------------------------------------------------------------------- internals

    def _apply_one(self, fold: CounterFold, created_at: int, stats: ApplyResult) -> None:
        name = WATERMARK_PREFIX + fold.shard
        # Round 1: the counter holds none of this batch's records.
        old = self._update(
            fold,
            fold.total,
            fold.decayed,
            _watermark_value(fold.last, created_at),
            "attribute_not_exists(#w) OR #w < :first",
            {":first": {"S": fold.first}},
            name,
            created_at,
            stats,
        )
        # Compare-and-set rounds: add only the steps past the counter's watermark.
        for _ in range(self.max_attempts):
            if old is _APPLIED:
                stats.applied += 1
                return
            current = old.get(name, {}).get("S") if isinstance(old, dict) else None
            past = fold.after(_watermark_seq(current) if current else "")
            if past is None:
                stats.skipped += 1
                return
            delta, decayed, last, _lowest = past
            if current is None:
                condition, values = "attribute_not_exists(#w)", {}
            else:
                condition, values = "#w = :old", {":old": {"S": current}}
            stats.conflicts += 1
            old = self._update(
                fold, delta, decayed, _watermark_value(last, created_at), condition, values, name, created_at, stats,
            )
        if old is _APPLIED:
            stats.applied += 1
            return
        raise _Failed(f"{fold.pk}: compare-and-set did not settle")

    def _update(
        self,
        fold: CounterFold,
        delta: Delta,
        decayed: Mapping[int, Delta],
        watermark: str,
        condition: str,
        values: dict[str, Any],
        name: str,
        created_at: int,
        stats: ApplyResult,
    ) -> Any:
        """One conditional UpdateItem with throttling retries: ``_APPLIED`` or the item that failed the condition.

        Adds ``delta`` to the all-time counts and each of ``decayed`` to its epoch's discounted-sum attributes (the
        fields that are not zero), in the same write as the watermark."""
        adds = "ADD #i :i, #c :c, #v :v, #x :x"
        names = {"#i": "impressions", "#c": "clicks", "#v": "conversions", "#x": "value", "#w": name}
        numbers = {
            ":i": {"N": str(delta.impressions)},
            ":c": {"N": str(delta.clicks)},
            ":v": {"N": str(delta.conversions)},
            ":x": {"N": str(delta.value)},
        }
        # the discounted sums kept in the item, per epoch (numbered placeholders)
        for number, (epoch, part) in enumerate(decayed.items()):
            for index, amount in enumerate((part.impressions, part.clicks, part.conversions)):
                if amount:
                    placeholder = f"s{number}{DECAY_FIELDS[index]}"
                    adds += f", #{placeholder} :{placeholder}"
                    names[f"#{placeholder}"] = decay_attribute(epoch, index)
                    numbers[f":{placeholder}"] = {"N": str(amount)}
        request = {
            "TableName": self.table_name,
            "Key": {"pk": {"S": fold.pk}},
            "UpdateExpression": f"{adds} SET #w = :w",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {**numbers, ":w": {"S": watermark}, **values},
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        for attempt in range(self.max_attempts):
            stats.writes += 1
            try:
                response = self.client.update_item(**request)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = error.get("Code", "")
                if code == "ConditionalCheckFailedException":
                    return exc.response.get("Item") or {}
                if code in THROTTLING_CODES and attempt + 1 < self.max_attempts:
                    stats.throttled += 1
                    self.sleep(self.backoff_seconds * (2**attempt))
                    continue
                logger.warning("counter %s not applied: %s", fold.pk, code or exc)
                raise _Failed(code) from exc
            self._prune(fold.pk, response.get("Attributes") or {}, name, created_at, stats)
            return _APPLIED
        raise _Failed("throttled")  # pragma: no cover - the loop returns or raises

    def _prune(
        self, pk: str, item: Mapping[str, Any], current: str, created_at: int, stats: ApplyResult
    ) -> None:
        """Remove watermarks of shards whose last record is over 48 h older than this batch, and discounted sums
        older than the item's newest ``KEEP_EPOCHS`` epochs (best effort, one write, only when there are some:
        about once an epoch per counter for the sums)."""
        stale = []
        if created_at > 0:
            for attr, value in item.items():
                if attr.startswith(WATERMARK_PREFIX) and attr != current and "S" in value:
                    seen = _watermark_time(value["S"])
                    if seen is not None and seen + PRUNE_AFTER_SECONDS < created_at:
                        stale.append((attr, value["S"]))
        expired = _expired_epochs(item)
        if not stale and not expired:
            return
        names = {f"#p{i}": attr for i, (attr, _) in enumerate(stale)}
        names.update({f"#b{i}": attr for i, attr in enumerate(expired)})
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"pk": {"S": pk}},
            "UpdateExpression": "REMOVE " + ", ".join(names),
            "ExpressionAttributeNames": names,
        }
        if stale:  # only watermarks that did not move since (a shard that came back keeps its watermark)
            request["ConditionExpression"] = " AND ".join(f"#p{i} = :p{i}" for i in range(len(stale)))
            request["ExpressionAttributeValues"] = {f":p{i}": {"S": value} for i, (_, value) in enumerate(stale)}
        stats.writes += 1
        try:
            self.client.update_item(**request)
            stats.pruned += len(stale)
            stats.expired += len({attr[:-1] for attr in expired})
        except ClientError as exc:  # a later update prunes them; never fails the batch
            logger.info("pruning %s skipped: %s", pk, exc.response.get("Error", {}).get("Code"))


def _expired_epochs(item: Mapping[str, Any]) -> list[str]:
    """The discounted-sum attributes of a (typed) item older than its newest ``KEEP_EPOCHS`` epochs."""
    epochs = [(found[0], attr) for attr in item if (found := decay_field(attr)) is not None]
    if not epochs:
        return []
    newest = max(epoch for epoch, _ in epochs)
    return sorted(attr for epoch, attr in epochs if epoch <= newest - KEEP_EPOCHS)


_APPLIED = object()
