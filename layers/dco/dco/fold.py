"""Folding events into counters: the pure half of the fold function.

Data flow (docs/fold.md)::

    Events stream batch ──(handler: TypeDeserializer)──> plain NEW_IMAGE dicts
        ──parse_event──> EventRecord (or PoisonRecordError: reported as a batch item failure)
        ──aggregate──> FoldBatch: per (shard, campaign, counter key) the summed Delta, plus each record's step
        ──dco.aws.counters.CounterStore.apply──> one conditional UpdateItem per distinct counter

Which counters an event increments is :func:`dco.learning.counter_keys`. The kind of an event gives its delta:
an impression adds 1 impression, a click 1 click, a conversion 1 conversion and its value.

Exactly-once needs more than the totals: when a counter turns out to hold part of a batch already (a
redelivery), the adapter asks :meth:`CounterFold.after` for the delta of only the records past the counter's
watermark. So each counter keeps its steps ``(sequence, delta, time bucket)`` in stream order.

Time buckets live in their counter's item: the keys :func:`dco.learning.counter_keys` gives an event with a time
(``comp:...#e<bucket>``, ``arm:...@region=<r>#e<bucket>``) are not counters of their own here but attributes
``e<bucket>i``/``c``/``n``/``v`` of the item of the same key without the suffix, added in the same write
(docs/storage.md). One item per counter instead of two: a batch writes 39 % fewer items. :meth:`FoldBatch.deltas`
and :func:`counter_rows` give them back under their ``#e<bucket>`` keys, so the stats object is unchanged.

Sequence numbers are decimal strings of up to 40 digits (DynamoDB Streams). DynamoDB numbers keep 38
significant digits, so they are compared as zero-padded 40-character strings (:func:`sequence_key`), where
lexicographic order is numeric order.

Pure: no boto3, no environment, no clock. Numbers stay exact (``Decimal`` values, ``int`` counts), so any
split of a batch into partial applications sums to exactly the clean application.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import repeat
from typing import Any, NamedTuple

from dco.errors import DcoError
from dco.learning import (
    BUCKET_SUFFIX,
    DEFAULT_PARAMS,
    arm_counter_keys,
    cell_suffixes,
    counter_keys,
    variant_counter_keys,
)

__all__ = [
    "SEQUENCE_WIDTH",
    "Delta",
    "EventRecord",
    "CounterFold",
    "FoldBatch",
    "PoisonRecordError",
    "aggregate",
    "parse_event",
    "prune_buckets",
    "sequence_key",
    "counter_row",
    "counter_rows",
    "bucket_attribute",
    "bucket_field",
    "bucket_rows",
    "cell_attribute",
    "cell_field",
    "cell_rows",
    "stats_updates",
]

SEQUENCE_WIDTH = 40  # DynamoDB Streams sequence numbers: 21 to 40 decimal digits
_ZERO = Decimal(0)
# The bucket width counter_keys uses when none is passed (fold passes none): its own default. ``now_s`` enters
# counter_keys only as ``now_s // bucket_s``, so records of one decision in one bucket share their keys.
_BUCKET_S = int((counter_keys.__kwdefaults__ or {}).get("bucket_s", DEFAULT_PARAMS.bucket_s))

# The fields of a time bucket kept in its counter's item: attribute ``e<bucket><letter>`` (docs/storage.md).
BUCKET_FIELDS = ("i", "c", "n", "v")  # impressions, clicks, conversions, value
_BUCKET_ATTRIBUTE = re.compile(r"e(\d{1,12})([icnv])")
# A device cell kept in its host counter's item: attribute ``<cell suffix>:<letter>`` (``@device=mobile:c``).
_CELL_ATTRIBUTE = re.compile(r"(@.+):([icnv])")
_UNSET = object()  # no record seen yet
_MAX_RUNS = 16  # bucket changes within a batch before aggregate sums steps per bucket instead

# Event kinds as stored in the Events table (either spelling) -> the counter field they increment.
_KIND_TO_FIELD: dict[str, str] = {
    "imp": "impressions",
    "impression": "impressions",
    "click": "clicks",
    "conv": "conversions",
    "conversion": "conversions",
}


class PoisonRecordError(DcoError, ValueError):
    """A stream record that can never be folded (missing or malformed fields). ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def sequence_key(sequence: str) -> str:
    """The sortable form of a stream sequence number: zero-padded to 40 digits.

    >>> sequence_key("111") < sequence_key("1000")
    True
    """
    if not isinstance(sequence, str) or not sequence.isdigit() or not sequence.isascii():
        raise PoisonRecordError(f"sequence number must be decimal digits, got {sequence!r}")
    if len(sequence) > SEQUENCE_WIDTH:
        raise PoisonRecordError(f"sequence number longer than {SEQUENCE_WIDTH} digits: {sequence!r}")
    return sequence.zfill(SEQUENCE_WIDTH)


