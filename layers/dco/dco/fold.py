"""Folding events into counters: the pure half of the fold function.

Data flow (docs/fold.md)::

    Events stream batch ──(handler: TypeDeserializer)──> plain NEW_IMAGE dicts
        ──parse_event──> EventRecord (or PoisonRecordError: reported as a batch item failure)
        ──aggregate──> FoldBatch: per (shard, campaign, counter key) the summed Delta, plus each record's step
        ──dco.aws.counters.CounterStore.apply──> one conditional UpdateItem per distinct counter

Which counters an event increments is :func:`dco.learning.contract.counter_keys`. The kind of an event gives its
delta: an impression adds 1 impression, a click 1 click, a conversion 1 conversion and its value.

Exactly-once needs more than the totals: when a counter turns out to hold part of a batch already (a
redelivery), the adapter asks :meth:`CounterFold.after` for the delta of only the records past the counter's
watermark. So each counter keeps its steps ``(sequence, delta, stamp)`` in stream order.

Discounted sums live in their counter's item: the learner's counter (``ctx:...``) also sums each event's integer
weight per epoch (:func:`dco.learning.contract.decay_stamp` of the event's ``ts``), as attributes
``d<epoch>i``/``c``/``n`` of its item, added in the same write (docs/storage.md). :meth:`FoldBatch.deltas` and
:func:`counter_rows` give them back under ``<key>#d<epoch>`` keys, the rows of the stats object.

Sequence numbers are decimal strings of up to 40 digits (DynamoDB Streams). DynamoDB numbers keep 38
significant digits, so they are compared as zero-padded 40-character strings (:func:`sequence_key`), where
lexicographic order is numeric order.

Pure: no boto3, no environment, no clock. Numbers stay exact (``Decimal`` values, ``int`` counts), so any
split of a batch into partial applications sums to exactly the clean application.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import repeat
from typing import Any, NamedTuple

from dco.errors import DcoError
from dco.learning.contract import (
    DECAY_SUFFIX,
    PREFIX_TO_SECTION,
    STATS_VERSION,
    counter_keys,
    decay_field,
    decay_stamp,
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
    "sequence_key",
    "counter_row",
    "counter_rows",
    "decay_rows",
    "stats_updates",
]

SEQUENCE_WIDTH = 40  # DynamoDB Streams sequence numbers: 21 to 40 decimal digits
_ZERO = Decimal(0)

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
    (the Events item's ``ts``), which weighs it in the learner's discounted sums (None: not in them).
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
        """Every counter key this event increments (:func:`dco.learning.contract.counter_keys`)."""
        return counter_keys(
            arm=self.arm, creative=self.creative, variants=self.variants, context=self.context, holdout=self.holdout
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
    decayed: dict[int, Delta]  # per epoch, the discounted sums (discounted counters; empty otherwise)
    last: str  # their highest sequence key
    lowest: str  # their lowest raw sequence number


@dataclass(slots=True)
class CounterFold:
    """The part of a batch that goes to one counter from one shard.

    ``steps`` are ``(sequence key, sequence, delta, stamp)`` in stream order (ascending sequence keys; ``stamp``
    the event's ``(epoch, weight)``, :func:`dco.learning.contract.decay_stamp`, None for an event without a time);
    ``total`` is their sum; ``first``/``last`` are the lowest and highest sequence keys. ``discounted`` counters (the
    learner's ``ctx:`` counters) also sum their steps' weights per epoch: ``decay_sums`` (``[impressions, clicks,
    conversions]``), set by :func:`aggregate`; they are written as attributes of the counter's item, in its write
    and under its watermark (docs/storage.md), so :meth:`after` splits both at one watermark.
    """

    shard: str
    campaign: str
    key: str
    steps: list[tuple[str, str, Delta, tuple[int, int] | None]] = field(default_factory=list)
    sums: list[Any] = field(default_factory=lambda: [0, 0, 0, _ZERO])  # running total, mutable for speed
    discounted: bool = False
    decay_sums: dict[int, list[int]] | None = None  # None: no discounted sums in this batch

    @property
    def total(self) -> Delta:
        """The sum of every step."""
        return Delta(*self.sums)

    @property
    def decayed(self) -> dict[int, Delta]:
        """Epoch -> the discounted sums of its steps (empty for a counter without them)."""
        return {epoch: Delta(i, c, n) for epoch, (i, c, n) in (self.decay_sums or {}).items()}

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
        lowest: str | None = None
        last = ""
        past = []
        for step in self.steps:
            key = step[0]
            if key > watermark:
                total = total + step[2]
                past.append(step)
                last = key
                if lowest is None:
                    lowest = step[1]
        if lowest is None:
            return None
        decayed = {e: Delta(i, c, n) for e, (i, c, n) in _decay_sums(past).items()} if self.discounted else {}
        return Past(total, decayed, last, lowest)


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
        """Totals per ``(campaign, counter key)``, all shards together (what one clean application adds), the
        discounted sums under ``<key>#d<epoch>`` keys (the stats object's rows)."""
        out: dict[tuple[str, str], Delta] = {}
        for fold in self.counters.values():
            key = (fold.campaign, fold.key)
            out[key] = out.get(key, Delta()) + fold.total
            for epoch, delta in fold.decayed.items():
                key = (fold.campaign, f"{fold.key}{DECAY_SUFFIX}{epoch}")
                out[key] = out.get(key, Delta()) + delta
        return out


def aggregate(records: Iterable[EventRecord]) -> FoldBatch:
    """Sum a batch's events per counter (and per shard), and the discounted sums of the learner's counters.

    Records of one shard must come in stream order (as Lambda delivers them); a record whose sequence number
    is not above the previous one of its shard raises ``ValueError`` (the handler never builds such a batch).
    Writes then grow with distinct counters, not events. Counters come out in the order they are first met.

    >>> r = [parse_event({"campaign": "c", "kind": k, "arm": "a", "creative": "a"}, sequence=s, shard="s1")
    ...      for k, s in (("imp", "1"), ("imp", "2"), ("click", "3"))]
    >>> batch = aggregate(r)
    >>> batch.deltas()[("c", "arm:a")]
    Delta(impressions=2, clicks=1, conversions=0, value=Decimal('0'))

    How it stays fast (docs/performance.md, "fold"): records of one decision (same shard, campaign, arm,
    creative, variants, context and holdout) have the same counters (:func:`decision_segment`), so the batch
    resolves them to step lists once per distinct decision.
    Per record that leaves one lookup and one append per counter; the counts come from the step lists' lengths
    at the end, with a second pass over the few clicks and conversions. The discounted sums take one pass over the
    steps of the ``ctx:`` counters (one per steered event); a stamp is computed once per distinct event time.
    """
    batch = FoldBatch()
    last = batch.last_sequence
    # Per (shard, campaign): counter key -> its steps in stream order. ``born`` lists every counter as it is first
    # met (the order of batch.counters, which CounterStore.apply walks).
    scopes: dict[tuple[str, str], dict[str, list[Any]]] = {}
    born: list[CounterFold] = []
    # a decision (shard, campaign, arm, creative, variants, context, holdout) -> its counter keys and their step
    # lists, resolved at its first record
    resolved: dict[tuple[Any, ...], tuple[Segment, list[Any]]] = {}
    others: list[tuple[str, str, Segment, int, Decimal]] = []  # clicks and conversions
    events = 0
    created_at = 0
    stamps: dict[int, tuple[int, int]] = {}  # event time -> decay_stamp
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
        stamp = None
        if ts is not None:
            stamp = stamps.get(ts)
            if stamp is None:
                stamp = stamps[ts] = decay_stamp(ts)
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
                scope = scopes[(shard, campaign)] = {}
            segment = decision_segment(*decision[2:])
            found = resolved[decision] = (segment, _step_lists(segment, scope, born, shard, campaign))
        # one append per counter, looped in C (a Python loop here was a sixth of the time)
        _drain(map(_append, found[1], repeat((seq_key, record.sequence, delta, stamp))))
        if delta is not _IMPRESSION:
            others.append((shard, record.campaign, found[0], _FIELD_INDEX[_KIND_TO_FIELD[kind]], delta.value))
        events += 1
        if record.created_at > created_at:
            created_at = record.created_at
    if shard is not None and previous is not None:
        last[shard] = previous
    counters = batch.counters
    for fold in born:
        fold.sums[0] = len(fold.steps)
        counters[(fold.shard, fold.campaign, fold.key)] = fold
        if fold.discounted:
            fold.decay_sums = _decay_sums(fold.steps)
    for shard, campaign, segment, index, value in others:
        for key in segment.keys:
            sums = counters[(shard, campaign, key)].sums
            sums[0] -= 1  # counted as an impression above
            sums[index] += 1
            if value:
                sums[3] += value
    batch.events += events
    if created_at > batch.created_at:
        batch.created_at = created_at
    return batch


def _decay_sums(steps: list[tuple[str, str, Delta, tuple[int, int] | None]]) -> dict[int, list[int]]:
    """Epoch -> the summed weights ``[impressions, clicks, conversions]`` of the steps (steps without a time are
    left out)."""
    out: dict[int, list[int]] = {}
    impression = _IMPRESSION
    for _, _, delta, stamp in steps:
        if stamp is None:
            continue
        epoch, weight = stamp
        sums = out.get(epoch)
        if sums is None:
            sums = out[epoch] = [0, 0, 0]
        if delta is impression:
            sums[0] += weight
        else:
            sums[0] += delta.impressions * weight
            sums[1] += delta.clicks * weight
            sums[2] += delta.conversions * weight
    return out


class Segment(NamedTuple):
    """The counter keys of one decision and which of them keep discounted sums (the learner's ``ctx:`` counter)."""

    keys: tuple[str, ...]
    discounted: tuple[bool, ...]


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
                    born.append(CounterFold(shard, campaign, key, steps, [0, 0, 0, _ZERO], segment.discounted[index]))
                lists[index] = steps
    return lists


# Counter keys per decision, kept across batches: a warm fold function sees the same decisions again and again.
# Bounded: emptied when it reaches KEY_MEMO_SIZE entries (docs/performance.md, "fold").
KEY_MEMO_SIZE = 1 << 16
_decision_segments: dict[tuple[Any, ...], Segment] = {}


def clear_key_memo() -> None:
    """Forget the memoized counter keys (benchmarks call it to measure a cold fold)."""
    _decision_segments.clear()


def decision_segment(
    arm: str,
    creative: str,
    variants: tuple[str, ...],
    context: tuple[tuple[str, str], ...],
    holdout: bool,
) -> Segment:
    """The counters of one decision (:func:`dco.learning.contract.counter_keys`, same keys, same order), the
    ``ctx:`` one flagged ``discounted``. Memoized. ``context`` is the event's ``(dimension, value)`` pairs.

    >>> decision_segment("cr|h1", "cr", ("headline=h1",), (("region", "pnw"),), False)
    ... # doctest: +NORMALIZE_WHITESPACE
    Segment(keys=('arm:cr|h1', 'arm:cr', 'split:optimized', 'ctx:cr|h1@region=pnw'),
            discounted=(False, False, False, True))
    """
    memo_key = (arm, creative, variants, context, holdout)
    segment = _decision_segments.get(memo_key)
    if segment is not None:
        return segment
    keys = tuple(counter_keys(arm=arm, creative=creative, variants=variants, context=context, holdout=holdout))
    segment = Segment(keys, tuple(key.startswith("ctx:") for key in keys))
    if len(_decision_segments) >= KEY_MEMO_SIZE:
        _decision_segments.clear()
    _decision_segments[memo_key] = segment
    return segment


# ------------------------------------------------------------------------------------- counters -> stats rows

# Counter key prefix -> section of the stats object (dco.stats); other prefixes are not published.
_PREFIX_TO_SECTION: dict[str, str] = PREFIX_TO_SECTION


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
    all-time counts; :func:`counter_rows` adds its discounted sums).

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
    """Every stats row a Counters item image carries: :func:`counter_row`, then one ``<key>#d<epoch>`` row per
    epoch of discounted sums kept in the item (:func:`decay_rows`), oldest first. Empty for counters the stats
    object does not carry; :class:`PoisonRecordError` for a malformed item.

    >>> counter_rows({"pk": "c1#ctx:cr|h1@region=x", "impressions": 5, "d2551i": 300, "d2551c": 90, "d2552i": 70})
    ... # doctest: +NORMALIZE_WHITESPACE
    [('c1', 'contexts', 'cr|h1@region=x', [5, 0, 0, 0.0]), ('c1', 'contexts', 'cr|h1@region=x#d2551', [300, 90, 0, 0.0]),
     ('c1', 'contexts', 'cr|h1@region=x#d2552', [70, 0, 0, 0.0])]
    """
    row = counter_row(image)
    if row is None:
        return []
    campaign, section, key, counts = row
    out = [row]
    for epoch, sums in sorted(decay_rows(image).items()):
        out.append((campaign, section, f"{key}{DECAY_SUFFIX}{epoch}", [*sums, 0.0]))
    return out


def decay_rows(image: Mapping[str, Any]) -> dict[int, list[int]]:
    """Epoch -> ``[impressions, clicks, conversions]`` discounted sums from a Counters item's ``d<epoch><i|c|n>``
    attributes (a field not stored is 0). :class:`PoisonRecordError` names a malformed one.

    >>> decay_rows({"pk": "c#ctx:x|a", "impressions": 9, "d7i": Decimal(400), "d7n": 65536})
    {7: [400, 0, 65536]}
    """
    out: dict[int, list[int]] = {}
    for name in image:
        found = decay_field(name)
        if found is None:
            continue
        epoch, index = found
        sums = out.get(epoch)
        if sums is None:
            sums = out[epoch] = [0, 0, 0]
        sums[index] = _count(image, name)
    return out


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
                "version": STATS_VERSION, "campaign": campaign, "updated_at": int(now),
                "arms": {}, "splits": {}, "contexts": {},
            }
        seen = obj[section].get(key)
        obj[section][key] = row if seen is None else [max(a, b) for a, b in zip(seen, row, strict=True)]
    return out
