"""Campaign config loader and validator: JSON or YAML text in, a frozen :class:`dco.campaign.Campaign` out.

Data flow::

    text (str | bytes) --decode/parse (json | yaml.safe_load, duplicate keys rejected)--> plain mapping
      --_Checker: walk every section, collect ConfigError(path, message), normalise values--> Campaign
    load_campaign / campaign_from_dict raise the first error; validate_campaign returns them all.

The walk is one pass in a fixed order (top-level scalars, scoring, feed, experiences, themes, groups, creatives,
default_creative). Before it starts, the ids of themes, groups and creatives are collected, so a cross-reference
is checked where it is written and its error carries that path (``experiences[0].tree[2].theme``).

Normalisation (docs/signals.md): targeting values are ``str(value).casefold()``; country codes (``geo.country``
and values of the feed ``country`` column) are upper-cased and checked against ISO 3166-1 alpha-2; weekday names
become 0..6; date-times become ISO local strings. Unknown keys are errors, so a typo never silently passes.
The full format is documented in docs/campaign-config.md.

Example::

    >>> campaign = load_campaign(open("examples/retail/campaign.yaml").read())  # doctest: +SKIP
    >>> campaign.experience("retail-main").sizes                                # doctest: +SKIP
    ('300x250', '728x90')
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dco.campaign import (
    AD_FORMATS,
    DATA_KEYS,
    DEVICE_TYPES,
    OBJECTIVES,
    PROFILE_KEYS,
    REQUEST_SIGNALS,
    ROTATION_METHODS,
    TARGETING_MODES,
    AdTheme,
    Boost,
    Campaign,
    Creative,
    CreativeGroup,
    DateRange,
    DeviceRule,
    Experience,
    FeedSpec,
    GeoRule,
    Learning,
    MediaFile,
    ProductFilter,
    ProductSelection,
    Rules,
    ScheduleRule,
    SegmentRule,
    TreeNode,
    Variant,
    WeeklyWindow,
)
from dco.codes import COUNTRY_CODES, COUNTRY_HINTS, CURRENCY_CODES
from dco.errors import ConfigError
from dco.learning.context import MAX_DIMENSIONS, is_dimension

__all__ = [
    "CREATIVE_TYPES",
    "FEED_COLUMNS",
    "NUMERIC_COLUMNS",
    "SCORING_DIMENSIONS",
    "campaign_from_dict",
    "load_campaign",
    "parse_config_text",
    "validate_campaign",
]

ID_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"
_ID = re.compile(ID_PATTERN)
_SIZE = re.compile(r"\d+x\d+")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # template, slot, asset and context key names
_MIME = re.compile(r"[a-z]+/[a-z0-9.+-]+")
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")

CREATIVE_TYPES: tuple[str, ...] = ("standard", "dynamic", "assembled", "video")
SCORING_DIMENSIONS: tuple[str, ...] = (
    "geo.country", "geo.region", "geo.city", "geo.postal", "geo.dma",
    "device.type", "device.browser", "device.os",
    "data", "profile", "segments", "schedule", "context",
)
FEED_COLUMNS: tuple[str, ...] = (
    "id", "title", "description", "link", "image_link", "additional_image_link", "price", "sale_price",
    "availability", "category", "brand", "provider", "country",
    "custom_label_0", "custom_label_1", "custom_label_2", "custom_label_3", "custom_label_4",
)
NUMERIC_COLUMNS: tuple[str, ...] = ("price", "sale_price")
COUNTRY_COLUMNS: tuple[str, ...] = ("country",)
WEEKDAYS: dict[str, int] = {
    "mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6,
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6,
}
MEDIA_DELIVERIES: tuple[str, ...] = ("progressive", "streaming")
MAX_TOP_N = 10_000
MAX_TREE_DEPTH = 32
MAX_TREE_NODES = 100_000
WEIGHT_TOTAL = 100.0
WEIGHT_TOLERANCE = 1e-6

_TOP_REQUIRED = ("id", "timezone", "experiences", "themes", "groups", "creatives")
_TOP_OPTIONAL = (
    "name", "objective", "holdout", "currency", "default_creative", "prior", "scoring", "feed", "learning",
)
_CREATIVE_COMMON = ("id", "type", "name", "size")
# type -> (required fields, optional fields) besides the common ones
_CREATIVE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "standard": (("landing_url", "assets"), ("template",)),
    "dynamic": (("template", "products"), ()),
    "assembled": (("template", "landing_url", "slots"), ("exclusions", "products")),
    "video": (("landing_url", "duration", "media"), ()),
}


# ----------------------------------------------------------------------------------------------- public API


def load_campaign(text: str | bytes, *, fmt: str | None = None) -> Campaign:
    """Parse and validate a campaign config; raise :class:`ConfigError` for the first problem found.

    ``fmt`` is ``"json"`` or ``"yaml"``; when None the text is read as JSON if it parses as a JSON object,
    else as YAML.

    >>> load_campaign('{"id": "retail", "timezone": "UTC"}')
    Traceback (most recent call last):
    ...
    dco.errors.ConfigError: experiences: required field missing
    """
    return campaign_from_dict(parse_config_text(text, fmt=fmt))


def campaign_from_dict(data: Mapping[str, Any]) -> Campaign:
    """Validate an already parsed config mapping and build the Campaign (first error raised)."""
    checker = _Checker()
    campaign = checker.campaign(data)
    if checker.errors:
        raise checker.errors[0]
    assert campaign is not None
    return campaign


def validate_campaign(data: Mapping[str, Any] | str | bytes) -> list[ConfigError]:
    """Every problem of a config (a parsed mapping, or JSON/YAML text), in walk order; empty when valid."""
    if isinstance(data, str | bytes):
        try:
            data = parse_config_text(data)
        except ConfigError as exc:
            return [exc]
    checker = _Checker()
    checker.campaign(data)
    return list(checker.errors)


def parse_config_text(text: str | bytes, *, fmt: str | None = None) -> Mapping[str, Any]:
    """Decode and parse config text into a mapping (no validation beyond syntax and duplicate keys)."""
    if fmt is not None and fmt not in ("json", "yaml", "yml"):
        raise ValueError(f'fmt must be "json" or "yaml", got {fmt!r}')
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError("", f"config is not UTF-8 text (byte {exc.start})") from None
    text = text.lstrip("\ufeff")
    data: Any
    if fmt == "json":
        data = _parse_json(text)
    elif fmt in ("yaml", "yml"):
        data = _parse_yaml(text)
    else:
        data = None
        if text.lstrip().startswith("{"):
            try:
                data = _parse_json(text)
            except ConfigError:
                data = None
        if not isinstance(data, dict):
            data = _parse_yaml(text)
    if not isinstance(data, Mapping):
        raise ConfigError("", f"expected a mapping at the top level, got {_describe(data)}")
    return data


# ---------------------------------------------------------------------------------------------------- parsing


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {json.dumps(key)}")
        out[key] = value
    return out


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_json_pairs)
    except json.JSONDecodeError as exc:
        raise ConfigError("", f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:  # duplicate key from the hook
        raise ConfigError("", f"invalid JSON: {exc}") from None


_WHITESPACE = re.compile(r"\s")
_CUSTOM_COLUMN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


_STRICT_LOADER: Any = None


def _strict_loader() -> Any:
    """yaml.safe_load's loader, except that a key repeated in one mapping is an error instead of last-one-wins.

    Built on first use: PyYAML is imported only when YAML text is parsed, so the decision core (which reads
    the campaign from a snapshot, or JSON) runs without it (Pyodide, docs/edge.md).
    """
    global _STRICT_LOADER
    if _STRICT_LOADER is not None:
        return _STRICT_LOADER
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class _StrictLoader(base):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                        seen.add(key)
                    except TypeError:  # unhashable key: the base class reports it
                        continue
                    if duplicate:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {_describe(key)}", key_node.start_mark
                        )
            return super().construct_mapping(node, deep=deep)

    _STRICT_LOADER = _StrictLoader
    return _STRICT_LOADER


def _parse_yaml(text: str) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("", "YAML config needs PyYAML (pip install pyyaml); JSON config does not") from None
    try:
        return yaml.load(text, Loader=_strict_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError("", f"invalid YAML: {problem}{where}") from None


# ---------------------------------------------------------------------------------------------------- helpers


def _describe(value: Any) -> str:
    """A value as it would read in the config, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _key(path: str, key: Any) -> str:
    text = str(key)
    if _SIMPLE_KEY.fullmatch(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{json.dumps(text, ensure_ascii=False)}]"