@dataclass(frozen=True)
class Delta:
    """What a batch (or one record) adds to one counter."""

    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    value: Decimal = _ZERO

    def __add__(self, other: Delta) -> Delta:
        return Delta(
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            self.conversions + other.conversions,
            self.value + other.value,
        )

    def __bool__(self) -> bool:
        return bool(self.impressions or self.clicks or self.conversions or self.value)


@dataclass(frozen=True)
class EventRecord:
    """One decoded Events item with where it sits in the stream.

    ``sequence`` is the stream's sequence number as delivered (what a batch item failure must name);
    ``shard`` is the stream shard (the lane whose order the counters' watermarks follow); ``created_at`` is
    the record's ApproximateCreationDateTime in unix seconds (0 when unknown); ``ts`` is the event's own time
    (the Events item's ``ts``), which places it in the time-bucketed component counters (None: no buckets).
    """

    campaign: str
    kind: str
    arm: str
    creative: str
    variants: tuple[str, ...] = ()
    context: tuple[tuple[str, str], ...] = ()
    holdout: bool = False
    value: Decimal = _ZERO
    sequence: str = "0"
    shard: str = ""
    created_at: int = 0
    ts: int | None = None
    # sequence_key(sequence), filled by parse_event (which computes it to validate); not an init argument, so
    # a record built or replaced by hand recomputes it from ``sequence``
    seq_key: str = field(default="", init=False, compare=False, repr=False)

    @property
    def sequence_key(self) -> str:
        return self.seq_key or sequence_key(self.sequence)

    def delta(self) -> Delta:
        """The delta this event adds to each of its counters."""
        name = _KIND_TO_FIELD[self.kind]
        if name == "impressions":
            return _IMPRESSION
        if name == "clicks":
            return _CLICK
        return Delta(conversions=1, value=self.value)

    def counter_keys(self) -> list[str]:
        """Every counter key this event increments (:func:`dco.learning.counter_keys`)."""
        return counter_keys(
            arm=self.arm,
            creative=self.creative,
            variants=self.variants,
            context=dict(self.context),
            holdout=self.holdout,
            now_s=self.ts,
        )


_append = list.append
_drain: Any = deque(maxlen=0).extend  # consumes an iterator in C
_FIELD_INDEX = {"impressions": 0, "clicks": 1, "conversions": 2}
_IMPRESSION = Delta(impressions=1)
_CLICK = Delta(clicks=1)


