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
                                  The learner's data (dco.learning.model). It also keeps time-discounted sums.

Time-discounted evidence, exactly once: besides its totals, a ``ctx:`` counter sums each event's weight
``2 ** ((ts - epoch start) / RECENT_HALF_LIFE_S)`` (an integer: times :data:`WEIGHT_SCALE`, rounded), per epoch of
:data:`EPOCH_S` (eight half-lives, so a weight stays under ``2 ** 8``), as attributes ``d<epoch><i|c|n>`` of its
item (:func:`decay_attribute`), added in the same write as its totals. The sums only grow (counters stay
monotone: they merge by maximum and fold exactly once), and at any time ``now`` an epoch's sum times
``2 ** ((epoch start - now) / RECENT_HALF_LIFE_S)`` is the evidence weighted ``0.5 ** (age / half-life)``
(:func:`decay_factor`). An item keeps its newest :data:`KEEP_EPOCHS` epochs (older ones weigh under 0.4 %).

The stats object (msgpack in ``stats/<campaign>.msgpack``; version :data:`STATS_VERSION`)::

    {"version": 2, "campaign": "c1", "updated_at": 1700000000,
     "arms":     {"<arm key>": [impressions, clicks, conversions, value], ...},
     "splits":   {"holdout": [...], "optimized": [...]},
     "contexts": {"<combination>@<dim>=<value>...": [...], "<same>#d<epoch>": [di, dc, dn, 0], ...},
     "models":   {"<creative>": {"click": <model>, "conversion": <model>}}}

``arms``, ``splits`` and ``contexts`` hold the counters without their prefix (``contexts`` also one row per epoch
of discounted sums, ``#d<epoch>``, the newest :data:`KEEP_EPOCHS`); counts are absolute and only grow, so two
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
    "RECENT_HALF_LIFE_S",
    "EPOCH_S",
    "WEIGHT_SCALE",
    "KEEP_EPOCHS",
    "DECAY_SUFFIX",
    "DECAY_FIELDS",
    "ContextKey",
    "escape_value",
    "unescape_value",
    "context_key",
    "parse_context_key",
    "counter_keys",
    "decay_stamp",
    "decay_factor",
    "decay_attribute",
    "decay_field",
    "split_decay",
    "prune_epochs",
]

STATS_VERSION = 2
READ_VERSIONS = (1, 2)
# The sections that hold absolute counters (merged by maximum), and every section of a version 2 object.
COUNTER_SECTIONS = ("arms", "splits", "contexts")
SECTIONS = (*COUNTER_SECTIONS, "models")
# Counter key prefix -> stats object section (other prefixes are not published).
PREFIX_TO_SECTION: dict[str, str] = {"arm:": "arms", "split:": "splits", "ctx:": "contexts"}

RECENT_HALF_LIFE_S = 86_400  # the half-life of the learner's recent memory (dco.learning.model)
EPOCH_S = 8 * RECENT_HALF_LIFE_S
WEIGHT_SCALE = 1 << 16  # discounted sums are integers: weights times this, rounded
KEEP_EPOCHS = 2  # epochs an item and the stats object keep (an epoch ago, a weight is 2 ** -8)
DECAY_SUFFIX = "#d"
DECAY_FIELDS = ("i", "c", "n")  # discounted impressions, clicks, conversions
_DECAY_ATTRIBUTE = re.compile(r"d(\d{1,12})([icn])")

