"""The campaign model: frozen records for what an advertiser writes in a campaign config.

Data flows one way: ``dco.config.load_campaign`` reads JSON or YAML, validates it and returns a :class:`Campaign`
built from these records; the snapshot builder compiles a Campaign (plus a catalog) into indexes; the engine
reads the compiled form. Nothing here does I/O. Every string value used for targeting is normalised when the
config is loaded: countries upper-case ISO 3166-1 alpha-2, everything else case-folded (``str.casefold``), so a
request value compares by equality after the same normalisation.

Vocabulary (see docs/campaign-config.md): an *experience* is an ad tag; its decision tree ends in leaves that
name an *AdTheme*; an AdTheme has an additive score weight and a *creative group*; a creative group rotates among
*creatives* with a rotation method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RotationMethod = Literal["algo", "weighted", "sequential", "random"]
TargetingMode = Literal["tree", "tag"]
Objective = Literal["click", "conversion"]
AdFormat = Literal["html", "js", "json", "vast"]

ROTATION_METHODS: tuple[str, ...] = ("algo", "weighted", "sequential", "random")
TARGETING_MODES: tuple[str, ...] = ("tree", "tag")
OBJECTIVES: tuple[str, ...] = ("click", "conversion")
AD_FORMATS: tuple[str, ...] = ("html", "js", "json", "vast")
DATA_KEYS: tuple[str, ...] = ("t1", "t2", "t3", "t4", "t5")
PROFILE_KEYS: tuple[str, ...] = ("ut1", "ut2", "ut3", "ut4", "ut5")
DEVICE_TYPES: tuple[str, ...] = ("desktop", "mobile", "tablet", "tv", "other")

# Request signals a product filter or boost may read with ``from``: the value of that signal in the request.
REQUEST_SIGNALS: tuple[str, ...] = (
    "geo.country", "geo.region", "geo.city", "geo.postal", "geo.dma",
    "device.type", "device.browser", "device.os",
    *DATA_KEYS, *PROFILE_KEYS,
)  # plus "context.<key>" for any contextual key


@dataclass(frozen=True)
class GeoRule:
    """Geo constraints: a request matches when its value is in every non-empty list."""

    country: tuple[str, ...] = ()
    region: tuple[str, ...] = ()
    city: tuple[str, ...] = ()
    postal: tuple[str, ...] = ()
    dma: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceRule:
    type: tuple[str, ...] = ()
    browser: tuple[str, ...] = ()
    os: tuple[str, ...] = ()


@dataclass(frozen=True)
class SegmentRule:
    """Segments: ``any`` (at least one), ``all`` (every one), ``exclude`` (none of them)."""

    any: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class DateRange:
    """A local date-time range in the campaign time zone, ``start`` inclusive, ``end`` exclusive.

    Both are ISO 8601 local date-times without offset (``2026-12-01T00:00``); ``None`` is open-ended.
    """

    start: str | None = None
    end: str | None = None


@dataclass(frozen=True)
class WeeklyWindow:
    """Weekdays (0=Monday .. 6=Sunday) and an hour window ``[start_hour, end_hour)`` in local time (0..24)."""

    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    start_hour: int = 0
    end_hour: int = 24


@dataclass(frozen=True)
class ScheduleRule:
    """Matches when the request time is in any of ``ranges`` (if given) and in any of ``windows`` (if given)."""

    ranges: tuple[DateRange, ...] = ()
    windows: tuple[WeeklyWindow, ...] = ()


@dataclass(frozen=True)
class Rules:
    """A conjunction: every constrained dimension must match. An empty Rules matches everything.

    ``data`` maps t1..t5 and ``profile`` maps ut1..ut5 to accepted values; ``context`` maps free contextual keys
    (weather, page category...) to accepted values.
    """

    geo: GeoRule = field(default_factory=GeoRule)
    device: DeviceRule = field(default_factory=DeviceRule)
    data: dict[str, tuple[str, ...]] = field(default_factory=dict)
    profile: dict[str, tuple[str, ...]] = field(default_factory=dict)
    segments: SegmentRule = field(default_factory=SegmentRule)
    schedule: ScheduleRule = field(default_factory=ScheduleRule)
    context: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class TreeNode:
    """A node of an experience's decision tree: rules, then either children or a leaf AdTheme."""

    name: str
    rules: Rules
    children: tuple[TreeNode, ...] = ()
    theme: str | None = None


@dataclass(frozen=True)
class Experience:
    """An ad tag. ``tree`` holds the root's children; ``else_theme`` is the implicit "everything else" branch.

    Tag experiences map a tag value (``tag=4`` in the request) to an AdTheme in ``tags``.
    """

    id: str
    sizes: tuple[str, ...]
    formats: tuple[str, ...]
    targeting: str
    tree: tuple[TreeNode, ...] = ()
    else_theme: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AdTheme:
    id: str
    group: str
    weight: float = 0.0