def _text(image: Mapping[str, Any], name: str) -> str:
    value = image.get(name)
    if not isinstance(value, str) or not value:
        raise PoisonRecordError(f"event attribute {name!r} must be a non-empty string, got {value!r}")
    return value


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise PoisonRecordError(f"event value must be a number, got {value!r}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise PoisonRecordError(f"event value must be a number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise PoisonRecordError(f"event value must be a finite non-negative number, got {value!r}")
    return number


def parse_event(
    image: Mapping[str, Any], *, sequence: str, shard: str = "", created_at: int = 0
) -> EventRecord:
    """An :class:`EventRecord` from a deserialized Events NEW_IMAGE (plain dict: str, Decimal, list, dict, bool).

    Raises :class:`PoisonRecordError` naming the first missing or malformed attribute.

    >>> parse_event({"campaign": "c1", "kind": "imp", "arm": "a", "creative": "a"}, sequence="7").counter_keys()
    ['arm:a', 'split:optimized']
    """
    if not isinstance(image, Mapping):
        raise PoisonRecordError("record has no NEW_IMAGE")
    seq_key = sequence_key(sequence)  # validates
    kind = _text(image, "kind")
    if kind not in _KIND_TO_FIELD:
        raise PoisonRecordError(f"event kind {kind!r} is not one of imp, click, conv")
    variants = image.get("variants") or []
    if not isinstance(variants, list | tuple) or not all(isinstance(v, str) and "=" in v for v in variants):
        raise PoisonRecordError(f"event variants must be a list of 'slot=variant' strings, got {variants!r}")
    context = image.get("context") or {}
    if not isinstance(context, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in context.items()
    ):
        raise PoisonRecordError(f"event context must be a map of strings, got {context!r}")
    holdout = image.get("holdout", False)
    if not isinstance(holdout, bool):
        raise PoisonRecordError(f"event holdout must be a boolean, got {holdout!r}")
    value = _decimal(image.get("value", 0) or 0)
    ts = image.get("ts")
    if ts is not None:
        if isinstance(ts, bool) or not isinstance(ts, int | Decimal) or ts < 0 or ts != int(ts):
            raise PoisonRecordError(f"event ts must be whole unix seconds, got {ts!r}")
        ts = int(ts)
    record = EventRecord(
        campaign=_text(image, "campaign"),
        kind=kind,
        arm=_text(image, "arm"),
        creative=_text(image, "creative"),
        variants=tuple(variants),
        context=tuple(sorted(context.items())),
        holdout=holdout,
        value=value if _KIND_TO_FIELD[kind] == "conversions" else _ZERO,
        sequence=sequence,
        shard=shard,
        created_at=int(created_at),
        ts=ts,
    )
    object.__setattr__(record, "seq_key", seq_key)  # frozen
    return record


class Past(NamedTuple):
    """What :meth:`CounterFold.after` returns: the steps past a watermark."""

    delta: Delta
    buckets: dict[int, Delta]  # per time bucket (bucketed counters; empty otherwise)
    last: str  # their highest sequence key
    lowest: str  # their lowest raw sequence number
    cells: dict[str, Delta]  # per device cell kept in this counter's item (empty for most counters)


@dataclass(slots=True)
class CounterFold:
    """The part of a batch that goes to one counter from one shard.

    ``steps`` are ``(sequence key, sequence, delta, time bucket)`` in stream order (ascending sequence keys;
    bucket ``None`` for an event without a time); ``total`` is their sum; ``first``/``last`` are the lowest
    and highest sequence keys. ``bucketed`` counters (those :func:`dco.learning.counter_keys` gives
    ``#e<bucket>`` copies) also sum their steps per time bucket: ``bucket_sums``, set by :func:`aggregate`.

    ``cells`` (per-region combination counters): device cell suffix (:func:`dco.learning.cell_host`) -> its
    steps, a subset of this counter's (the records of the decisions served on that device), in no particular
    order (only their sums and a watermark filter are read); ``cell_sums`` their sums, set by
    :func:`aggregate`. A cell is written as attributes of its host's item, in the host's write and under its
    watermark (docs/storage.md), so :meth:`after` splits both at one watermark.
    """

    shard: str
    campaign: str
    key: str
    steps: list[tuple[str, str, Delta, int | None]] = field(default_factory=list)
    sums: list[Any] = field(default_factory=lambda: [0, 0, 0, _ZERO])  # running total, mutable for speed
    bucketed: bool = False
    bucket_sums: dict[int, list[Any]] | None = None  # None: no time buckets in this batch
    cells: dict[str, list[tuple[str, str, Delta, int | None]]] | None = None
    cell_sums: dict[str, list[Any]] | None = None

    @property
    def total(self) -> Delta:
        """The sum of every step."""
        return Delta(*self.sums)

    @property
    def buckets(self) -> dict[int, Delta]:
        """Time bucket -> the sum of its steps (empty for a counter without time buckets)."""
        return {bucket: Delta(*sums) for bucket, sums in (self.bucket_sums or {}).items()}

    @property
    def cell_totals(self) -> dict[str, Delta]:
        """Device cell suffix -> the sum of its steps (empty for a counter that hosts no cells)."""
        return {suffix: Delta(*sums) for suffix, sums in (self.cell_sums or {}).items()}

    @property
    def pk(self) -> str:
        """The Counters table key: ``<campaign>#<counter key>`` (docs/storage.md)."""
        return f"{self.campaign}#{self.key}"

    @property
    def first(self) -> str:
        return self.steps[0][0]

    @property
    def last(self) -> str:
        return self.steps[-1][0]

    def after(self, watermark: str) -> Past | None:
        """The steps past ``watermark`` (a sequence key) summed (:class:`Past`), or None when there are none.

        Used when the counter already holds a prefix of this batch: only the rest may be added.
        """
        total = Delta()
        buckets: dict[int, Delta] = {}
        lowest: str | None = None
        last = ""
        for key, raw, delta, bucket in self.steps:
            if key > watermark:
                total = total + delta
                if self.bucketed and bucket is not None:
                    buckets[bucket] = buckets.get(bucket, Delta()) + delta
                last = key
                if lowest is None:
                    lowest = raw
        if lowest is None:
            return None
        cells: dict[str, Delta] = {}
        for suffix, steps in (self.cells or {}).items():
            for key, _, delta, _ in steps:
                if key > watermark:
                    cells[suffix] = cells.get(suffix, Delta()) + delta
        return Past(total, buckets, last, lowest, cells)


@dataclass
class FoldBatch:
    """A batch aggregated per counter.

    ``counters`` maps ``(shard, campaign, counter key)`` to its :class:`CounterFold`; ``last_sequence`` maps
    each shard to the highest sequence key of the batch; ``events`` counts the folded records;
    ``created_at`` is the newest record's creation time (unix seconds, 0 when unknown).
    """

    counters: dict[tuple[str, str, str], CounterFold] = field(default_factory=dict)
    last_sequence: dict[str, str] = field(default_factory=dict)
    events: int = 0
    created_at: int = 0

    def deltas(self) -> dict[tuple[str, str], Delta]:
        """Totals per ``(campaign, counter key)``, all shards together (what one clean application adds), time
        buckets under their :func:`dco.learning.counter_keys` keys (``<key>#e<bucket>``)."""
        out: dict[tuple[str, str], Delta] = {}
        for fold in self.counters.values():
            key = (fold.campaign, fold.key)
            out[key] = out.get(key, Delta()) + fold.total
            for bucket, delta in fold.buckets.items():
                key = (fold.campaign, f"{fold.key}{BUCKET_SUFFIX}{bucket}")
                out[key] = out.get(key, Delta()) + delta
            for suffix, delta in fold.cell_totals.items():
                key = (fold.campaign, fold.key + suffix)
                out[key] = out.get(key, Delta()) + delta
        return out


def aggregate(records: Iterable[EventRecord]) -> FoldBatch:
    """Sum a batch's events per counter (and per shard), and per time bucket for the bucketed counters.

    Records of one shard must come in stream order (as Lambda delivers them); a record whose sequence number
    is not above the previous one of its shard raises ``ValueError`` (the handler never builds such a batch).
    Writes then grow with distinct counters, not events. Counters come out in the order they are first met.

    >>> r = [parse_event({"campaign": "c", "kind": k, "arm": "a", "creative": "a"}, sequence=s, shard="s1")
    ...      for k, s in (("imp", "1"), ("imp", "2"), ("click", "3"))]
    >>> batch = aggregate(r)
    >>> batch.deltas()[("c", "arm:a")]
    Delta(impressions=2, clicks=1, conversions=0, value=Decimal('0'))

    How it stays fast (docs/performance.md, "fold"): records of one decision (same shard, campaign, arm,
    creative, variants, context and holdout) have the same counters, so the batch resolves them once per
    distinct decision, and a decision's counters come in segments (:func:`decision_segments`: its arm's, then
    one per variant) that many decisions share: a variant's segment is resolved to step lists once per batch.
    Per record that leaves one lookup and one append per counter; the counts come from the step lists' lengths
    at the end, with a second pass over the few clicks and conversions. Time buckets cost nothing per record:
    events come in time order, so a batch changes bucket at most at midnight, and each change notes the step
    lists' lengths (a counter's impressions per bucket are then differences of lengths); only a batch whose
    event times flap between buckets more than ``_MAX_RUNS`` times sums its bucketed counters' steps.
    """
    batch = FoldBatch()
    last = batch.last_sequence
    # Per (shard, campaign): counter key -> its steps in stream order, and a variant segment -> its step lists.
    # ``born`` lists every counter as it is first met (the order of batch.counters, which CounterStore.apply
    # walks).
    scopes: dict[tuple[str, str], tuple[dict[str, list[Any]], dict[int, list[Any]]]] = {}
    born: list[CounterFold] = []
    # a decision (shard, campaign, arm, creative, variants, context, holdout) -> its counter key segments and
    # the step lists of their keys, resolved at its first record
    resolved: dict[tuple[Any, ...], tuple[tuple[Segment, ...], list[Any]]] = {}
    others: list[tuple[str, str, tuple[Segment, ...], int, Decimal]] = []  # clicks and conversions
    # device cells: (shard, campaign, host key, suffix, the steps of one decision), one per decision and cell
    cell_parts: list[tuple[str, str, str, str, list[Any]]] = []
    events = 0
    created_at = 0
    # Time buckets in runs: records in stream order change bucket rarely (at midnight), so at each change the
    # length of every counter's step list is noted; a counter's steps of one run are then a slice of its list,
    # and its count per bucket a difference of lengths. Events whose times flap between buckets fall back to
    # summing the steps (``runs`` None).
    runs: list[tuple[Any, list[int]]] | None = []
    bucket: Any = _UNSET
    # The current shard and its last sequence key, in locals (a Lambda batch holds one shard).
    shard: str | None = None
    previous: str | None = None
    for record in records:
        seq_key = record.seq_key
        if not seq_key:  # a hand-built record: parse_event fills it
            seq_key = sequence_key(record.sequence)
        if record.shard != shard:
            if shard is not None and previous is not None:
                last[shard] = previous
            shard = record.shard
            previous = last.get(shard)
        if previous is not None and seq_key <= previous:
            raise ValueError(f"records of shard {shard!r} out of order at sequence {record.sequence}")
        previous = seq_key
        kind = record.kind
        delta = _IMPRESSION if kind == "imp" or kind == "impression" else record.delta()
        ts = record.ts
        b = None if ts is None else int(ts) // _BUCKET_S
        if b != bucket:
            if runs is not None and bucket is not _UNSET:
                if len(runs) < _MAX_RUNS:
                    runs.append((bucket, [len(fold.steps) for fold in born]))
                else:
                    runs = None
            bucket = b
        context = record.context
        if type(context) is not tuple:  # a hand-built record with a dict or list context
            context = tuple(dict(context).items())
        decision = (
            shard, record.campaign, record.arm, record.creative, tuple(record.variants), context, record.holdout,
        )
        found = resolved.get(decision)
        if found is None:
            campaign = record.campaign
            scope = scopes.get((shard, campaign))
            if scope is None:
                scope = scopes[(shard, campaign)] = ({}, {})
            segments = decision_segments(*decision[2:])
            lists = _step_lists(segments[0], scope[0], born, shard, campaign)
            for host, suffix in segments[0].cells:  # a cell's steps: the decision's own list, merged at the end
                mine: list[Any] = []
                lists.append(mine)
                cell_parts.append((shard, campaign, host, suffix, mine))
            shared = scope[1]
            for segment in segments[1:]:
                # by identity: segments are memoized objects, and ``resolved`` keeps each one alive for the batch
                part = shared.get(id(segment))
                if part is None:
                    part = shared[id(segment)] = _step_lists(segment, scope[0], born, shard, campaign)
                lists += part
            found = resolved[decision] = (segments, lists)
        # one append per counter, looped in C (a Python loop here was a sixth of the time)
        _drain(map(_append, found[1], repeat((seq_key, record.sequence, delta, bucket))))
        if delta is not _IMPRESSION:
            others.append(
                (shard, record.campaign, found[0], _FIELD_INDEX[_KIND_TO_FIELD[kind]], delta.value, bucket)
            )
        events += 1
        if record.created_at > created_at:
            created_at = record.created_at
    if shard is not None and previous is not None:
        last[shard] = previous
    counters = batch.counters
    if runs == [] and bucket is not None:  # the usual batch: one time bucket, its counts are the totals
        for fold in born:
            fold.sums[0] = count = len(fold.steps)
            counters[(fold.shard, fold.campaign, fold.key)] = fold
            if fold.bucketed:
                fold.bucket_sums = {bucket: [count, 0, 0, _ZERO]}
    else:
        for index, fold in enumerate(born):
            fold.sums[0] = len(fold.steps)
            counters[(fold.shard, fold.campaign, fold.key)] = fold
            if fold.bucketed and runs:
                fold.bucket_sums = _run_counts(runs, index, bucket, len(fold.steps))
    for shard, campaign, segments, index, value, at in others:
        for segment in segments:
            for key, bucketed in zip(segment.keys, segment.bucketed, strict=True):
                fold = counters[(shard, campaign, key)]
                sums = fold.sums
                sums[0] -= 1  # counted as an impression above
                sums[index] += 1
                if value:
                    sums[3] += value
                if bucketed and at is not None and runs is not None:
                    sums = fold.bucket_sums[at]  # type: ignore[index]
                    sums[0] -= 1
                    sums[index] += 1
                    if value:
                        sums[3] += value
    if runs is None:
        for fold in born:
            if fold.bucketed:
                fold.bucket_sums = _sum_by_bucket(fold.steps)
    if cell_parts:
        _merge_cells(counters, cell_parts)
    batch.events += events
    if created_at > batch.created_at:
        batch.created_at = created_at
    return batch


def _merge_cells(
    counters: dict[tuple[str, str, str], CounterFold], parts: list[tuple[str, str, str, str, list[Any]]]
) -> None:
    """Hand each decision's device-cell steps to its host counter (``cells``), and sum them (``cell_sums``)."""
    hosts = []
    for shard, campaign, host, suffix, steps in parts:
        fold = counters[(shard, campaign, host)]
        cells = fold.cells
        if cells is None:
            fold.cells = {suffix: steps}
            hosts.append(fold)
        else:
            found = cells.get(suffix)
            if found is None:
                cells[suffix] = steps
            else:
                found += steps
    impression = _IMPRESSION
    for fold in hosts:
        fold.cell_sums = out = {}
        for suffix, steps in fold.cells.items():  # type: ignore[union-attr]
            sums = out[suffix] = [len(steps), 0, 0, _ZERO]
            for _, _, delta, _ in steps:
                if delta is not impression:
                    sums[0] += delta.impressions - 1
                    sums[1] += delta.clicks
                    sums[2] += delta.conversions
                    sums[3] += delta.value


def _run_counts(runs: list[tuple[Any, list[int]]], index: int, bucket: Any, length: int) -> dict[int, list[Any]]:
    """Steps per time bucket of counter ``index`` of the batch (in ``born`` order), from the step-list lengths
    noted at the end of each run and ``length`` at the end of the last run (in ``bucket``), all counted as
    impressions (the clicks and conversions are moved afterwards)."""
    out: dict[int, list[Any]] = {}
    done = 0
    for at, lengths in (*runs, (bucket, None)):
        end = length if lengths is None else lengths[index] if index < len(lengths) else 0
        if end > done and at is not None:
            sums = out.get(at)
            if sums is None:
                out[at] = [end - done, 0, 0, _ZERO]
            else:
                sums[0] += end - done
        done = max(done, end)
    return out


def _sum_by_bucket(steps: list[tuple[str, str, Delta, int | None]]) -> dict[int, list[Any]]:
    """Time bucket -> ``[impressions, clicks, conversions, value]`` of the steps (those without a time left out)."""
    out: dict[int, list[Any]] = {}
    for _, _, delta, bucket in steps:
        if bucket is None:
            continue
        sums = out.get(bucket)
        if sums is None:
            sums = out[bucket] = [0, 0, 0, _ZERO]
        sums[0] += delta.impressions
        sums[1] += delta.clicks
        sums[2] += delta.conversions
        sums[3] += delta.value
    return out


class Segment(NamedTuple):
    """Counter keys that go together (a decision's arm counters, or one variant's component counters), which
    of them have time buckets (:func:`dco.learning.counter_keys` gives them ``#e<bucket>`` copies), and the
    device cells kept in their items: ``(host key, cell suffix)`` (:func:`dco.learning.cell_host`; the cell's
    own key, host key + suffix, is not in ``keys``)."""

    keys: tuple[str, ...]
    bucketed: tuple[bool, ...]
    cells: tuple[tuple[str, str], ...]


def _step_lists(
    segment: Segment, steps_of: dict[str, list[Any]], born: list[CounterFold], shard: str, campaign: str
) -> list[Any]:
    """Each key's step list in this batch, creating (and recording in ``born``) the counters met first."""
    keys = segment.keys
    lists: list[Any] = list(map(steps_of.get, keys))
    if None in lists:  # counters met for the first time, in key order
        for index, steps in enumerate(lists):
            if steps is None:
                key = keys[index]
                steps = steps_of.get(key)  # the same key earlier in this decision made it
                if steps is None:
                    steps = steps_of[key] = []
                    born.append(CounterFold(shard, campaign, key, steps, [0, 0, 0, _ZERO], segment.bucketed[index]))
                lists[index] = steps
    return lists


# Counter key segments per decision and per variant, kept across batches: a warm fold function sees the same
# decisions and variants again and again, and building ~12 key strings per decision was a third of its time.
# Bounded: each map is emptied when it reaches KEY_MEMO_SIZE entries (docs/performance.md, "fold").
KEY_MEMO_SIZE = 1 << 16
_decision_segments: dict[tuple[Any, ...], tuple[Segment, ...]] = {}
_variant_segments: dict[tuple[Any, ...], Segment] = {}


def clear_key_memo() -> None:
    """Forget the memoized counter keys (benchmarks call it to measure a cold fold)."""
    _decision_segments.clear()
    _variant_segments.clear()


def _flags(fixed: int, count: int) -> tuple[bool, ...]:
    """``fixed`` keys without time buckets, then ``count - fixed`` with (shared tuples)."""
    flags = _FLAGS.get((fixed, count))
    if flags is None:
        flags = _FLAGS[(fixed, count)] = (False,) * fixed + (True,) * (count - fixed)
    return flags


_FLAGS: dict[tuple[int, int], tuple[bool, ...]] = {}


def _arm_segment(arm: str, creative: str, dims: tuple[tuple[str, str], ...], holdout: bool) -> Segment:
    """:func:`dco.learning.arm_counter_keys` as a :class:`Segment`: its first keys (arm, creative, split) have no
    time buckets, the per-region combination counters after them do, and the device cells that follow each of
    those are not keys of their own but ``(host, suffix)`` (they live in the host's item). test_fold_parts pins
    this to counter_keys."""
    keys = tuple(arm_counter_keys(arm, creative, dims, holdout, None, with_cells=False))
    fixed = 3 if arm != creative else 2
    cells: tuple[tuple[str, str], ...] = ()
    if len(keys) > fixed:  # steered: each per-region key hosts the decision's cells
        suffixes = cell_suffixes(dims)
        if suffixes:
            cells = tuple([(key, suffix) for key in keys[fixed:] for suffix in suffixes])
    return tuple.__new__(Segment, (keys, _flags(fixed, len(keys)), cells))  # no Python __new__


def _variant_segment(creative: str, item: str, dims: tuple[tuple[str, str], ...]) -> Segment:
    """:func:`dco.learning.variant_counter_keys` as a :class:`Segment`: every component key has time buckets."""
    keys = tuple(variant_counter_keys(creative, item, dims, None))
    return tuple.__new__(Segment, (keys, _flags(0, len(keys)), ()))


def decision_segments(
    arm: str,
    creative: str,
    variants: tuple[str, ...],
    context: tuple[tuple[str, str], ...],
    holdout: bool,
) -> tuple[Segment, ...]:
    """The counters of one decision, in segments: :func:`dco.learning.arm_counter_keys`, then
    :func:`dco.learning.variant_counter_keys` per variant (one :class:`Segment` object per distinct variant and
    context, shared by the decisions that served it). Chained, their keys, each followed by the device cells
    it hosts, are exactly :func:`dco.learning.counter_keys` without a time (same keys, same order); a key
    flagged ``bucketed`` is one that counter_keys with a time follows by its ``#e<bucket>`` copy (before its
    cells). Memoized. ``context`` is the
    event's ``(dimension, value)`` pairs.

    >>> decision_segments("cr|h1", "cr", ("headline=h1",), (("region", "pnw"),), False)
    ... # doctest: +NORMALIZE_WHITESPACE
    (Segment(keys=('arm:cr|h1', 'arm:cr', 'split:optimized', 'arm:cr|h1@region=pnw'),
             bucketed=(False, False, False, True), cells=()),
     Segment(keys=('comp:cr|headline=h1', 'comp:cr|headline=h1@region=pnw'), bucketed=(True, True), cells=()))
    """
    memo_key = (arm, creative, variants, context, holdout)
    segments = _decision_segments.get(memo_key)
    if segments is not None:
        return segments
    dims = tuple(sorted(context))  # counter_keys' order (a hand-built record may not sort its context)
    built = [_arm_segment(arm, creative, dims, holdout)]
    if not holdout:
        for item in variants:
            part_key = (creative, item, dims)
            part = _variant_segments.get(part_key)
            if part is None:
                part = _variant_segment(creative, item, dims)
                if len(_variant_segments) >= KEY_MEMO_SIZE:
                    _variant_segments.clear()
                _variant_segments[part_key] = part
            built.append(part)
    segments = tuple(built)
    if len(_decision_segments) >= KEY_MEMO_SIZE:
        _decision_segments.clear()
    _decision_segments[memo_key] = segments
    return segments


# ------------------------------------------------------------------------------------- counters -> stats rows

# Counter key prefix -> section of the stats object (dco.stats); other prefixes are not published.
_PREFIX_TO_SECTION: dict[str, str] = {"arm:": "arms", "comp:": "components", "split:": "splits"}


def _count(image: Mapping[str, Any], name: str) -> int:
    value = image.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise PoisonRecordError(f"counter attribute {name!r} must be a number, got {value!r}")
    if value < 0 or value != int(value):
        raise PoisonRecordError(f"counter attribute {name!r} must be a whole non-negative count, got {value!r}")
    return int(value)


def _amount(image: Mapping[str, Any], name: str) -> Decimal:
    """A counter's conversion value attribute (absent: 0); :class:`PoisonRecordError` names it when malformed."""
    try:
        return _decimal(image.get(name, 0) or 0)
    except PoisonRecordError:
        raise PoisonRecordError(
            f"counter attribute {name!r} must be a finite non-negative number, got {image.get(name)!r}"
        ) from None


def counter_row(image: Mapping[str, Any]) -> tuple[str, str, str, list[Any]] | None:
    """``(campaign, section, key, [impressions, clicks, conversions, value])`` of a Counters item image (its
    all-time counts; :func:`counter_rows` adds its time buckets).

    ``None`` for counters the stats object does not carry; :class:`PoisonRecordError` for a malformed item.

    >>> counter_row({"pk": "c1#arm:a", "impressions": Decimal(3), "clicks": Decimal(1)})
    ('c1', 'arms', 'a', [3, 1, 0, 0.0])
    """
    pk = image.get("pk")
    if not isinstance(pk, str) or "#" not in pk:
        raise PoisonRecordError(f"counter pk must be '<campaign>#<counter key>', got {pk!r}")
    campaign, _, key = pk.partition("#")
    if not campaign or not key:
        raise PoisonRecordError(f"counter pk must be '<campaign>#<counter key>', got {pk!r}")
    for prefix, section in _PREFIX_TO_SECTION.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            row = [_count(image, "impressions"), _count(image, "clicks"), _count(image, "conversions")]
            return campaign, section, key[len(prefix):], [*row, float(_amount(image, "value"))]
    return None


def counter_rows(image: Mapping[str, Any]) -> list[tuple[str, str, str, list[Any]]]:
    """Every stats row a Counters item image carries: :func:`counter_row`, then one ``<key>#e<bucket>`` row per
    time bucket kept in the item (:func:`bucket_rows`), oldest bucket first, then one ``<key>@<dim>=<value>``
    row per device cell kept in it (:func:`cell_rows`). Empty for counters the stats object does not carry;
    :class:`PoisonRecordError` for a malformed item.

    >>> counter_rows({"pk": "c1#comp:cr|h=1", "impressions": 5, "e20001i": 3, "e20001c": 1, "e20002i": 2})
    ... # doctest: +NORMALIZE_WHITESPACE
    [('c1', 'components', 'cr|h=1', [5, 0, 0, 0.0]), ('c1', 'components', 'cr|h=1#e20001', [3, 1, 0, 0.0]),
     ('c1', 'components', 'cr|h=1#e20002', [2, 0, 0, 0.0])]
    """
    row = counter_row(image)
    if row is None:
        return []
    campaign, section, key, counts = row
    out = [row]
    for bucket, sums in sorted(bucket_rows(image).items()):
        out.append((campaign, section, f"{key}{BUCKET_SUFFIX}{bucket}", [*sums[:3], float(sums[3])]))
    for suffix, sums in sorted(cell_rows(image).items()):
        out.append((campaign, section, key + suffix, [*sums[:3], float(sums[3])]))
    return out


def cell_attribute(suffix: str, index: int) -> str:
    """The item attribute of field ``index`` (0 impressions, 1 clicks, 2 conversions, 3 value) of a device cell
    kept in its host's item (``suffix`` as :func:`dco.learning.cell_host` gives it).

    >>> cell_attribute("@device=mobile", 1)
    '@device=mobile:c'
    """
    return f"{suffix}:{BUCKET_FIELDS[index]}"


def cell_field(name: str) -> tuple[str, int] | None:
    """``(cell suffix, field index)`` of a device-cell attribute name (:func:`cell_attribute`), None for any other.

    >>> cell_field("@device=mobile:c"), cell_field("clicks"), cell_field("@device=mobile")
    (('@device=mobile', 1), None, None)
    """
    if name[:1] != "@":
        return None
    match = _CELL_ATTRIBUTE.fullmatch(name)
    return None if match is None else (match.group(1), BUCKET_FIELDS.index(match.group(2)))


def cell_rows(image: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Device cell suffix -> ``[impressions, clicks, conversions, value]`` (value a ``Decimal``) from a Counters
    item's ``<suffix>:<i|c|n|v>`` attributes (a field not stored is 0). :class:`PoisonRecordError` names a
    malformed one.

    >>> cell_rows({"pk": "c#arm:a@region=pnw", "impressions": 9, "@device=mobile:i": 4, "@device=mobile:c": 1})
    {'@device=mobile': [4, 1, 0, Decimal('0')]}
    """
    return _sub_rows(image, cell_field)


def bucket_attribute(bucket: int, index: int) -> str:
    """The item attribute of field ``index`` (0 impressions, 1 clicks, 2 conversions, 3 value) of a time bucket.

    >>> bucket_attribute(20001, 1)
    'e20001c'
    """
    return f"e{bucket}{BUCKET_FIELDS[index]}"


def bucket_rows(image: Mapping[str, Any]) -> dict[int, list[Any]]:
    """Time bucket -> ``[impressions, clicks, conversions, value]`` (value a ``Decimal``) from a Counters item's
    ``e<bucket><i|c|n|v>`` attributes (a field not stored is 0). :class:`PoisonRecordError` names a malformed
    one.

    >>> bucket_rows({"pk": "c#comp:x", "impressions": 9, "e7i": Decimal(4), "e7n": 1, "e7v": Decimal("2.5")})
    {7: [4, 0, 1, Decimal('2.5')]}
    """
    return _sub_rows(image, bucket_field)


def _sub_rows(image: Mapping[str, Any], parse: Any) -> dict[Any, list[Any]]:
    """Sub-counter -> ``[impressions, clicks, conversions, value]`` from the attributes ``parse`` names
    (``(sub-counter, field index)`` or None): :func:`bucket_rows`, :func:`cell_rows`."""
    out: dict[Any, list[Any]] = {}
    for name in image:
        found = parse(name)
        if found is None:
            continue
        sub, index = found
        sums = out.get(sub)
        if sums is None:
            sums = out[sub] = [0, 0, 0, _ZERO]
        sums[index] = _amount(image, name) if index == 3 else _count(image, name)
    return out


def bucket_field(name: str) -> tuple[int, int] | None:
    """``(bucket, field index)`` of a time-bucket attribute name (:func:`bucket_attribute`), None for any other.

    >>> bucket_field("e20001c"), bucket_field("impressions"), bucket_field("e12")
    ((20001, 1), None, None)
    """
    if name[:1] != "e":
        return None
    match = _BUCKET_ATTRIBUTE.fullmatch(name)
    return None if match is None else (int(match.group(1)), BUCKET_FIELDS.index(match.group(2)))


def stats_updates(rows: Iterable[tuple[str, str, str, list[Any]]], *, now: int) -> dict[str, dict[str, Any]]:
    """Per campaign, a stats object (dco.stats shape) holding the given absolute rows, maxed per key.

    Counts only grow, so the maximum of several images of one counter is its newest state; the result merges
    into the published object with :func:`dco.stats.merge_max`.
    """
    out: dict[str, dict[str, Any]] = {}
    for campaign, section, key, row in rows:
        obj = out.get(campaign)
        if obj is None:
            obj = out[campaign] = {
                "version": 1, "campaign": campaign, "updated_at": int(now),
                "arms": {}, "components": {}, "splits": {},
            }
        seen = obj[section].get(key)
        obj[section][key] = row if seen is None else [max(a, b) for a, b in zip(seen, row, strict=True)]
    return out


def prune_buckets(obj: dict[str, Any], keep: int = DEFAULT_PARAMS.buckets) -> dict[str, Any]:
    """Drop time-bucketed rows (``...#e<bucket>``, components and combinations) older than the newest ``keep``
    buckets of their section.

    The newest bucket is the highest one in the section, so pruning after every :func:`dco.stats.merge_max`
    keeps the merge order-free and idempotent (a bucket once out of the window stays out). The combinations'
    short memory reads fewer buckets than ``keep`` (``LearningParams.arm_buckets``). Returns ``obj``.
    """
    for section in ("components", "arms"):
        rows = obj.get(section) or {}
        buckets: dict[str, int] = {}
        for key in rows:
            head, sep, tail = key.rpartition(BUCKET_SUFFIX)
            # combination rows are bucketed per context value only (``<arm>@region=<r>#e<b>``)
            if sep and head and tail.isdigit() and (section == "components" or "@" in head):
                buckets[key] = int(tail)
        if buckets:
            newest = max(buckets.values())
            for key, bucket in buckets.items():
                if bucket <= newest - keep:
                    del rows[key]
    return obj
