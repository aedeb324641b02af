"""The stats contract: which counters an event increments, how the fold stores them, and the stats object
that publish-stats writes and decide, the simulator and reports read. One module, imported by all of them.

Counter keys (the ``pk`` suffix ``<campaign>#<key>`` in the Counters table, docs/storage.md)::

    arm:<arm key>                 every served decision, holdout included: cr-house, cr-product|SKU-1,
                                  cr-retail|img07.h03.c02 (an assembled creative's combination, variant ids in slot
                                  order)
    arm:<creative id>             the creative-level arm of a dynamic or assembled creative
    split:<holdout|optimized>     all traffic of the campaign by group (lift)
    ctx:<combination>@<dim>=<value>...
                                  a steered (not holdout) decision of an assembled creative within its learning
                                  context: the campaign's learning dimensions present in the request, sorted by
                                  name, values escaped (:func:`escape_value`): ``ctx:cr|h1.i2@device=mobile@region=pnw``.
                                  The learner's data (dco.learning.model). It has daily time buckets.

A time bucket is ``ts // BUCKET_S`` (days since the epoch) of the event's time. The fold keeps a counter's
buckets in the counter's own item as attributes ``e<bucket><i|c|n|v>`` (:func:`bucket_attribute`), added in the
same write as its totals; an item keeps its newest :data:`KEEP_BUCKETS` buckets.

The stats object (msgpack in ``stats/<campaign>.msgpack``; version :data:`STATS_VERSION`)::

    {"version": 2, "campaign": "c1", "updated_at": 1700000000,
     "arms":     {"<arm key>": [impressions, clicks, conversions, value], ...},
     "splits":   {"holdout": [...], "optimized": [...]},
     "contexts": {"<combination>@<dim>=<value>...": [...], "<same>#e<bucket>": [...], ...},
     "models":   {"<creative>": {"click": <model>, "conversion": <model>}}}

``arms``, ``splits`` and ``contexts`` hold the counters without their prefix (``contexts`` also one row per time
bucket, ``#e<bucket>``, only the newest :data:`PUBLISHED_BUCKETS`); counts are absolute and only grow, so two
objects merge by element-wise maximum. ``models`` is derived: publish-stats fits it after every merge
(dco.learning.model documents its shape); it is never merged, only replaced.

Version 1 objects (``components`` and per-region ``arm:...@region=`` rows, before the learner of
docs/learning.md) are still read: their arms and splits count, the rest is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "STATS_VERSION",
    "READ_VERSIONS",
    "COUNTER_SECTIONS",
    "SECTIONS",
    "PREFIX_TO_SECTION",
    "BUCKET_S",
    "BUCKET_SUFFIX",
    "KEEP_BUCKETS",
    "PUBLISHED_BUCKETS",
    "BUCKET_FIELDS",
    "ContextKey",
    "escape_value",
    "unescape_value",
    "context_key",
    "parse_context_key",
    "counter_keys",
    "bucket_of",
    "bucket_attribute",
    "bucket_field",
    "split_bucket",
    "prune_buckets",
]

STATS_VERSION = 2
READ_VERSIONS = (1, 2)
# The sections that hold absolute counters (merged by maximum), and every section of a version 2 object.
COUNTER_SECTIONS = ("arms", "splits", "contexts")
SECTIONS = (*COUNTER_SECTIONS, "models")
# Counter key prefix -> stats object section (other prefixes are not published).
PREFIX_TO_SECTION: dict[str, str] = {"arm:": "arms", "split:": "splits", "ctx:": "contexts"}

BUCKET_S = 86_400  # a time bucket is one UTC day
BUCKET_SUFFIX = "#e"
KEEP_BUCKETS = 14  # the buckets a Counters item keeps (older ones are removed in the write that sees them)
# The buckets the stats object carries: the learner's recent memory halves every day (LearningParams), so a bucket
# a week old weighs under 1 % there; older buckets only grow the object.
PUBLISHED_BUCKETS = 7
BUCKET_FIELDS = ("i", "c", "n", "v")  # impressions, clicks, conversions, value
_BUCKET_ATTRIBUTE = re.compile(r"e(\d{1,12})([icnv])")

# Context values are escaped into keys: anything but lowercase letters, digits, '-' and '_' becomes %XX (UTF-8),
# so '@', '=', '.', '|', '#' and '%' in a value can never change how a key parses.
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
MAX_VALUE_LENGTH = 96  # an escaped value longer than this is not counted (the dimension is left out)
DIMENSION_PATTERN = r"(region|device|country|daypart|context\.[a-z0-9_]{1,32})"
_DIMENSION = re.compile(DIMENSION_PATTERN)


def escape_value(value: str) -> str:
    """A context value as it appears in a key (case is kept as given; callers fold it where the signal is).

    >>> escape_value("pnw"), escape_value("us-ca"), escape_value("a.b@c")
    ('pnw', 'us-ca', 'a%2Eb%40c')
    """
    if all(c in _SAFE for c in value):
        return value
    return "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in value)


def unescape_value(text: str) -> str:
    """The inverse of :func:`escape_value`.

    >>> unescape_value("a%2Eb%40c")
    'a.b@c'
    """
    if "%" not in text:
        return text
    from urllib.parse import unquote

    return unquote(text)


class ContextKey(tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]):
    """A parsed ``contexts`` key: ``(creative, variant ids in slot order, ((dimension, escaped value), ...))``."""

    __slots__ = ()

    @property
    def creative(self) -> str:
        return self[0]

    @property
    def variants(self) -> tuple[str, ...]:
        return self[1]

    @property
    def context(self) -> tuple[tuple[str, str], ...]:
        return self[2]


def context_key(arm: str, context: Iterable[tuple[str, str]]) -> str:
    """The ``contexts`` key (without the ``ctx:`` prefix) of a combination arm in a learning context: the context's
    dimensions sorted by name, values escaped; values that escape to more than :data:`MAX_VALUE_LENGTH` characters
    are left out.

    >>> context_key("cr|h1.i2", {"region": "pnw", "device": "mobile"}.items())
    'cr|h1.i2@device=mobile@region=pnw'
    """
    parts = [arm]
    for dim, value in sorted(context):
        escaped = escape_value(value)
        if value and len(escaped) <= MAX_VALUE_LENGTH:
            parts.append(f"@{dim}={escaped}")
    return "".join(parts)


def parse_context_key(key: str) -> ContextKey | None:
    """``(creative, variants, context)`` of a ``contexts`` key (bucket suffix allowed and ignored); None for a key
    that is not one (no ``|``, a malformed dimension).

    >>> tuple(parse_context_key("cr|h1.i2@device=mobile@region=pnw#e20001"))
    ('cr', ('h1', 'i2'), (('device', 'mobile'), ('region', 'pnw')))
    """
    base = key.partition(BUCKET_SUFFIX)[0]
    head, bar, rest = base.partition("|")
    if not bar or not head:
        return None
    combo, *dims = rest.split("@")
    if not combo:
        return None
    context = []
    for item in dims:
        dim, eq, value = item.partition("=")
        if not eq or not value or not _DIMENSION.fullmatch(dim):
            return None
        context.append((dim, value))
    return ContextKey((head, tuple(combo.split(".")), tuple(context)))


def counter_keys(
    *,
    arm: str,
    creative: str,
    variants: Sequence[str] = (),
    context: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    holdout: bool = False,
) -> list[str]:
    """Every counter one event of a decision increments (without the campaign prefix), in the fold's order.

    ``variants`` are the ``"slot=variant"`` strings a tracking token carries (present for assembled creatives);
    ``context`` the learning context of the request (``{dimension: value}``, as the token carries it). Holdout
    traffic counts per arm and in ``split:holdout`` but never in ``ctx:``: the learner learns from the traffic it
    steers, and the holdout stays a clean uniform control. The ``ctx:`` counter has daily time buckets
    (:func:`bucket_of` of the event's time), which the fold stores in its item.

    >>> counter_keys(arm="cr|h1.i2", creative="cr", variants=["headline=h1", "image=i2"], context={"region": "pnw"})
    ['arm:cr|h1.i2', 'arm:cr', 'split:optimized', 'ctx:cr|h1.i2@region=pnw']
    >>> counter_keys(arm="cr-house", creative="cr-house", holdout=True)
    ['arm:cr-house', 'split:holdout']
    """
    keys = [f"arm:{arm}"]
    if arm != creative:
        keys.append(f"arm:{creative}")
    keys.append("split:holdout" if holdout else "split:optimized")
    if variants and not holdout and arm != creative:
        pairs = context.items() if isinstance(context, Mapping) else (context or ())
        keys.append("ctx:" + context_key(arm, pairs))
    return keys


def bucket_of(ts: int) -> int:
    """The time bucket (UTC day number) of unix time ``ts``."""
    return int(ts) // BUCKET_S


def bucket_attribute(bucket: int, index: int) -> str:
    """The item attribute of field ``index`` (0 impressions, 1 clicks, 2 conversions, 3 value) of a time bucket.

    >>> bucket_attribute(20001, 1)
    'e20001c'
    """
    return f"e{bucket}{BUCKET_FIELDS[index]}"


def bucket_field(name: str) -> tuple[int, int] | None:
    """``(bucket, field index)`` of a time-bucket attribute name (:func:`bucket_attribute`), None for any other.

    >>> bucket_field("e20001c"), bucket_field("impressions"), bucket_field("e12")
    ((20001, 1), None, None)
    """
    if name[:1] != "e":
        return None
    match = _BUCKET_ATTRIBUTE.fullmatch(name)
    return None if match is None else (int(match.group(1)), BUCKET_FIELDS.index(match.group(2)))


def split_bucket(key: str) -> tuple[str, int | None]:
    """``(key without its bucket suffix, bucket)``; bucket None for a key without one (or a malformed one).

    >>> split_bucket("cr|a.b@region=x#e20001"), split_bucket("cr|a.b")
    (('cr|a.b@region=x', 20001), ('cr|a.b', None))
    """
    head, sep, tail = key.rpartition(BUCKET_SUFFIX)
    if sep and head and tail.isdigit() and tail.isascii():
        return head, int(tail)
    return key, None


def prune_buckets(obj: dict[str, Any], keep: int = PUBLISHED_BUCKETS) -> dict[str, Any]:
    """Drop the ``contexts`` bucket rows (``...#e<bucket>``) older than the newest ``keep`` buckets of the object.

    The newest bucket is the highest one present, so pruning after every merge keeps the merge order-free and
    idempotent (a bucket once out of the window stays out). The simulator publishes through the same function.
    Returns ``obj``.
    """
    rows = obj.get("contexts") or {}
    buckets = {}
    for key in rows:
        _, bucket = split_bucket(key)
        if bucket is not None:
            buckets[key] = bucket
    if buckets:
        newest = max(buckets.values())
        for key, bucket in buckets.items():
            if bucket <= newest - keep:
                del rows[key]
    return obj