@dataclass(frozen=True)
class CreativeGroup:
    """Creatives rotated by ``rotation``; ``weights`` (percent, summing to 100) only for ``weighted``."""

    id: str
    rotation: str
    creatives: tuple[str, ...]
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ProductFilter:
    """Keep products whose indexed ``column`` value is in ``values`` (static) or equals the request signal
    ``source`` (dynamic). ``exclude`` inverts it. When ``source`` is absent from the request the filter is skipped
    unless ``required`` (then nothing is eligible). Numeric columns take ``min``/``max`` instead of values."""

    column: str
    values: tuple[str, ...] = ()
    source: str | None = None
    exclude: bool = False
    required: bool = False
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Boost:
    """Multiply a product's score by ``factor`` when ``column`` matches: a static value list, a numeric range
    (``min``/``max``), or (request-dependent) the value of the request signal ``source``.

    With ``scale`` the product's own value of ``column`` is the multiplier, raised to ``factor`` (a feed column
    such as popularity or margin; values that are not finite non-negative numbers count as 1, i.e. neutral)."""

    column: str
    factor: float
    values: tuple[str, ...] = ()
    source: str | None = None
    min: float | None = None
    max: float | None = None
    scale: bool = False

    @property
    def is_static(self) -> bool:
        return self.source is None


@dataclass(frozen=True)
class ProductSelection:
    filters: tuple[ProductFilter, ...] = ()
    boosts: tuple[Boost, ...] = ()
    top_n: int = 200


@dataclass(frozen=True)
class Variant:
    """One variant of an assembled creative's slot: its content fields (``text``, ``url``...), optional rules
    (shown only where they match, e.g. a winter image where context.weather=cold) and a display name."""

    id: str
    content: dict[str, str]
    rules: Rules | None = None


@dataclass(frozen=True)
class MediaFile:
    """A VAST media file."""

    url: str
    type: str
    width: int
    height: int
    bitrate: int | None = None
    delivery: str = "progressive"


@dataclass(frozen=True)
class Creative:
    """A creative. ``type`` decides which fields are used:

    - ``standard``: ``assets`` (headline, image, cta... fixed) and ``landing_url``;
    - ``dynamic``: ``template`` + ``products`` (filters, boosts, top_n); the landing URL is the product's link;
    - ``assembled``: ``template`` + ``slots`` (slot name -> variants) + ``exclusions`` (pairs of variant ids that
      must not appear together) + ``landing_url``; optional ``products`` feeds live price/offer fields;
    - ``video``: ``media`` files, ``duration`` seconds, ``landing_url``.
    """

    id: str
    type: str
    name: str = ""
    size: str | None = None
    template: str | None = None
    landing_url: str | None = None
    assets: dict[str, str] = field(default_factory=dict)
    products: ProductSelection | None = None
    slots: dict[str, tuple[Variant, ...]] = field(default_factory=dict)
    exclusions: tuple[tuple[str, str], ...] = ()
    media: tuple[MediaFile, ...] = ()
    duration: int | None = None


@dataclass(frozen=True)
class FeedSpec:
    """How the campaign reads its product feed.

    ``columns`` maps a canonical field (id, title, price...) to the feed's header name when it differs from the
    canonical or Google Merchant Center name; ``indexes`` lists the columns that get inverted indexes; ``keep``
    lists extra columns the snapshot stores for rendering (a snapshot keeps only the columns decisions and
    templates use, see docs/snapshot-format.md); ``max_bad_share`` rejects the whole feed when more rows than
    that share are bad.
    """

    columns: dict[str, str] = field(default_factory=dict)
    indexes: tuple[str, ...] = ("category", "brand", "availability", "country")
    keep: tuple[str, ...] = ()
    max_bad_share: float = 0.05
    max_field_bytes: int = 4096


@dataclass(frozen=True)
class Learning:
    """How the campaign learns (docs/campaign-config.md, ``learning``): ``dimensions`` are the request signals the
    learner conditions on (region, device, country, daypart, context.<key>; dco.learning.context)."""

    dimensions: tuple[str, ...] = ("region", "device")


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    timezone: str
    objective: str
    holdout: float
    default_creative: str | None
    experiences: tuple[Experience, ...]
    themes: dict[str, AdTheme]
    groups: dict[str, CreativeGroup]
    creatives: dict[str, Creative]
    feed: FeedSpec = field(default_factory=FeedSpec)
    scoring: dict[str, float] = field(default_factory=dict)
    currency: str = "USD"
    prior: tuple[float, float] = (1.0, 1.0)
    learning: Learning = field(default_factory=Learning)

    def experience(self, experience_id: str) -> Experience | None:
        for exp in self.experiences:
            if exp.id == experience_id:
                return exp
        return None