def _at(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _bounds(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return " and ".join(parts)


def _is_scoring_key(key: str) -> bool:
    """A scoring key: a dimension family, or one key of a family (``t1``, ``ut3``, ``context.weather``)."""
    if key in SCORING_DIMENSIONS or key in DATA_KEYS or key in PROFILE_KEYS:
        return True
    prefix, _, rest = key.partition(".")
    return prefix == "context" and bool(_NAME.fullmatch(rest))


def _iso_local(moment: dt.datetime) -> str:
    if moment.second or moment.microsecond:
        return moment.isoformat()
    return moment.isoformat(timespec="minutes")


class _Checker:
    """Walks a parsed config, records every problem as a ConfigError and builds the Campaign records."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []
        self.tree_nodes = 0
        self.theme_ids: set[str] = set()
        self.group_ids: set[str] = set()
        self.creative_ids: set[str] = set()
        self.indexes: tuple[str, ...] | None = FeedSpec().indexes

    def error(self, path: str, message: str) -> None:
        self.errors.append(ConfigError(path, message))

    # -- generic checks ---------------------------------------------------------------------------------

    def mapping(self, value: Any, path: str, *, what: str = "a mapping") -> Mapping[Any, Any] | None:
        if isinstance(value, Mapping):
            return value
        self.error(path, f"expected {what}, got {_describe(value)}")
        return None

    def fields(
        self, data: Mapping[Any, Any], path: str, required: Iterable[str], optional: Iterable[str], note: str = ""
    ) -> None:
        """Unknown keys and missing required keys of a record."""
        required = tuple(required)
        allowed = required + tuple(optional)
        for key in data:
            if not isinstance(key, str) or key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                hint = f' (did you mean "{close[0]}"?)' if close else note
                self.error(_key(path, key), f"unknown field{hint}")
        for key in required:
            if key not in data:
                self.error(_key(path, key), "required field missing")

    def seq(self, value: Any, path: str, *, non_empty: bool = True, what: str = "a list") -> list[Any] | None:
        if not isinstance(value, list | tuple):
            self.error(path, f"expected {what}, got {_describe(value)}")
            return None
        if non_empty and not value:
            self.error(path, f"expected at least one item in {what}")
            return None
        return list(value)

    def string(self, value: Any, path: str) -> str | None:
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, str):
            self.error(path, "expected a non-empty string")
        elif isinstance(value, bool):
            self.error(path, f"expected a string, got {_describe(value)} (quote it in YAML)")
        else:
            self.error(path, f"expected a string, got {_describe(value)}")
        return None

    def ident(self, value: Any, path: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        if not _ID.fullmatch(text):
            self.error(path, f"expected an id matching {ID_PATTERN}, got {_describe(text)}")
            return None
        return text

    def name(self, value: Any, path: str, what: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        if not _NAME.fullmatch(text):
            self.error(path, f"expected a {what} matching {_NAME.pattern}, got {_describe(text)}")
            return None
        return text

    def choice(self, value: Any, path: str, choices: Iterable[str], what: str) -> str | None:
        choices = tuple(choices)
        text = self.string(value, path)
        if text is None:
            return None
        if text not in choices:
            self.error(path, f"unknown {what} {_describe(text)} (expected one of {', '.join(choices)})")
            return None
        return text

    def number(
        self,
        value: Any,
        path: str,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        hi_open: bool = False,
    ) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, f"expected a number, got {_describe(value)}")
            return None
        number = float(value)
        if not math.isfinite(number):
            self.error(path, f"expected a finite number, got {_describe(value)}")
            return None
        too_low = lo is not None and (number <= lo if lo_open else number < lo)
        too_high = hi is not None and (number >= hi if hi_open else number > hi)
        if too_low or too_high:
            self.error(path, f"expected a number {_bounds(lo, hi, lo_open, hi_open)}, got {number:g}")
            return None
        return number

    def integer(self, value: Any, path: str, *, lo: int | None = None, hi: int | None = None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"expected an integer, got {_describe(value)}")
            return None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.error(path, f"expected an integer {_bounds(lo, hi, False, False)}, got {value}")
            return None
        return value

    def boolean(self, value: Any, path: str) -> bool | None:
        if isinstance(value, bool):
            return value
        self.error(path, f"expected true or false, got {_describe(value)}")
        return None

    def url(self, value: Any, path: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        try:
            parts = urlsplit(text)
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.netloc
            or _WHITESPACE.search(text) is not None
        ):
            self.error(path, f"expected an absolute http(s) URL, got {_describe(text)}")
            return None
        return text

    def ref(self, value: Any, path: str, known: set[str], what: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        if text not in known:
            self.error(path, f"unknown {what} {_describe(text)}")
            return None
        return text

    def unique(self, seen: dict[str, str], key: str, path: str, what: str) -> None:
        """Record ``key`` at ``path``; a second occurrence is an error naming the first."""
        if key in seen:
            self.error(path, f"duplicate {what} {_describe(key)} (first at {seen[key]})")
        else:
            seen[key] = path

    def country(self, value: Any, path: str) -> str | None:
        text = self.target_value(value, path)
        if text is None:
            return None
        code = text.upper()
        if code not in COUNTRY_CODES:
            hint = COUNTRY_HINTS.get(code)
            suffix = f' (did you mean "{hint}"?)' if hint else " (expected an ISO 3166-1 alpha-2 country)"
            self.error(path, f"unknown ISO code {_describe(code)}{suffix}")
            return None
        return code

    def target_value(self, value: Any, path: str) -> str | None:
        """One targeting value as written: a string or an integer (YAML reads 98101 as a number)."""
        if isinstance(value, bool):
            self.error(path, f"expected a string, got {_describe(value)} (quote it in YAML)")
            return None
        if isinstance(value, int):
            return str(value)
        return self.string(value, path)

    def values(self, value: Any, path: str, *, country: bool = False) -> tuple[str, ...] | None:
        """A targeting value list, normalised. A single scalar is shorthand for a one-item list."""
        items: list[Any]
        if isinstance(value, list | tuple):
            items = list(value)
            if not items:
                self.error(path, "expected at least one value")
                return None
            paths = [_at(path, i) for i in range(len(items))]
        elif isinstance(value, str | int) and not isinstance(value, bool):
            items, paths = [value], [path]
        else:
            self.error(path, f"expected a list of values, got {_describe(value)}")
            return None
        out: list[str] = []
        for item, item_path in zip(items, paths, strict=True):
            norm = self.country(item, item_path) if country else self.target_value(item, item_path)
            if norm is None:
                continue
            if not country:
                norm = norm.casefold()
            if norm not in out:
                out.append(norm)
        return tuple(out)

    def signal(self, value: Any, path: str) -> str | None:
        """A request signal name for ``from``: one of REQUEST_SIGNALS or ``context.<key>``."""
        text = self.string(value, path)
        if text is None:
            return None
        if text in REQUEST_SIGNALS:
            return text
        prefix, _, key = text.partition(".")
        if prefix == "context" and _NAME.fullmatch(key.casefold()):
            return f"context.{key.casefold()}"
        self.error(
            path,
            f"unknown request signal {_describe(text)} (expected one of {', '.join(REQUEST_SIGNALS)} "
            "or context.<key>)",
        )
        return None

    # -- campaign ---------------------------------------------------------------------------------------

    def collect_ids(self, value: Any) -> set[str]:
        out: set[str] = set()
        if isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                    out.add(item["id"])
        return out

    def campaign(self, data: Any) -> Campaign | None:
        top = self.mapping(data, "", what="a mapping at the top level")
        if top is None:
            return None
        self.fields(top, "", _TOP_REQUIRED, _TOP_OPTIONAL)
        self.theme_ids = self.collect_ids(top.get("themes"))
        self.group_ids = self.collect_ids(top.get("groups"))
        self.creative_ids = self.collect_ids(top.get("creatives"))

        campaign_id = self.ident(top["id"], "id") if "id" in top else None
        name = self.string(top["name"], "name") if "name" in top else campaign_id
        timezone = self.timezone(top["timezone"], "timezone") if "timezone" in top else None
        objective = (
            self.choice(top["objective"], "objective", OBJECTIVES, "objective") if "objective" in top else "click"
        )
        holdout = self.number(top["holdout"], "holdout", lo=0.0, hi=1.0, hi_open=True) if "holdout" in top else 0.0
        currency = self.currency(top["currency"], "currency") if "currency" in top else "USD"
        prior = self.prior(top["prior"], "prior") if "prior" in top else (1.0, 1.0)
        scoring = self.scoring(top["scoring"], "scoring") if "scoring" in top else {}
        feed = self.feed(top["feed"], "feed") if "feed" in top else FeedSpec()
        learning = self.learning(top["learning"], "learning") if "learning" in top else Learning()

        experiences = self.experiences(top.get("experiences"), "experiences") if "experiences" in top else ()
        themes = self.themes(top["themes"], "themes") if "themes" in top else {}
        groups = self.groups(top["groups"], "groups") if "groups" in top else {}
        creatives = self.creatives(top["creatives"], "creatives") if "creatives" in top else {}
        default_creative = None
        if "default_creative" in top:
            default_creative = self.ref(top["default_creative"], "default_creative", self.creative_ids, "creative")

        if self.errors:
            return None
        return Campaign(
            id=campaign_id or "",
            name=name or "",
            timezone=timezone or "UTC",
            objective=objective or "click",
            holdout=holdout or 0.0,
            default_creative=default_creative,
            experiences=experiences,
            themes=themes,
            groups=groups,
            creatives=creatives,
            feed=feed or FeedSpec(),
            scoring=scoring or {},
            currency=currency or "USD",
            prior=prior or (1.0, 1.0),
            learning=learning or Learning(),
        )

    def learning(self, value: Any, path: str) -> Learning | None:
        """``learning: {dimensions: [region, device, daypart, context.<key>]}`` (at most 4, no repeats; an empty
        list learns no context)."""
        data = self.mapping(value, path)
        if data is None:
            return None
        self.fields(data, path, (), ("dimensions",))
        if "dimensions" not in data:
            return Learning()
        dims_path = _key(path, "dimensions")
        items = self.seq(data["dimensions"], dims_path, non_empty=False)
        if items is None:
            return None
        found: list[str] = []
        for i, item in enumerate(items):
            item_path = _at(dims_path, i)
            text = self.string(item, item_path)
            if text is None:
                continue
            if not is_dimension(text):
                self.error(item_path, f"unknown learning dimension {_describe(text)} (expected region, device, "
                                      "country, daypart or context.<key> with a key of 1-32 a-z, 0-9, _)")
            elif text in found:
                self.error(item_path, f"dimension {_describe(text)} is listed twice")
            else:
                found.append(text)
        if len(items) > MAX_DIMENSIONS:
            self.error(dims_path, f"at most {MAX_DIMENSIONS} learning dimensions, got {len(items)}")
        return Learning(tuple(found))

    def timezone(self, value: Any, path: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        try:
            ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError):
            self.error(path, f"unknown time zone {_describe(text)} (expected an IANA name like America/New_York)")
            return None
        return text

    def currency(self, value: Any, path: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        code = text.upper()
        if code not in CURRENCY_CODES:
            self.error(path, f"unknown ISO code {_describe(code)} (expected an ISO 4217 currency)")
            return None
        return code

    def prior(self, value: Any, path: str) -> tuple[float, float] | None:
        items = self.seq(value, path, what="a list [alpha, beta]")
        if items is None:
            return None
        if len(items) != 2:
            self.error(path, f"expected a list [alpha, beta] of two numbers, got {len(items)} items")
            return None
        alpha = self.number(items[0], _at(path, 0), lo=0.0, lo_open=True)
        beta = self.number(items[1], _at(path, 1), lo=0.0, lo_open=True)
        if alpha is None or beta is None:
            return None
        return (alpha, beta)

    def scoring(self, value: Any, path: str) -> dict[str, float]:
        data = self.mapping(value, path)
        if data is None:
            return {}
        out: dict[str, float] = {}
        for key, weight in data.items():
            key_path = _key(path, key)
            if not isinstance(key, str) or not _is_scoring_key(key):
                self.error(
                    key_path,
                    f"unknown dimension (expected one of {', '.join(SCORING_DIMENSIONS)}, "
                    "a data or profile key like t1 or ut1, or context.<key>)",
                )
                continue
            number = self.number(weight, key_path, lo=0.0)
            if number is not None:
                out[key] = number
        return out

    # -- feed -------------------------------------------------------------------------------------------

    def feed_column(self, value: Any, path: str) -> str | None:
        return self.choice(value, path, FEED_COLUMNS, "feed column")

    def custom_column(self, value: Any, path: str) -> str | None:
        """A canonical feed column or a custom one (its lower-case header name)."""
        text = self.string(value, path)
        if text is None:
            return None
        if text not in FEED_COLUMNS and not _CUSTOM_COLUMN.fullmatch(text):
            self.error(path, f'"{text}" is not a feed column name (lower-case letters, digits, _ and -)')
            return None
        return text

    def feed(self, value: Any, path: str) -> FeedSpec:
        data = self.mapping(value, path)
        if data is None:
            self.indexes = None
            return FeedSpec()
        self.fields(data, path, (), ("columns", "indexes", "keep", "max_bad_share", "max_field_bytes"))
        defaults = FeedSpec()
        columns: dict[str, str] = {}
        if "columns" in data:
            mapping = self.mapping(data["columns"], _key(path, "columns"))
            headers: dict[str, str] = {}
            for canonical, header in (mapping or {}).items():
                key_path = _key(_key(path, "columns"), canonical)
                if canonical not in FEED_COLUMNS:
                    self.error(key_path, f"unknown feed column (expected one of {', '.join(FEED_COLUMNS)})")
                    continue
                text = self.string(header, key_path)
                if text is None:
                    continue
                self.unique(headers, text, key_path, "feed header")
                columns[canonical] = text
        indexes = defaults.indexes
        if "indexes" in data:
            index_path = _key(path, "indexes")
            items = self.seq(data["indexes"], index_path, non_empty=False)
            found: list[str] = []
            seen: dict[str, str] = {}
            bad = items is None
            for i, item in enumerate(items or []):
                column = self.feed_column(item, _at(index_path, i))
                if column is None:
                    bad = True
                    continue
                if column in NUMERIC_COLUMNS:
                    self.error(_at(index_path, i), f"{_describe(column)} is numeric: filter it with min/max")
                    bad = True
                    continue
                self.unique(seen, column, _at(index_path, i), "column")
                if column not in found:
                    found.append(column)
            indexes = tuple(found)
            self.indexes = None if bad else indexes
        max_bad_share = defaults.max_bad_share
        if "max_bad_share" in data:
            share = self.number(data["max_bad_share"], _key(path, "max_bad_share"), lo=0.0, hi=1.0)
            max_bad_share = defaults.max_bad_share if share is None else share
        max_field_bytes = defaults.max_field_bytes
        if "max_field_bytes" in data:
            size = self.integer(data["max_field_bytes"], _key(path, "max_field_bytes"), lo=1, hi=1 << 20)
            max_field_bytes = defaults.max_field_bytes if size is None else size
        keep: list[str] = []
        if "keep" in data:
            keep_path = _key(path, "keep")
            for i, item in enumerate(self.seq(data["keep"], keep_path, non_empty=False) or []):
                column = self.custom_column(item, _at(keep_path, i))
                if column is not None and column not in keep:
                    keep.append(column)
        return FeedSpec(
            columns=columns, indexes=indexes, keep=tuple(keep), max_bad_share=max_bad_share,
            max_field_bytes=max_field_bytes
        )

    # -- rules ------------------------------------------------------------------------------------------

    def rules(self, value: Any, path: str) -> Rules:
        data = self.mapping(value, path)
        if data is None:
            return Rules()
        self.fields(data, path, (), ("geo", "device", "data", "profile", "segments", "schedule", "context"))
        geo = self.geo(data["geo"], _key(path, "geo")) if "geo" in data else GeoRule()
        device = self.device(data["device"], _key(path, "device")) if "device" in data else DeviceRule()
        keyed = self.keyed_values
        data_rule = keyed(data["data"], _key(path, "data"), DATA_KEYS) if "data" in data else {}
        profile = keyed(data["profile"], _key(path, "profile"), PROFILE_KEYS) if "profile" in data else {}
        segments = self.segments(data["segments"], _key(path, "segments")) if "segments" in data else SegmentRule()
        schedule = self.schedule(data["schedule"], _key(path, "schedule")) if "schedule" in data else ScheduleRule()
        context = keyed(data["context"], _key(path, "context"), None) if "context" in data else {}
        return Rules(
            geo=geo, device=device, data=data_rule, profile=profile, segments=segments, schedule=schedule,
            context=context,
        )

    def geo(self, value: Any, path: str) -> GeoRule:
        data = self.mapping(value, path)
        if data is None:
            return GeoRule()
        keys = ("country", "region", "city", "postal", "dma")
        self.fields(data, path, (), keys)
        got = {
            key: self.values(data[key], _key(path, key), country=key == "country") or ()
            for key in keys
            if key in data
        }
        return GeoRule(**got)

    def device(self, value: Any, path: str) -> DeviceRule:
        data = self.mapping(value, path)
        if data is None:
            return DeviceRule()
        self.fields(data, path, (), ("type", "browser", "os"))
        got: dict[str, tuple[str, ...]] = {}
        for key in ("type", "browser", "os"):
            if key in data:
                got[key] = self.values(data[key], _key(path, key)) or ()
        for i, kind in enumerate(got.get("type", ())):
            if kind not in DEVICE_TYPES:
                where = _at(_key(path, "type"), i) if isinstance(data["type"], list | tuple) else _key(path, "type")
                self.error(where, f"unknown device type {_describe(kind)} (expected one of {', '.join(DEVICE_TYPES)})")
        return DeviceRule(**got)

    def keyed_values(
        self, value: Any, path: str, keys: tuple[str, ...] | None
    ) -> dict[str, tuple[str, ...]]:
        """``data`` (t1..t5), ``profile`` (ut1..ut5) or ``context`` (free keys) -> value lists."""
        data = self.mapping(value, path)
        if data is None:
            return {}
        if keys is not None:
            self.fields(data, path, (), keys)
        out: dict[str, tuple[str, ...]] = {}
        for key, values in data.items():
            key_path = _key(path, key)
            if keys is not None:
                if key not in keys:
                    continue  # reported by fields()
                norm_key = key
            else:
                if not isinstance(key, str) or not _NAME.fullmatch(key.casefold()):
                    self.error(key_path, f"expected a context key matching {_NAME.pattern}, got {_describe(key)}")
                    continue
                norm_key = key.casefold()
                if norm_key in out:
                    self.error(key_path, f"duplicate context key {_describe(norm_key)}")
                    continue
            got = self.values(values, key_path)
            if got is not None:
                out[norm_key] = got
        return out

    def segments(self, value: Any, path: str) -> SegmentRule:
        data = self.mapping(value, path)
        if data is None:
            return SegmentRule()
        self.fields(data, path, (), ("any", "all", "exclude"))
        got = {key: self.values(data[key], _key(path, key)) or () for key in ("any", "all", "exclude") if key in data}
        return SegmentRule(**got)

    def schedule(self, value: Any, path: str) -> ScheduleRule:
        data = self.mapping(value, path)
        if data is None:
            return ScheduleRule()
        self.fields(data, path, (), ("ranges", "windows"))
        ranges: list[DateRange] = []
        windows: list[WeeklyWindow] = []
        if "ranges" in data:
            for i, item in enumerate(self.seq(data["ranges"], _key(path, "ranges")) or []):
                got = self.date_range(item, _at(_key(path, "ranges"), i))
                if got is not None:
                    ranges.append(got)
        if "windows" in data:
            for i, item in enumerate(self.seq(data["windows"], _key(path, "windows")) or []):
                window = self.window(item, _at(_key(path, "windows"), i))
                if window is not None:
                    windows.append(window)
        return ScheduleRule(ranges=tuple(ranges), windows=tuple(windows))

    def local_datetime(self, value: Any, path: str) -> dt.datetime | None:
        moment: dt.datetime | None = None
        if isinstance(value, dt.datetime):
            moment = value
        elif isinstance(value, dt.date):
            moment = dt.datetime(value.year, value.month, value.day)
        elif isinstance(value, str):
            try:
                moment = dt.datetime.fromisoformat(value)
            except ValueError:
                moment = None
        if moment is None:
            self.error(path, f"expected an ISO local date-time like 2026-12-01T00:00, got {_describe(value)}")
            return None
        if moment.tzinfo is not None:
            self.error(path, f"expected a local date-time without UTC offset (the campaign time zone applies), "
                             f"got {_describe(value if isinstance(value, str) else moment.isoformat())}")
            return None
        return moment

    def date_range(self, value: Any, path: str) -> DateRange | None:
        data = self.mapping(value, path)
        if data is None:
            return None
        self.fields(data, path, (), ("start", "end"))
        if "start" not in data and "end" not in data:
            self.error(path, "expected start, end or both")
            return None
        start = self.local_datetime(data["start"], _key(path, "start")) if "start" in data else None
        end = self.local_datetime(data["end"], _key(path, "end")) if "end" in data else None
        if start is not None and end is not None and not start < end:
            self.error(_key(path, "end"), f"must be after start ({_iso_local(start)})")
            return None
        return DateRange(
            start=_iso_local(start) if start is not None else None,
            end=_iso_local(end) if end is not None else None,
        )

    def window(self, value: Any, path: str) -> WeeklyWindow | None:
        data = self.mapping(value, path)
        if data is None:
            return None
        self.fields(data, path, (), ("days", "start_hour", "end_hour"))
        days: tuple[int, ...] = WeeklyWindow().days
        if "days" in data:
            days_path = _key(path, "days")
            found: set[int] = set()
            for i, day in enumerate(self.seq(data["days"], days_path) or []):
                number = self.weekday(day, _at(days_path, i))
                if number is not None:
                    found.add(number)
            days = tuple(sorted(found))
        start = self.integer(data["start_hour"], _key(path, "start_hour"), lo=0, hi=24) if "start_hour" in data else 0
        end = self.integer(data["end_hour"], _key(path, "end_hour"), lo=0, hi=24) if "end_hour" in data else 24
        if start is None or end is None:
            return None
        if not start < end:
            self.error(
                _key(path, "end_hour"),
                f"must be greater than start_hour ({start}); split an overnight window in two",
            )
            return None
        return WeeklyWindow(days=days, start_hour=start, end_hour=end)

    def weekday(self, value: Any, path: str) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value <= 6:
                return value
        elif isinstance(value, str) and value.casefold() in WEEKDAYS:
            return WEEKDAYS[value.casefold()]
        self.error(path, f"expected a weekday mon..sun or 0..6 (0 = Monday), got {_describe(value)}")
        return None

    # -- experiences ------------------------------------------------------------------------------------

    def experiences(self, value: Any, path: str) -> tuple[Experience, ...]:
        items = self.seq(value, path, what="a list of experiences")
        out: list[Experience] = []
        seen: dict[str, str] = {}
        for i, item in enumerate(items or []):
            exp = self.experience(item, _at(path, i), seen)
            if exp is not None:
                out.append(exp)
        return tuple(out)

    def experience(self, value: Any, path: str, seen: dict[str, str]) -> Experience | None:
        data = self.mapping(value, path)
        if data is None:
            return None
        self.fields(data, path, ("id", "sizes", "formats", "targeting"), ("tree", "else", "tags"))
        exp_id = self.ident(data["id"], _key(path, "id")) if "id" in data else None
        if exp_id is not None:
            self.unique(seen, exp_id, _key(path, "id"), "id")
        sizes = self.size_list(data["sizes"], _key(path, "sizes")) if "sizes" in data else ()
        formats: list[str] = []
        if "formats" in data:
            formats_path = _key(path, "formats")
            for i, item in enumerate(self.seq(data["formats"], formats_path) or []):
                fmt = self.choice(item, _at(formats_path, i), AD_FORMATS, "format")
                if fmt is None:
                    continue
                if fmt in formats:
                    self.error(_at(formats_path, i), f"duplicate format {_describe(fmt)}")
                    continue
                formats.append(fmt)
        mode = self.choice(data["targeting"], _key(path, "targeting"), TARGETING_MODES, "targeting mode") \
            if "targeting" in data else None
        else_theme = self.ref(data["else"], _key(path, "else"), self.theme_ids, "theme") if "else" in data else None
        tree: tuple[TreeNode, ...] = ()
        tags: dict[str, str] = {}
        if mode == "tree":
            if "tags" in data:
                self.error(_key(path, "tags"), "only for targeting: tag")
            tree_path = _key(path, "tree")
            if "tree" in data:
                items = self.seq(data["tree"], tree_path, non_empty=False)
                tree = self.nodes(items or [], tree_path, depth=1)
                if items is not None and not items and "else" not in data:
                    self.error(tree_path, "an empty tree needs an else theme")
            elif "else" not in data:
                self.error(tree_path, "required field missing (or give an else theme)")
        elif mode == "tag":
            if "tree" in data:
                self.error(_key(path, "tree"), "only for targeting: tree")
            if "tags" in data:
                tags = self.tags(data["tags"], _key(path, "tags"))
            else:
                self.error(_key(path, "tags"), "required field missing")
        return Experience(
            id=exp_id or "",
            sizes=sizes,
            formats=tuple(formats),
            targeting=mode or "tree",
            tree=tree,
            else_theme=else_theme,
            tags=tags,
        )

    def size_list(self, value: Any, path: str) -> tuple[str, ...]:
        out: list[str] = []
        for i, item in enumerate(self.seq(value, path) or []):
            size = self.size(item, _at(path, i))
            if size is None:
                continue
            if size in out:
                self.error(_at(path, i), f"duplicate size {_describe(size)}")
                continue
            out.append(size)
        return tuple(out)

    def size(self, value: Any, path: str) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        match = _SIZE.fullmatch(text)
        if match is None or text.startswith("0") or "x0" in text:
            self.error(path, f"expected a size WxH like 300x250, got {_describe(text)}")
            return None
        return text

    def tags(self, value: Any, path: str) -> dict[str, str]:
        data = self.mapping(value, path)
        if data is None:
            return {}
        if not data:
            self.error(path, "expected at least one tag")
            return {}
        out: dict[str, str] = {}
        for key, theme in data.items():
            key_path = _key(path, key)
            if isinstance(key, bool) or not isinstance(key, str | int) or not str(key).strip():
                self.error(key_path, f"expected a tag value (string or integer), got {_describe(key)}")
                continue
            tag = str(key).casefold()
            if tag in out:
                self.error(key_path, f"duplicate tag {_describe(tag)}")
                continue
            ref = self.ref(theme, key_path, self.theme_ids, "theme")
            if ref is not None:
                out[tag] = ref
        return out

    def nodes(self, items: list[Any], path: str, depth: int) -> tuple[TreeNode, ...]:
        out: list[TreeNode] = []
        names: dict[str, str] = {}
        for i, item in enumerate(items):
            node = self.node(item, _at(path, i), depth, names)
            if node is not None:
                out.append(node)
        return tuple(out)

    def node(self, value: Any, path: str, depth: int, names: dict[str, str]) -> TreeNode | None:
        self.tree_nodes += 1
        if self.tree_nodes > MAX_TREE_NODES:
            if self.tree_nodes == MAX_TREE_NODES + 1:
                self.error(path, f"too many tree nodes (at most {MAX_TREE_NODES})")
            return None
        data = self.mapping(value, path)
        if data is None:
            return None
        self.fields(data, path, ("name",), ("rules", "theme", "children"))
        name = self.string(data["name"], _key(path, "name")) if "name" in data else None
        if name is not None:
            self.unique(names, name, _key(path, "name"), "node name")
        rules = self.rules(data["rules"], _key(path, "rules")) if "rules" in data else Rules()
        theme: str | None = None
        children: tuple[TreeNode, ...] = ()
        if "theme" in data and "children" in data:
            self.error(path, "has both theme and children (a leaf has a theme, a branch has children)")
        elif "theme" in data:
            theme = self.ref(data["theme"], _key(path, "theme"), self.theme_ids, "theme")
        elif "children" in data:
            children_path = _key(path, "children")
            if depth >= MAX_TREE_DEPTH:
                self.error(children_path, f"tree too deep (at most {MAX_TREE_DEPTH} levels)")
            else:
                items = self.seq(data["children"], children_path, what="a list of nodes")
                children = self.nodes(items or [], children_path, depth + 1)
        else:
            self.error(path, "needs a theme (leaf) or children (branch)")
        return TreeNode(name=name or "", rules=rules, children=children, theme=theme)

    # -- themes and groups ------------------------------------------------------------------------------

    def themes(self, value: Any, path: str) -> dict[str, AdTheme]:
        out: dict[str, AdTheme] = {}
        seen: dict[str, str] = {}
        for i, item in enumerate(self.seq(value, path, non_empty=False, what="a list of themes") or []):
            item_path = _at(path, i)
            data = self.mapping(item, item_path)
            if data is None:
                continue
            self.fields(data, item_path, ("id", "group"), ("weight",))
            theme_id = self.ident(data["id"], _key(item_path, "id")) if "id" in data else None
            if theme_id is not None:
                self.unique(seen, theme_id, _key(item_path, "id"), "id")
            group = self.ref(data["group"], _key(item_path, "group"), self.group_ids, "group") \
                if "group" in data else None
            weight = self.number(data["weight"], _key(item_path, "weight"), lo=0.0) if "weight" in data else 0.0
            if theme_id is not None and theme_id not in out:
                out[theme_id] = AdTheme(id=theme_id, group=group or "", weight=weight or 0.0)
        return out

    def groups(self, value: Any, path: str) -> dict[str, CreativeGroup]:
        out: dict[str, CreativeGroup] = {}
        seen: dict[str, str] = {}
        for i, item in enumerate(self.seq(value, path, non_empty=False, what="a list of groups") or []):
            item_path = _at(path, i)
            group = self.group(item, item_path, seen)
            if group is not None and group.id not in out:
                out[group.id] = group
        return out

    def group(self, value: Any, path: str, seen: dict[str, str]) -> CreativeGroup | None:
        data = self.mapping(value, path)
        if data is None:
            return None
        self.fields(data, path, ("id", "creatives"), ("rotation", "weights"))
        group_id = self.ident(data["id"], _key(path, "id")) if "id" in data else None
        if group_id is not None:
            self.unique(seen, group_id, _key(path, "id"), "id")
        rotation = self.choice(data["rotation"], _key(path, "rotation"), ROTATION_METHODS, "rotation") \
            if "rotation" in data else "algo"
        creatives: list[str] = []
        if "creatives" in data:
            creatives_path = _key(path, "creatives")
            for i, item in enumerate(self.seq(data["creatives"], creatives_path) or []):
                ref = self.ref(item, _at(creatives_path, i), self.creative_ids, "creative")
                if ref is None:
                    continue
                if ref in creatives:
                    self.error(_at(creatives_path, i), f"duplicate creative {_describe(ref)}")
                    continue
                creatives.append(ref)
        weights: dict[str, float] = {}
        weights_path = _key(path, "weights")
        if "weights" in data and rotation is not None and rotation != "weighted":
            self.error(weights_path, "only for rotation: weighted")
        elif rotation == "weighted":
            if "weights" not in data:
                self.error(weights_path, "required for rotation: weighted")
            else:
                weights = self.weights(data["weights"], weights_path, data.get("creatives"), creatives)
        return CreativeGroup(id=group_id or "", rotation=rotation or "algo", creatives=tuple(creatives), weights=weights)

    def weights(self, value: Any, path: str, raw_creatives: Any, creatives: list[str]) -> dict[str, float]:
        data = self.mapping(value, path)
        if data is None:
            return {}
        listed = {c for c in (raw_creatives if isinstance(raw_creatives, list | tuple) else []) if isinstance(c, str)}
        out: dict[str, float] = {}
        bad = False
        for key, weight in data.items():
            key_path = _key(path, key)
            if key not in listed:
                self.error(key_path, "not one of this group's creatives")
                bad = True
                continue
            number = self.number(weight, key_path, lo=0.0)
            if number is None:
                bad = True
                continue
            out[key] = number
        missing = [c for c in creatives if c not in data]
        if missing:
            self.error(path, f"no weight for creative {_describe(missing[0])} (every creative needs one)")
            return out
        total = math.fsum(out.values())
        if not bad and abs(total - WEIGHT_TOTAL) > WEIGHT_TOLERANCE:
            self.error(path, f"weights must sum to 100, got {total:g}")
        return out

    # -- creatives --------------------------------------------------------------------------------------

    def creatives(self, value: Any, path: str) -> dict[str, Creative]:
        out: dict[str, Creative] = {}
        seen: dict[str, str] = {}
        for i, item in enumerate(self.seq(value, path, non_empty=False, what="a list of creatives") or []):
            creative = self.creative(item, _at(path, i), seen)
            if creative is not None and creative.id not in out:
                out[creative.id] = creative
        return out

    def creative(self, value: Any, path: str, seen: dict[str, str]) -> Creative | None:
        data = self.mapping(value, path)
        if data is None:
            return None
        kind = data.get("type")
        if isinstance(kind, str) and kind in _CREATIVE_FIELDS:
            required, optional = _CREATIVE_FIELDS[kind]
            self.fields(data, path, _CREATIVE_COMMON[:2] + required, _CREATIVE_COMMON[2:] + optional,
                        note=f" (not used by a {kind} creative)")
        else:
            if "type" in data:
                self.choice(kind, _key(path, "type"), CREATIVE_TYPES, "creative type")
            else:
                self.error(_key(path, "type"), "required field missing")
        creative_id = self.ident(data["id"], _key(path, "id")) if "id" in data else None
        if creative_id is not None:
            self.unique(seen, creative_id, _key(path, "id"), "id")
        if not isinstance(kind, str) or kind not in _CREATIVE_FIELDS:
            return None
        name = self.string(data["name"], _key(path, "name")) if "name" in data else None
        size = self.size(data["size"], _key(path, "size")) if "size" in data else None
        template = self.name(data["template"], _key(path, "template"), "template name") \
            if "template" in data else None
        landing_url = self.url(data["landing_url"], _key(path, "landing_url")) if "landing_url" in data else None
        assets = self.assets(data["assets"], _key(path, "assets")) if "assets" in data else {}
        products = self.products(data["products"], _key(path, "products")) if "products" in data else None
        slots: dict[str, tuple[Variant, ...]] = {}
        exclusions: tuple[tuple[str, str], ...] = ()
        if "slots" in data:
            slots, variant_slot = self.slots(data["slots"], _key(path, "slots"))
            if "exclusions" in data:
                exclusions = self.exclusions(data["exclusions"], _key(path, "exclusions"), variant_slot)
        media: tuple[MediaFile, ...] = ()
        if "media" in data:
            media_path = _key(path, "media")
            media = tuple(
                m for i, item in enumerate(self.seq(data["media"], media_path, what="a list of media files") or [])
                if (m := self.media_file(item, _at(media_path, i))) is not None
            )
        duration = self.integer(data["duration"], _key(path, "duration"), lo=1, hi=3600) \
            if "duration" in data else None
        return Creative(
            id=creative_id or "",
            type=kind,
            name=name or "",
            size=size,
            template=template,
            landing_url=landing_url,
            assets=assets,
            products=products,
            slots=slots,
            exclusions=exclusions,
            media=media,
            duration=duration,
        )

    def content_field(self, key: Any, value: Any, path: str) -> str | None:
        """A content/asset value: a string (numbers accepted); ``url``, ``image`` and ``*_url`` must be URLs."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if key in ("url", "image") or str(key).endswith("_url"):
            return self.url(value, path)
        return self.string(value, path)

    def assets(self, value: Any, path: str) -> dict[str, str]:
        data = self.mapping(value, path)
        if data is None:
            return {}
        if not data:
            self.error(path, "expected at least one asset")
        out: dict[str, str] = {}
        for key, item in data.items():
            key_path = _key(path, key)
            if not isinstance(key, str) or not _NAME.fullmatch(key):
                self.error(key_path, f"expected an asset name matching {_NAME.pattern}, got {_describe(key)}")
                continue
            text = self.content_field(key, item, key_path)
            if text is not None:
                out[key] = text
        return out

    def slots(self, value: Any, path: str) -> tuple[dict[str, tuple[Variant, ...]], dict[str, str]]:
        """Slot name -> variants, plus variant id -> slot name (ids are unique across the creative's slots)."""
        data = self.mapping(value, path)
        if data is None:
            return {}, {}
        if not data:
            self.error(path, "expected at least one slot")
        out: dict[str, tuple[Variant, ...]] = {}
        variant_slot: dict[str, str] = {}
        seen: dict[str, str] = {}
        for slot, items in data.items():
            slot_path = _key(path, slot)
            if not isinstance(slot, str) or not _NAME.fullmatch(slot):
                self.error(slot_path, f"expected a slot name matching {_NAME.pattern}, got {_describe(slot)}")
                continue
            variants: list[Variant] = []
            for i, item in enumerate(self.seq(items, slot_path, what="a list of variants") or []):
                variant = self.variant(item, _at(slot_path, i), seen)
                if variant is not None:
                    variants.append(variant)
                    variant_slot.setdefault(variant.id, slot)
            out[slot] = tuple(variants)
        return out, variant_slot

    def variant(self, value: Any, path: str, seen: dict[str, str]) -> Variant | None:
        data = self.mapping(value, path)
        if data is None:
            return None
        variant_id = self.ident(data["id"], _key(path, "id")) if "id" in data else None
        if "id" not in data:
            self.error(_key(path, "id"), "required field missing")
        if variant_id is not None:
            self.unique(seen, variant_id, _key(path, "id"), "variant id")
        rules = self.rules(data["rules"], _key(path, "rules")) if "rules" in data else None
        content: dict[str, str] = {}
        for key, item in data.items():
            if key in ("id", "rules"):
                continue
            key_path = _key(path, key)
            if not isinstance(key, str) or not _NAME.fullmatch(key):
                self.error(key_path, f"expected a content field name matching {_NAME.pattern}, got {_describe(key)}")
                continue
            text = self.content_field(key, item, key_path)
            if text is not None:
                content[key] = text
        if len(data) == len([k for k in ("id", "rules") if k in data]):
            self.error(path, "expected at least one content field (text, url...)")
        if variant_id is None:
            return None
        return Variant(id=variant_id, content=content, rules=rules)

    def exclusions(self, value: Any, path: str, variant_slot: dict[str, str]) -> tuple[tuple[str, str], ...]:
        out: list[tuple[str, str]] = []
        for i, item in enumerate(self.seq(value, path, non_empty=False, what="a list of [id, id] pairs") or []):
            pair_path = _at(path, i)
            pair = self.seq(item, pair_path, what="a pair [id, id]")
            if pair is None:
                continue
            if len(pair) != 2:
                self.error(pair_path, f"expected a pair [id, id], got {len(pair)} items")
                continue
            ids: list[str] = []
            for j, ref in enumerate(pair):
                got = self.ref(ref, _at(pair_path, j), set(variant_slot), "variant")
                if got is not None:
                    ids.append(got)
            if len(ids) != 2:
                continue
            if variant_slot[ids[0]] == variant_slot[ids[1]]:
                self.error(pair_path, f"both variants are in slot {_describe(variant_slot[ids[0]])} "
                                      "and never appear together")
                continue
            out.append((ids[0], ids[1]))
        return tuple(out)

    def media_file(self, value: Any, path: str) -> MediaFile | None:
        data = self.mapping(value, path)
        if data is None:
            return None
        self.fields(data, path, ("url", "type", "width", "height"), ("bitrate", "delivery"))
        url = self.url(data["url"], _key(path, "url")) if "url" in data else None
        mime: str | None = None
        if "type" in data:
            mime = self.string(data["type"], _key(path, "type"))
            if mime is not None and not _MIME.fullmatch(mime):
                self.error(_key(path, "type"), f"expected a MIME type like video/mp4, got {_describe(mime)}")
                mime = None
        width = self.integer(data["width"], _key(path, "width"), lo=1) if "width" in data else None
        height = self.integer(data["height"], _key(path, "height"), lo=1) if "height" in data else None
        bitrate = self.integer(data["bitrate"], _key(path, "bitrate"), lo=1) if "bitrate" in data else None
        delivery = self.choice(data["delivery"], _key(path, "delivery"), MEDIA_DELIVERIES, "delivery") \
            if "delivery" in data else "progressive"
        if url is None or mime is None or width is None or height is None or delivery is None:
            return None
        return MediaFile(url=url, type=mime, width=width, height=height, bitrate=bitrate, delivery=delivery)

    # -- product selection ------------------------------------------------------------------------------

    def products(self, value: Any, path: str) -> ProductSelection | None:
        data = self.mapping(value, path)
        if data is None:
            return None
        self.fields(data, path, (), ("top_n", "filters", "boosts"))
        top_n = self.integer(data["top_n"], _key(path, "top_n"), lo=1, hi=MAX_TOP_N) if "top_n" in data else 200
        filters: list[ProductFilter] = []
        boosts: list[Boost] = []
        if "filters" in data:
            filters_path = _key(path, "filters")
            for i, item in enumerate(self.seq(data["filters"], filters_path, non_empty=False) or []):
                flt = self.product_filter(item, _at(filters_path, i))
                if flt is not None:
                    filters.append(flt)
        if "boosts" in data:
            boosts_path = _key(path, "boosts")
            for i, item in enumerate(self.seq(data["boosts"], boosts_path, non_empty=False) or []):
                boost = self.boost(item, _at(boosts_path, i))
                if boost is not None:
                    boosts.append(boost)
        return ProductSelection(filters=tuple(filters), boosts=tuple(boosts), top_n=top_n or 200)

    def match(
        self, data: Mapping[Any, Any], path: str, *, is_filter: bool
    ) -> tuple[str, tuple[str, ...], str | None, float | None, float | None] | None:
        """The shared part of a filter and a boost: column + exactly one of values / from / min,max."""
        column = self.feed_column(data["column"], _key(path, "column")) if "column" in data else None
        modes = [m for m in ("values", "from") if m in data]
        if "min" in data or "max" in data:
            modes.append("min/max")
        if not modes:
            self.error(path, "needs one of values, from or min/max")
            return None
        if len(modes) > 1:
            self.error(path, f"has {' and '.join(modes)}: use exactly one of values, from or min/max")
            return None
        mode = modes[0]
        values: tuple[str, ...] = ()
        source: str | None = None
        lo: float | None = None
        hi: float | None = None
        numeric = column in NUMERIC_COLUMNS
        if mode == "values":
            values = self.values(data["values"], _key(path, "values"), country=column in COUNTRY_COLUMNS) or ()
            if numeric:
                self.error(_key(path, "column"), f"{_describe(column)} is numeric: use min/max")
        elif mode == "from":
            source = self.signal(data["from"], _key(path, "from"))
            if numeric and is_filter:
                self.error(_key(path, "column"), f"{_describe(column)} is numeric: use min/max")
        else:
            lo = self.number(data["min"], _key(path, "min")) if "min" in data else None
            hi = self.number(data["max"], _key(path, "max")) if "max" in data else None
            if lo is not None and hi is not None and lo > hi:
                self.error(_key(path, "max"), f"must be >= min ({lo:g})")
            if column is not None and not numeric:
                self.error(
                    _key(path, "column"),
                    f"{_describe(column)} is not numeric: min/max apply to {', '.join(NUMERIC_COLUMNS)}",
                )
        indexed = self.indexes is None or column in self.indexes
        if is_filter and mode != "min/max" and column is not None and not numeric and not indexed:
            self.error(_key(path, "column"), f"{_describe(column)} is not indexed (add it to feed.indexes)")
        if column is None:
            return None
        return column, values, source, lo, hi

    def product_filter(self, value: Any, path: str) -> ProductFilter | None:
        data = self.mapping(value, path)
        if data is None:
            return None
        self.fields(data, path, ("column",), ("values", "from", "min", "max", "exclude", "required"))
        exclude = self.boolean(data["exclude"], _key(path, "exclude")) if "exclude" in data else False
        required = self.boolean(data["required"], _key(path, "required")) if "required" in data else False
        if "required" in data and "from" not in data:
            self.error(_key(path, "required"), "only for a filter with from (a request signal)")
        got = self.match(data, path, is_filter=True)
        if got is None:
            return None
        column, values, source, lo, hi = got
        return ProductFilter(
            column=column, values=values, source=source, exclude=bool(exclude), required=bool(required),
            min=lo, max=hi,
        )

    def boost(self, value: Any, path: str) -> Boost | None:
        data = self.mapping(value, path)
        if data is None:
            return None
        if "scale" in data:
            self.fields(data, path, ("column", "scale"), ("factor",))
            scale = self.boolean(data["scale"], _key(path, "scale"))
            if scale is not True:
                self.error(_key(path, "scale"), "must be true (or leave it out)")
                return None
            column = self.custom_column(data["column"], _key(path, "column")) if "column" in data else None
            exponent = self.number(data["factor"], _key(path, "factor"), lo=0.0, lo_open=True) \
                if "factor" in data else 1.0
            if column is None:
                return None
            return Boost(column=column, factor=exponent or 1.0, scale=True)
        self.fields(data, path, ("column", "factor"), ("values", "from", "min", "max"))
        factor = self.number(data["factor"], _key(path, "factor"), lo=0.0, lo_open=True) \
            if "factor" in data else None
        got = self.match(data, path, is_filter=False)
        if got is None:
            return None
        column, values, source, lo, hi = got
        return Boost(column=column, factor=factor or 1.0, values=values, source=source, min=lo, max=hi)