# Context values are escaped into keys: anything but lowercase letters, digits, '-' and '_' becomes %XX (UTF-8),
# so '@', '=', '.', '|', '#' and '%' in a value can never change how a key parses.
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
MAX_VALUE_LENGTH = 96  # an escaped value longer than this is not counted (the dimension is left out)
DIMENSION_PATTERN = r"(region|device|country|daypart|context\.[a-z0-9_]{1,32})"
_DIMENSION = re.compile(DIMENSION_PATTERN)
_ESCAPED = re.compile(r"[a-z0-9_%A-F-]{1,96}")  # escape_value's output: safe characters and %XX (upper-case hex)


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
    """``(creative, variants, context)`` of a ``contexts`` key (epoch suffix allowed and ignored); None for a key
    that is not one (no ``|``, a malformed dimension).

    >>> tuple(parse_context_key("cr|h1.i2@device=mobile@region=pnw#d2551"))
    ('cr', ('h1', 'i2'), (('device', 'mobile'), ('region', 'pnw')))
    """
    base = key.partition(DECAY_SUFFIX)[0]
    head, bar, rest = base.partition("|")
    if not bar or not head:
        return None
    combo, *dims = rest.split("@")
    if not combo:
        return None
    context = []
    for item in dims:
        dim, eq, value = item.partition("=")
        if not eq or not _DIMENSION.fullmatch(dim) or not _ESCAPED.fullmatch(value):
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
    steers, and the holdout stays a clean uniform control. The ``ctx:`` counter also keeps discounted sums
    (:func:`decay_stamp` of the event's time), which the fold stores in its item.

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


def decay_stamp(ts: int) -> tuple[int, int]:
    """``(epoch, weight)`` of an event at unix time ``ts``: the integer weight of its time-discounted sums.

    >>> decay_stamp(0), decay_stamp(86_400), decay_stamp(8 * 86_400)
    ((0, 65536), (0, 131072), (1, 65536))
    """
    ts = int(ts)
    epoch = ts // EPOCH_S
    return epoch, round(2.0 ** ((ts - epoch * EPOCH_S) / RECENT_HALF_LIFE_S) * WEIGHT_SCALE)


def decay_factor(epoch: int, now: float) -> float:
    """What an epoch's integer sums are multiplied by to give the evidence discounted to ``now``.

    >>> round(decay_factor(0, 86_400) * decay_stamp(0)[1], 6)  # an event a day old weighs a half
    0.5
    """
    return 2.0 ** ((epoch * EPOCH_S - float(now)) / RECENT_HALF_LIFE_S) / WEIGHT_SCALE


def decay_attribute(epoch: int, index: int) -> str:
    """The item attribute of field ``index`` (0 impressions, 1 clicks, 2 conversions) of an epoch's sums.

    >>> decay_attribute(2551, 1)
    'd2551c'
    """
    return f"d{epoch}{DECAY_FIELDS[index]}"


def decay_field(name: str) -> tuple[int, int] | None:
    """``(epoch, field index)`` of a discounted-sum attribute name (:func:`decay_attribute`), None for any other.

    >>> decay_field("d2551c"), decay_field("clicks"), decay_field("d12")
    ((2551, 1), None, None)
    """
    if name[:1] != "d":
        return None
    match = _DECAY_ATTRIBUTE.fullmatch(name)
    return None if match is None else (int(match.group(1)), DECAY_FIELDS.index(match.group(2)))


def split_decay(key: str) -> tuple[str, int | None]:
    """``(key without its epoch suffix, epoch)``; epoch None for a key without one (or a malformed one).

    >>> split_decay("cr|a.b@region=x#d2551"), split_decay("cr|a.b")
    (('cr|a.b@region=x', 2551), ('cr|a.b', None))
    """
    head, sep, tail = key.rpartition(DECAY_SUFFIX)
    if sep and head and tail.isdigit() and tail.isascii():
        return head, int(tail)
    return key, None


def prune_epochs(obj: dict[str, Any], keep: int = KEEP_EPOCHS) -> dict[str, Any]:
    """Drop the ``contexts`` rows of discounted sums (``...#d<epoch>``) older than the newest ``keep`` epochs of
    the object.

    The newest epoch is the highest one present, so pruning after every merge keeps the merge order-free and
    idempotent (an epoch once out of the window stays out). The simulator publishes through the same rule.
    Returns ``obj``.
    """
    rows = obj.get("contexts") or {}
    epochs = {}
    for key in rows:
        _, epoch = split_decay(key)
        if epoch is not None:
            epochs[key] = epoch
    if epochs:
        newest = max(epochs.values())
        for key, epoch in epochs.items():
            if epoch <= newest - keep:
                del rows[key]
    return obj
