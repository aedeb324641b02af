"""Tier 1 targeting: compile an experience's decision tree into per-dimension indexes, then pick an AdTheme.

Data flows in two steps (docs/targeting.md has the full story and the compiled format):

1. Build time. :func:`compile_targeting` turns every leaf of every decision tree into a *path*: the conjunction of
   the rules of each node from the root to the leaf (two nodes constraining the same single-valued dimension
   intersect their value sets), its AdTheme, its node names and its additive score (theme weight plus the
   specificity weight of every dimension it constrains). For each value-indexed dimension it builds an inverted
   index ``value -> paths`` plus the set of paths that leave the dimension unconstrained. The result is plain data
   (msgpack-ready, keys sorted, bitsets stored as sorted lists of path ordinals) that goes into the snapshot.
2. Serve time. :meth:`Targeting.from_compiled` turns those lists into Python ``int`` bitsets once, at snapshot
   load, with bit ``r`` standing for the path of score rank ``r`` (best first). :meth:`Targeting.select` then
   intersects ``index[d][value] | unconstrained[d]`` over the dimensions this experience uses, checks the few
   per-path leftovers (segments ``all``/``exclude``, extra ``any`` groups, date ranges) on the survivors only,
   and the lowest set bit is the winner: highest score, ties to the earlier path in the tree.

:func:`rules_match` evaluates one :class:`~dco.campaign.Rules` directly, without indexes. Assembled-creative
variant rules use it, and the tests use it as the oracle for the indexed path.

Request signals follow docs/signals.md: a flat ``Mapping[str, str]`` of normalised values, segments beside it as
a ``frozenset[str]``, time as an aware ``datetime`` converted here to the campaign time zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from dco.campaign import Campaign, Experience, Rules, ScheduleRule, TreeNode, WeeklyWindow
from dco.errors import ConfigError, RequestError

FORMAT_VERSION = 1
TOP_SCORES = 3
HOURS_PER_WEEK = 168
_EPOCH = datetime(1970, 1, 1)
_EPOCH_HOUR_OF_WEEK = 72  # 1970-01-01 was a Thursday
_OFFSET_BUCKET = 3600.0  # seconds over which a cached UTC offset is known to hold
DAY_NAMES: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# Specificity weights: a path scores its theme weight plus one of these per dimension it constrains.
# ``data``, ``profile`` and ``context`` apply per key (t1, ut3, context.weather); campaign.scoring overrides any
# entry, by exact dimension name first (``t1``, ``context.weather``), then by family (``data``).
DEFAULT_WEIGHTS: dict[str, float] = {
    "geo.postal": 8.0,
    "geo.city": 6.0,
    "geo.dma": 5.0,
    "geo.region": 4.0,
    "geo.country": 2.0,
    "device.type": 2.0,
    "device.browser": 2.0,
    "device.os": 2.0,
    "data": 3.0,
    "profile": 3.0,
    "segments": 3.0,
    "context": 2.0,
    "schedule": 1.0,
}

GEO_FIELDS: tuple[str, ...] = ("country", "region", "city", "postal", "dma")
DEVICE_FIELDS: tuple[str, ...] = ("type", "browser", "os")


class TargetingResult(NamedTuple):
    """The AdTheme chosen for one request and why.

    ``branch`` is ``tree`` (a path matched), ``else`` (nothing matched, the experience's else theme) or ``tag``
    (a tag experience's direct lookup). ``path`` is the winning path's ordinal in tree order (``None`` outside
    the tree branch); ``nodes`` its node names root to leaf; ``matched_rules`` the rules it matched on, as
    ``dimension=value`` strings (``geo.region=wa``); ``candidates`` how many paths matched; ``scores`` the best
    few ``(theme, score)`` among them, best first, for the explain trace.

    A NamedTuple rather than a frozen dataclass: it is built on every request and costs a third as much.
    """

    theme: str
    path: int | None
    score: float
    branch: str
    matched_rules: tuple[str, ...] = ()
    candidates: int = 0
    scores: tuple[tuple[str, float], ...] = ()
    nodes: tuple[str, ...] = ()

    @property
    def matched(self) -> bool:
        """True when a tree path or a tag matched (False for the else branch)."""
        return self.branch != "else"


# ----------------------------------------------------------------------------------------------------------------
# Shared helpers: dimension names, normalisation, windows, local date-times.


def normalise(dimension: str, value: str) -> str:
    """Normalise a rule or signal value the way docs/signals.md says: countries upper-case, the rest casefolded."""
    return value.upper() if dimension == "geo.country" else value.casefold()


def _family(dimension: str) -> str:
    if dimension.startswith("context."):
        return "context"
    if dimension.startswith("ut"):
        return "profile"
    if dimension.startswith("t"):
        return "data"
    return dimension


def weight_of(dimension: str, weights: Mapping[str, float]) -> float:
    """The specificity weight of ``dimension``: exact name first, then its family, else 0."""
    if dimension in weights:
        return float(weights[dimension])
    return float(weights.get(_family(dimension), 0.0))


def resolve_weights(scoring: Mapping[str, float]) -> dict[str, float]:
    """The default specificity weights overridden by a campaign's ``scoring`` table."""
    merged = dict(DEFAULT_WEIGHTS)
    for key, value in scoring.items():
        merged[key] = float(value)
    return dict(sorted(merged.items()))


def rule_dimensions(rules: Rules) -> dict[str, tuple[str, ...]]:
    """The value-indexed dimensions a Rules object constrains, as ``dimension -> accepted values`` (normalised).

    >>> from dco.campaign import GeoRule
    >>> rule_dimensions(Rules(geo=GeoRule(country=("us",)), context={"weather": ("Cold",)}))
    {'geo.country': ('US',), 'context.weather': ('cold',)}
    """
    out: dict[str, tuple[str, ...]] = {}
    for name in GEO_FIELDS:
        values = getattr(rules.geo, name)
        if values:
            out["geo." + name] = values
    for name in DEVICE_FIELDS:
        values = getattr(rules.device, name)
        if values:
            out["device." + name] = values
    for key, values in rules.data.items():
        if values:
            out[key.casefold()] = values
    for key, values in rules.profile.items():
        if values:
            out[key.casefold()] = values
    for key, values in rules.context.items():
        if values:
            name = key.casefold()
            out[name if name.startswith("context.") else "context." + name] = values
    return {dim: tuple(normalise(dim, v) for v in values) for dim, values in out.items()}


def window_hours(window: WeeklyWindow) -> set[int]:
    """The hours of the week (0 = Monday 00:00 .. 167 = Sunday 23:00) a weekly window covers.

    ``end_hour`` is exclusive. A window whose ``start_hour`` is after its ``end_hour`` runs overnight: from
    ``start_hour`` on each listed day to ``end_hour`` on the next day. ``start_hour == end_hour`` is empty.
    """
    hours: set[int] = set()
    start, end = window.start_hour, window.end_hour
    for day in window.days:
        base = (day % 7) * 24
        if start < end:
            hours.update(base + h for h in range(start, min(end, 24)))
        elif start > end:
            hours.update(base + h for h in range(start, 24))
            hours.update((base + 24 + h) % HOURS_PER_WEEK for h in range(0, end))
    return hours


def _window_contains(window: WeeklyWindow, weekday: int, hour: int) -> bool:
    start, end = window.start_hour, window.end_hour
    if start < end:
        return weekday in window.days and start <= hour < end
    if start > end:
        return (weekday in window.days and hour >= start) or ((weekday - 1) % 7 in window.days and hour < end)
    return False


@lru_cache(maxsize=1024)
def parse_local(text: str | None) -> datetime | None:
    """Parse a DateRange bound: an ISO 8601 local date-time without offset (a date means its midnight)."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError("schedule.ranges", f"not an ISO 8601 local date-time: {text!r}") from exc
    if parsed.tzinfo is not None:
        raise ConfigError("schedule.ranges", f"date-times are local to the campaign time zone, drop the offset: {text!r}")
    return parsed


def _in_range(wall: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or wall >= start) and (end is None or wall < end)


def _schedule_match(schedule: ScheduleRule, now_local: datetime) -> bool:
    wall = now_local.replace(tzinfo=None)
    if schedule.ranges and not any(
        _in_range(wall, parse_local(r.start), parse_local(r.end)) for r in schedule.ranges
    ):
        return False
    if schedule.windows:
        weekday, hour = wall.weekday(), wall.hour
        return any(_window_contains(w, weekday, hour) for w in schedule.windows)
    return True


def rules_match(
    rules: Rules, signals: Mapping[str, str], segments: frozenset[str] | set[str], now_local: datetime
) -> bool:
    """Evaluate one Rules object directly: True when every constrained dimension matches the request.

    ``now_local`` is the request time already in the campaign time zone (``now.astimezone(zone)``); schedules
    compare its wall-clock reading. A signal missing from ``signals`` fails any rule on that dimension.

    >>> from dco.campaign import GeoRule
    >>> rules_match(Rules(geo=GeoRule(region=("wa",))), {"geo.region": "wa"}, frozenset(), datetime(2026, 1, 1))
    True
    """
    for dim, values in rule_dimensions(rules).items():
        if signals.get(dim) not in values:
            return False
    seg = rules.segments
    if seg.any and not any(s.casefold() in segments for s in seg.any):
        return False
    if seg.all and not all(s.casefold() in segments for s in seg.all):
        return False
    if seg.exclude and any(s.casefold() in segments for s in seg.exclude):
        return False
    if rules.schedule.ranges or rules.schedule.windows:
        return _schedule_match(rules.schedule, now_local)
    return True


# ----------------------------------------------------------------------------------------------------------------
# Build time: the compiled (plain data) form.


class _PathBuilder:
    """The running conjunction of node rules from the root to the current node."""

    __slots__ = ("dims", "seg_any", "seg_all", "seg_exclude", "hours", "ranges", "nodes")

    def __init__(self) -> None:
        self.dims: dict[str, frozenset[str]] = {}
        self.seg_any: list[tuple[str, ...]] = []
        self.seg_all: frozenset[str] = frozenset()
        self.seg_exclude: frozenset[str] = frozenset()
        self.hours: frozenset[int] | None = None
        self.ranges: list[tuple[tuple[str | None, str | None], ...]] = []
        self.nodes: tuple[str, ...] = ()

    def extend(self, node: TreeNode) -> _PathBuilder:
        nxt = _PathBuilder()
        nxt.dims = dict(self.dims)
        for dim, values in rule_dimensions(node.rules).items():
            accepted = frozenset(values)
            nxt.dims[dim] = nxt.dims[dim] & accepted if dim in nxt.dims else accepted
        seg = node.rules.segments
        nxt.seg_any = list(self.seg_any)
        if seg.any:
            group = tuple(sorted({s.casefold() for s in seg.any}))
            if group not in nxt.seg_any:
                nxt.seg_any.append(group)
        nxt.seg_all = self.seg_all | {s.casefold() for s in seg.all}
        nxt.seg_exclude = self.seg_exclude | {s.casefold() for s in seg.exclude}
        nxt.hours = self.hours
        if node.rules.schedule.windows:
            hours: set[int] = set()
            for window in node.rules.schedule.windows:
                hours |= window_hours(window)
            nxt.hours = frozenset(hours) if self.hours is None else self.hours & hours
        nxt.ranges = list(self.ranges)
        if node.rules.schedule.ranges:
            for r in node.rules.schedule.ranges:  # validate early, at build time
                parse_local(r.start)
                parse_local(r.end)
            group_r = tuple((r.start, r.end) for r in node.rules.schedule.ranges)
            if group_r not in nxt.ranges:
                nxt.ranges.append(group_r)
        nxt.nodes = (*self.nodes, node.name)
        return nxt


def _dim_sort_key(dim: str) -> tuple[int, int, str]:
    """Geo fields (country .. dma), device fields, t1..t5, ut1..ut5, then context keys."""
    if dim.startswith("geo.") and dim[4:] in GEO_FIELDS:
        return (0, GEO_FIELDS.index(dim[4:]), dim)
    if dim.startswith("device.") and dim[7:] in DEVICE_FIELDS:
        return (1, DEVICE_FIELDS.index(dim[7:]), dim)
    family = _family(dim)
    return ({"data": 2, "profile": 3, "context": 4}.get(family, 5), 0, dim)


def _theme_weight(campaign: Campaign, theme: str, where: str) -> float:
    found = campaign.themes.get(theme)
    if found is None:
        raise ConfigError(where, f"unknown AdTheme {theme!r}")
    return float(found.weight)


def _collect_paths(
    nodes: Iterable[TreeNode], parent: _PathBuilder, where: str, out: list[tuple[_PathBuilder, str, str]]
) -> None:
    for i, node in enumerate(nodes):
        here = f"{where}[{i}]"
        acc = parent.extend(node)
        if node.children:
            if node.theme is not None:
                raise ConfigError(here, f"node {node.name!r} has both children and a theme")
            _collect_paths(node.children, acc, here + ".children", out)
        elif node.theme is None:
            raise ConfigError(here, f"leaf node {node.name!r} names no theme")
        else:
            out.append((acc, node.theme, here))


def _index(members: Mapping[int, frozenset[str] | None], count: int) -> dict:
    values: dict[str, list[int]] = {}
    unconstrained: list[int] = []
    for ordinal in range(count):
        accepted = members.get(ordinal)
        if accepted is None:
            unconstrained.append(ordinal)
            continue
        for value in accepted:
            values.setdefault(value, []).append(ordinal)
    return {"unconstrained": unconstrained, "values": {k: values[k] for k in sorted(values)}}


def _compile_experience(exp: Experience, campaign: Campaign, weights: Mapping[str, float], where: str) -> dict:
    else_theme = exp.else_theme
    if else_theme is not None:
        _theme_weight(campaign, else_theme, where + ".else")
    if exp.targeting == "tag":
        for tag, theme in exp.tags.items():
            _theme_weight(campaign, theme, f"{where}.tags.{tag}")
        return {
            "else": else_theme,
            "mode": "tag",
            "tags": {str(k): exp.tags[k] for k in sorted(exp.tags)},
        }
    collected: list[tuple[_PathBuilder, str, str]] = []
    _collect_paths(exp.tree, _PathBuilder(), where + ".tree", collected)
    paths: list[dict] = []
    for acc, theme, here in collected:
        dims = sorted(acc.dims, key=_dim_sort_key)
        score = _theme_weight(campaign, theme, here + ".theme")
        score += sum(weight_of(d, weights) for d in dims)
        if acc.seg_any or acc.seg_all:
            score += weight_of("segments", weights)
        if acc.hours is not None or acc.ranges:
            score += weight_of("schedule", weights)
        paths.append({
            "dims": dims,
            "nodes": list(acc.nodes),
            "ranges": [[[s, e] for s, e in group] for group in acc.ranges],
            "score": score,
            "segments_all": sorted(acc.seg_all),
            "segments_any": [list(g) for g in acc.seg_any],
            "segments_exclude": sorted(acc.seg_exclude),
            "theme": theme,
            "windows": acc.hours is not None,
        })
    count = len(collected)
    all_dims = sorted({d for acc, _, _ in collected for d in acc.dims}, key=_dim_sort_key)
    index = {
        dim: _index({i: acc.dims.get(dim) for i, (acc, _, _) in enumerate(collected)}, count) for dim in all_dims
    }
    seg_index = None
    if any(acc.seg_any for acc, _, _ in collected):
        seg_index = _index(
            {i: (frozenset(acc.seg_any[0]) if acc.seg_any else None) for i, (acc, _, _) in enumerate(collected)},
            count,
        )
    hour_index = None
    if any(acc.hours is not None for acc, _, _ in collected):
        hour_index = _index(
            {
                i: (None if acc.hours is None else frozenset(str(h) for h in acc.hours))
                for i, (acc, _, _) in enumerate(collected)
            },
            count,
        )
        hour_index["values"] = dict(sorted(hour_index["values"].items(), key=lambda kv: int(kv[0])))
    return {
        "else": else_theme,
        "hours": hour_index,
        "index": {k: index[k] for k in sorted(index)},
        "mode": "tree",
        "paths": paths,
        "segments_any": seg_index,
    }


def _sort_keys(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _sort_keys(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_sort_keys(v) for v in obj]
    return obj


def compile_targeting(campaign: Campaign) -> dict:
    """Compile every experience of ``campaign`` into plain, msgpack-ready data (keys sorted, deterministic).

    Layout (docs/targeting.md)::

        {"version": 1, "weights": {...}, "themes": {theme: weight},
         "experiences": {exp_id: {"mode": "tree", "else": theme | None, "paths": [...],
                                  "index": {dim: {"values": {value: [ordinals]}, "unconstrained": [ordinals]}},
                                  "segments_any": same shape | None, "hours": same shape (keys "0".."167") | None}
                         | {"mode": "tag", "else": theme | None, "tags": {tag: theme}}}}

    Raises :class:`~dco.errors.ConfigError` for a leaf without a theme, an unknown theme or a bad date-time.
    """
    weights = resolve_weights(campaign.scoring)
    experiences = {}
    for i, exp in enumerate(campaign.experiences):
        experiences[exp.id] = _compile_experience(exp, campaign, weights, f"experiences[{i}]")
    data = {
        "experiences": experiences,
        "themes": {tid: float(theme.weight) for tid, theme in campaign.themes.items()},
        "version": FORMAT_VERSION,
        "weights": weights,
    }
    result = _sort_keys(data)
    assert isinstance(result, dict)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Serve time: int bitsets, one select per request.


# One piece of a path's explanation: a ready string, ("value", dim, "dim=") for the request's value of dim,
# ("segments", group) for the member of a segments-any group the request has, None for the local hour of the week.
_Part = str | tuple[Any, ...] | None


def _mask(ordinals: Iterable[int], bit_of: list[int]) -> int:
    mask = 0
    for ordinal in ordinals:
        mask |= bit_of[ordinal]
    return mask


class _CompiledExperience:
    """One experience ready to serve; bit ``r`` of every mask is the path of score rank ``r``."""

    __slots__ = (
        "tag_results", "else_result", "all_mask", "dims", "seg_index", "seg_unc", "hour_masks", "needs_local",
        "post_mask", "post", "order", "themes", "scores", "items", "nodes", "explain",
    )

    def __init__(self) -> None:
        self.tag_results: dict[str, TargetingResult] | None = None
        self.else_result: TargetingResult | None = None
        self.all_mask = 0
        self.dims: tuple[tuple[str, dict[str, int], int], ...] = ()
        self.seg_index: dict[str, int] | None = None
        self.seg_unc = 0
        self.hour_masks: list[int] | None = None
        self.needs_local = False
        self.post_mask = 0
        self.post: dict[int, tuple] = {}
        self.order: list[int] = []
        self.themes: list[str] = []
        self.scores: list[float] = []
        self.items: list[tuple[str, float]] = []
        self.nodes: list[tuple[str, ...]] = []
        # Per rank, how to explain a win: a ready tuple of strings when every rule of the path accepts a single
        # value, else parts to fill in from the request (see _explain).
        self.explain: list[tuple[str, ...] | list[_Part]] = []


def _load_experience(data: Mapping, themes: Mapping[str, float]) -> _CompiledExperience:
    ce = _CompiledExperience()
    else_theme = data.get("else")
    if else_theme is not None:
        ce.else_result = TargetingResult(else_theme, None, float(themes.get(else_theme, 0.0)), "else")
    if data["mode"] == "tag":
        ce.tag_results = {
            tag: TargetingResult(theme, None, float(themes.get(theme, 0.0)), "tag", (f"tag={tag}",), 1,
                                 ((theme, float(themes.get(theme, 0.0))),))
            for tag, theme in data["tags"].items()
        }
        return ce
    paths = data["paths"]
    count = len(paths)
    order = sorted(range(count), key=lambda i: (-float(paths[i]["score"]), i))
    bit_of = [0] * count
    for rank, ordinal in enumerate(order):
        bit_of[ordinal] = 1 << rank
    ce.order = order
    ce.all_mask = (1 << count) - 1
    ce.themes = [paths[i]["theme"] for i in order]
    ce.scores = [float(paths[i]["score"]) for i in order]
    ce.items = [(ce.themes[r], ce.scores[r]) for r in range(count)]
    ce.nodes = [tuple(paths[i]["nodes"]) for i in order]
    dims = []
    accepted: list[dict[str, list[str]]] = [{} for _ in range(count)]  # by ordinal: dim -> accepted values
    for dim, entry in data["index"].items():
        unconstrained = _mask(entry["unconstrained"], bit_of)
        for value, ordinals in entry["values"].items():
            for ordinal in ordinals:
                accepted[ordinal].setdefault(dim, []).append(value)
        if unconstrained == ce.all_mask:
            continue
        # each value maps straight to (paths accepting it | unconstrained paths): one dict lookup per dimension
        full = {v: _mask(o, bit_of) | unconstrained for v, o in entry["values"].items()}
        dims.append((len(entry["unconstrained"]), dim, full, unconstrained))
    # most selective dimensions first, so that a request matching nothing stops early
    ce.dims = tuple((dim, full, unconstrained) for _, dim, full, unconstrained in sorted(dims, key=lambda d: d[:2]))
    seg = data.get("segments_any")
    if seg is not None:
        ce.seg_index = {v: _mask(o, bit_of) for v, o in seg["values"].items()}
        ce.seg_unc = _mask(seg["unconstrained"], bit_of)
    hours = data.get("hours")
    if hours is not None:
        unconstrained = _mask(hours["unconstrained"], bit_of)
        masks = [unconstrained] * HOURS_PER_WEEK
        for hour, ordinals in hours["values"].items():
            masks[int(hour)] |= _mask(ordinals, bit_of)
        ce.hour_masks = masks
        ce.needs_local = True
    for rank, ordinal in enumerate(order):
        path = paths[ordinal]
        extra_any = tuple(frozenset(g) for g in path["segments_any"][1:])
        seg_all = frozenset(path["segments_all"])
        seg_exclude = frozenset(path["segments_exclude"])
        ranges = tuple(tuple((_local_seconds(s), _local_seconds(e)) for s, e in group) for group in path["ranges"])
        if extra_any or seg_all or seg_exclude or ranges:
            ce.post[rank] = (extra_any, seg_all, seg_exclude, ranges)
            ce.post_mask |= 1 << rank
        if ranges:
            ce.needs_local = True
        parts: list[_Part] = []
        for dim in path["dims"]:
            values = accepted[ordinal].get(dim, [])
            parts.append(f"{dim}={values[0]}" if len(values) == 1 else ("value", dim, dim + "="))
        if path["segments_any"]:
            group = path["segments_any"][0]
            parts.append("segments.any=" + group[0] if len(group) == 1 else ("segments", tuple(group)))
        texts: list[str] = []
        if len(path["segments_any"]) > 1:
            texts.extend("segments.any=" + ",".join(g) for g in path["segments_any"][1:])
        if seg_all:
            texts.append("segments.all=" + ",".join(sorted(seg_all)))
        if seg_exclude:
            texts.append("segments.exclude=" + ",".join(sorted(seg_exclude)))
        texts.extend(f"schedule.range={s or ''}..{e or ''}" for group in path["ranges"] for s, e in group)
        parts.extend(texts)
        if path["windows"]:
            parts.append(None)  # the hour of the week, from the request time
        ready = [p for p in parts if isinstance(p, str)]
        ce.explain.append(tuple(ready) if len(ready) == len(parts) else parts)
    return ce


def _local_seconds(text: str | None) -> float | None:
    """A local date-time bound as seconds since the local epoch (1970-01-01 00:00 wall clock)."""
    parsed = parse_local(text)
    return None if parsed is None else (parsed - _EPOCH).total_seconds()


def _passes(check: tuple, segments: frozenset[str], wall: float) -> bool:
    extra_any, seg_all, seg_exclude, ranges = check
    for group in extra_any:
        if group.isdisjoint(segments):
            return False
    if seg_all and not seg_all <= segments:
        return False
    if seg_exclude and not seg_exclude.isdisjoint(segments):
        return False
    if ranges:
        for group in ranges:
            for start, end in group:
                if (start is None or wall >= start) and (end is None or wall < end):
                    break
            else:
                return False
    return True


class Targeting:
    """Tier 1 for one campaign snapshot: built once at load, then :meth:`select` per request (thread-safe, no
    mutable state)."""

    __slots__ = ("_experiences", "_zone", "_offset", "timezone")

    def __init__(self, experiences: dict[str, _CompiledExperience], timezone: str) -> None:
        self._experiences = experiences
        self.timezone = timezone
        self._zone = ZoneInfo(timezone)
        # (from, until, offset): the zone's UTC offset in seconds over [from, until) in POSIX seconds. A memo of a
        # pure function, replaced whole (atomic), so sharing a Targeting between threads stays safe.
        self._offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def from_compiled(cls, data: Mapping, timezone: str) -> Targeting:
        """Load the output of :func:`compile_targeting` (possibly after a msgpack round trip)."""
        themes = {k: float(v) for k, v in data.get("themes", {}).items()}
        experiences = {eid: _load_experience(exp, themes) for eid, exp in data["experiences"].items()}
        return cls(experiences, timezone)

    @property
    def experience_ids(self) -> tuple[str, ...]:
        return tuple(self._experiences)

    def local_time(self, now: datetime) -> datetime:
        """``now`` (aware) in the campaign time zone."""
        if now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        return now.astimezone(self._zone)

    def _wall_seconds(self, now: datetime) -> float:
        """``now`` as seconds since 1970-01-01 00:00 on the campaign's wall clock (what ``local_time`` reads)."""
        if now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        ts = now.timestamp()
        start, until, offset = self._offset
        if start <= ts < until:
            return ts + offset
        bucket = (ts // _OFFSET_BUCKET) * _OFFSET_BUCKET
        first = datetime.fromtimestamp(bucket, self._zone).utcoffset() or timedelta(0)
        last = datetime.fromtimestamp(bucket + _OFFSET_BUCKET - 1.0, self._zone).utcoffset() or timedelta(0)
        if first == last:  # no transition inside this bucket: remember it
            self._offset = (bucket, bucket + _OFFSET_BUCKET, first.total_seconds())
            return ts + first.total_seconds()
        exact = now.astimezone(self._zone).utcoffset() or timedelta(0)
        return ts + exact.total_seconds()

    def select(
        self,
        experience_id: str,
        signals: Mapping[str, str],
        segments: frozenset[str],
        now: datetime,
        tag: str | None = None,
    ) -> TargetingResult | None:
        """Pick the AdTheme for one request.

        Tree experiences: the best-scoring path whose rules all match (ties to the earlier path in the tree),
        else the else theme (``branch="else"``), else ``None`` (the engine serves the campaign default
        creative). Tag experiences: the theme mapped to ``tag``, else the else theme, else ``None``.
        Raises :class:`~dco.errors.RequestError` (param ``exp``) for an unknown experience id.
        """
        exp = self._experiences.get(experience_id)
        if exp is None:
            raise RequestError("exp", f"unknown experience {experience_id!r}")
        if exp.tag_results is not None:
            if tag is None:
                return exp.else_result
            found = exp.tag_results.get(tag)
            if found is None:
                found = exp.tag_results.get(tag.casefold())
            return exp.else_result if found is None else found
        m = exp.all_mask
        get = signals.get
        for dim, index, unconstrained in exp.dims:
            m &= index.get(get(dim), unconstrained)  # type: ignore[arg-type]
            if not m:
                return exp.else_result
        seg_index = exp.seg_index
        if seg_index is not None:
            sm = exp.seg_unc
            if segments:
                if len(segments) <= len(seg_index):
                    for s in segments:
                        sm |= seg_index.get(s, 0)
                else:
                    for s, bits in seg_index.items():
                        if s in segments:
                            sm |= bits
            m &= sm
            if not m:
                return exp.else_result
        wall = 0.0
        if exp.needs_local:
            wall = self._wall_seconds(now)
            if exp.hour_masks is not None:
                m &= exp.hour_masks[(int(wall // 3600.0) + _EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK]
                if not m:
                    return exp.else_result
        pending = m & exp.post_mask
        while pending:
            low = pending & -pending
            pending ^= low
            if not _passes(exp.post[low.bit_length() - 1], segments, wall):
                m ^= low
        if not m:
            return exp.else_result
        return self._result(exp, m, signals, segments, wall)

    @staticmethod
    def _result(
        exp: _CompiledExperience, m: int, signals: Mapping[str, str], segments: frozenset[str], wall: float
    ) -> TargetingResult:
        rank = (m & -m).bit_length() - 1
        rules = exp.explain[rank]
        if not isinstance(rules, tuple):
            rules = _explain(rules, signals, segments, wall)
        items = exp.items
        rest = m & (m - 1)
        if not rest:
            top: tuple[tuple[str, float], ...] = (items[rank],)
        else:
            listed = [items[rank]]
            while rest and len(listed) < TOP_SCORES:
                low = rest & -rest
                rest ^= low
                listed.append(items[low.bit_length() - 1])
            top = tuple(listed)
        return _new_result(TargetingResult, (
            exp.themes[rank], exp.order[rank], exp.scores[rank], "tree", rules, m.bit_count(), top, exp.nodes[rank],
        ))


def _explain(parts: list[_Part], signals: Mapping[str, str], segments: frozenset[str], wall: float) -> tuple[str, ...]:
    """Fill in the request-dependent parts of a path's explanation: ``("value", dim, "dim=")`` takes the request
    value, ``("segments", group)`` the first member of an ``any`` group present, ``None`` the local hour of the
    week; strings are ready as they are."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif part is None:
            how = (int(wall // 3600.0) + _EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK
            out.append(f"schedule.window={DAY_NAMES[how // 24]} {how % 24:02d}h")
        elif part[0] == "value":
            out.append(part[2] + signals[part[1]])
        else:
            out.append("segments.any=" + next(s for s in part[1] if s in segments))
    return tuple(out)


# A NamedTuple's generated __new__ takes keywords and defaults; select() builds positional records directly.
_new_result = tuple.__new__
