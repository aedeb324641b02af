"""The S3 stats object adapter: ``stats/<campaign>.msgpack`` (docs/storage.md), merged by maximum.

publish-stats turns the Counters stream's NEW_IMAGEs into per-campaign absolute rows (:func:`decode_counters`,
:func:`dco.fold.stats_updates`) and :meth:`StatsStore.publish` folds them into the object::

    GetObject (note the ETag; absent -> empty)
    -> dco.stats.merge_max(existing, update)          idempotent, commutative, associative
    -> dco.learning.contract.prune_epochs              only the newest KEEP_EPOCHS epochs of ...#d<e> rows
    -> unchanged counts? stop (no write: decide's conditional GETs keep their ETag)
    -> dco.learning.publish.refresh                     the learner's models refitted (warm from the existing ones)
    -> PutObject IfMatch=<etag>  (IfNoneMatch="*" when absent)
    -> 412 PreconditionFailed / 409 ConditionalRequestConflict: another writer won; re-read and merge again

Because the merge is by maximum of absolute, monotone counts, replays and any order of batches give the same
counts (the models refitted from them carry the history of the writes: warm starts, memory weights); the
conditional write makes concurrent writers never lose each other's counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgpack
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config
from botocore.exceptions import ClientError

from dco.errors import DcoError
from dco.fold import PoisonRecordError, counter_rows
from dco.learning.contract import COUNTER_SECTIONS, KEEP_EPOCHS, prune_epochs
from dco.learning.model import KeyParser
from dco.learning.params import DEFAULT_PARAMS, LearningParams
from dco.learning.publish import refresh
from dco.stats import merge_max, validate_stats

__all__ = ["StatsStore", "PublishResult", "StatsConflictError", "decode_counters", "default_client", "stats_key"]

logger = logging.getLogger(__name__)
_deserializer = TypeDeserializer()
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class StatsConflictError(DcoError):
    """The stats object kept changing between read and conditional write; gave up after bounded retries."""


def default_client(region_name: str | None = None) -> Any:
    """An S3 client with botocore's standard retry mode."""
    import boto3

    return boto3.client("s3", region_name=region_name, config=Config(retries={"mode": "standard", "max_attempts": 3}))


def stats_key(campaign: str) -> str:
    """``stats/<campaign>.msgpack``."""
    return f"stats/{campaign}.msgpack"


def decode_counters(
    raw_records: Iterable[Mapping[str, Any]],
) -> tuple[list[tuple[str, tuple[str, str, str, list[Any]]]], list[tuple[str, str]]]:
    """Decode a Counters stream event into ``([(sequence, row)], poison)``.

    The rows are :func:`dco.fold.counter_rows` of each NEW_IMAGE (its all-time counts, one row per epoch of sums
    it keeps); counters the stats object does not carry are dropped; ``poison`` lists
    ``(sequence number, reason)`` of malformed records.
    """
    rows: list[tuple[str, tuple[str, str, str, list[Any]]]] = []
    poison: list[tuple[str, str]] = []
    for raw in raw_records:
        stream = raw.get("dynamodb") if isinstance(raw, Mapping) else None
        sequence = stream.get("SequenceNumber", "") if isinstance(stream, Mapping) else ""
        try:
            typed = stream.get("NewImage") if isinstance(stream, Mapping) else None
            if not isinstance(typed, Mapping):
                raise PoisonRecordError("record has no NewImage")
            try:
                image = {name: _deserializer.deserialize(value) for name, value in typed.items()}
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                raise PoisonRecordError(f"NewImage cannot be decoded: {exc}") from None
            found = counter_rows(image)
        except PoisonRecordError as exc:
            poison.append((str(sequence), exc.reason))
            continue
        rows.extend((str(sequence), row) for row in found)
    return rows, poison


@dataclass(frozen=True)
class PublishResult:
    """``written``: a new object version was stored; ``attempts``: PutObject calls; ``conflicts``: 412/409s."""

    campaign: str
    written: bool
    attempts: int
    conflicts: int


def _plain(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    return obj


class StatsStore:
    """Reads and conditionally writes per-campaign stats objects. ``client`` is a boto3 S3 client."""

    def __init__(
        self,
        bucket: str,
        client: Any | None = None,
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
        params: LearningParams = DEFAULT_PARAMS,
    ) -> None:
        if not bucket:
            raise ValueError("StatsStore needs a bucket")
        self.bucket = bucket
        self.client = client if client is not None else default_client()
        self.max_attempts = max(1, int(max_attempts))
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep
        self.params = params
        self.parser = KeyParser()  # contexts keys parsed once per warm container (dco.learning.model)

    def load(self, campaign: str) -> tuple[dict[str, Any] | None, str | None]:
        """``(stats object, ETag)``, or ``(None, None)`` when the campaign has none yet.

        A stored object that does not decode or validate raises ``ValueError`` (never silently replaced).
        """
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=stats_key(campaign))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return None, None
            raise
        body = response["Body"].read()
        try:
            obj = msgpack.unpackb(body, raw=False, strict_map_key=True)
        except (ValueError, msgpack.UnpackException) as exc:
            raise ValueError(f"{stats_key(campaign)} is not msgpack: {exc}") from None
        return validate_stats(obj), response["ETag"]

    def publish(self, campaign: str, update: Mapping[str, Any], *, now: int) -> PublishResult:
        """Merge ``update`` (a stats object of absolute counts) into the campaign's object; retry on conflict.

        ``now`` (unix seconds, the Lambda's clock) becomes ``updated_at`` when the counts change. Raises
        :class:`StatsConflictError` after ``max_attempts`` lost races.
        """
        update = {**update, "campaign": campaign, "updated_at": int(now)}
        conflicts = 0
        attempts = 0
        for attempt in range(self.max_attempts):
            existing, etag = self.load(campaign)
            merged = prune_epochs(merge_max(existing if existing is not None else update, update), KEEP_EPOCHS)
            if existing is not None and all(
                merged.get(section, {}) == existing.get(section, {}) for section in COUNTER_SECTIONS
            ):
                return PublishResult(campaign, False, attempts, conflicts)
            refresh(merged, existing, now, params=self.params, parser=self.parser)
            body = msgpack.packb(merged, use_bin_type=True, default=_plain)
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            attempts += 1
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=stats_key(campaign),
                    Body=body,
                    ContentType="application/x-msgpack",
                    CacheControl="no-cache",
                    **condition,
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _CONFLICT_CODES:
                    raise
                conflicts += 1
                logger.info("stats %s changed under us (attempt %d); re-reading", campaign, attempt + 1)
                self.sleep(self.backoff_seconds * (2**attempt))
                continue
            return PublishResult(campaign, True, attempts, conflicts)
        raise StatsConflictError(f"{stats_key(campaign)}: {conflicts} conditional writes lost in a row")
