"""Ad requests: validate the query string and headers of an ad tag call into one frozen :class:`AdRequest`.

Data flow: an adapter hands :func:`parse_request` the decoded query parameters, the request headers and the
current time; it checks the limits, reads consent first (:mod:`dco.consent`), then geo (CloudFront headers,
overridden by query parameters), the device (:mod:`dco.device`), data-pass keys, context and, only when
personalisation is allowed, profile keys, segments and the user id. Everything the rest of the core looks at
comes out of :meth:`AdRequest.signals` in the vocabulary of docs/signals.md; docs/request.md lists every
parameter.

Every bad parameter raises :class:`~dco.errors.RequestError` naming it. Unknown parameters are ignored (DSPs
append their own), and a value that is an unexpanded DSP macro (``${GDPR}``, ``[CACHEBUSTER]``, ``%%UID%%``,
``{uid}``, ``__UID__``) counts as absent, so a tag placed in a DSP that lacks a macro still serves.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from dco.codes import COUNTRY_CODES, COUNTRY_HINTS
from dco.consent import Consent, parse_consent
from dco.device import Device, device_from_headers
from dco.errors import RequestError

FORMATS: tuple[str, ...] = ("html", "js", "json", "vast")
DATA_KEYS: tuple[str, ...] = ("t1", "t2", "t3", "t4", "t5")
PROFILE_KEYS: tuple[str, ...] = ("ut1", "ut2", "ut3", "ut4", "ut5")
CONTEXT_SHORTHANDS: dict[str, str] = {"weather": "weather", "page_cat": "page_category"}
CONSENT_PARAMS: tuple[str, ...] = ("gdpr", "gdpr_consent", "gpp", "gpp_sid", "us_privacy")

_MACRO = re.compile(r"\$\{[^}]*\}|\{[\w.-]+\}|\[[\w.-]+\]|%%[\w.-]+%%|__[A-Z0-9_]+__|%7B[\w.-]+%7D", re.ASCII)
_SIZE = re.compile(r"([1-9]\d{0,3})[xX]([1-9]\d{0,3})")
_CACHE_BUSTER = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CONTEXT_KEY = re.compile(r"[a-z0-9_]{1,32}")
_DMA = re.compile(r"\d{1,4}")
_SEED = re.compile(r"\d{1,19}")
_BOOL = {"1": True, "true": True, "0": False, "false": False}


@dataclass(frozen=True)
class RequestLimits:
    """Size limits of one request; over a limit is a :class:`RequestError`."""

    max_value_length: int = 512
    max_params: int = 64
    max_segments: int = 100
    max_query_bytes: int = 8192
    max_consent_length: int = 4096  # TC and GPP strings; a longer one counts as malformed (no consent)


@dataclass(frozen=True)
class Geo:
    """Viewer geography. ``country`` is upper-case ISO alpha-2; the other strings are case-folded."""

    country: str | None = None
    region: str | None = None
    city: str | None = None
    postal: str | None = None
    dma: str | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True)
class AdRequest:
    """One validated ad request. Without personalisation consent ``profile``, ``segments`` and ``user_id`` are
    empty whatever the tag sent."""

    experience: str
    now: datetime
    size: str | None = None
    format: str = "html"
    tag: str | None = None
    geo: Geo = field(default_factory=Geo)
    device: Device = field(default_factory=Device)
    data: dict[str, str] = field(default_factory=dict)
    profile: dict[str, str] = field(default_factory=dict)
    segments: frozenset[str] = frozenset()
    context: dict[str, str] = field(default_factory=dict)
    consent: Consent = field(default_factory=Consent)
    user_id: str | None = None
    request_id: str | None = None
    click_prefix: str | None = None
    cache_buster: str | None = None
    debug: bool = False
    seed: int | None = None

    def signals(self) -> dict[str, str]:
        """The flat signal mapping of docs/signals.md; absent signals are left out.

        >>> from datetime import UTC, datetime
        >>> AdRequest("e1", datetime(2026, 1, 1, tzinfo=UTC), geo=Geo(country="US"), data={"t1": "a"}).signals()
        {'geo.country': 'US', 'device.type': 'other', 't1': 'a'}
        """
        geo = self.geo
        out: dict[str, str] = {}
        for key, value in (
            ("geo.country", geo.country), ("geo.region", geo.region), ("geo.city", geo.city),
            ("geo.postal", geo.postal), ("geo.dma", geo.dma), ("device.type", self.device.type),
            ("device.browser", self.device.browser), ("device.os", self.device.os),
        ):
            if value:
                out[key] = value
        out.update(self.data)
        out.update(self.profile)
        for key, value in self.context.items():
            out[f"context.{key}"] = value
        return out

    def holdout_key(self) -> str:
        """A stable key for holdout assignment, never derived from the IP address.

        ``u:<user id>`` when a user id survived consent (the same person stays in or out of the holdout);
        otherwise ``r:<request id>``, ``c:<cache buster>``, or ``t:<time>|<experience>``: impression-level
        assignment, the best that can be done without an identity.
        """
        if self.user_id:
            return f"u:{self.user_id}"
        if self.request_id:
            return f"r:{self.request_id}"
        if self.cache_buster:
            return f"c:{self.cache_buster}"
        return f"t:{self.now.isoformat()}|{self.experience}"


def parse_request(
    query: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    now: datetime,
    limits: RequestLimits = RequestLimits(),  # noqa: B008 - frozen, shared safely
    vendor_id: int | None = None,
) -> AdRequest:
    """Validate an ad request. ``query`` holds decoded parameters, ``headers`` any-case header names; ``now``
    must be timezone-aware; ``vendor_id`` is the operator's IAB TCF vendor id, if it has one.

    >>> from datetime import UTC, datetime
    >>> parse_request({"exp": "summer", "t1": "Shoes"}, {}, now=datetime(2026, 1, 1, tzinfo=UTC)).data
    {'t1': 'shoes'}
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    _check_limits(query, limits)
    lowered = {name.lower(): value for name, value in headers.items()}
    q = _Query(query, limits)

    experience = q.get("exp")
    if experience is None:
        raise RequestError("exp", "is required")

    geo = _geo(q, lowered)
    consent = parse_consent(
        q.get_consent("gdpr"), q.get_consent("gdpr_consent"), q.get_consent("gpp"), q.get_consent("gpp_sid"),
        q.get_consent("us_privacy"), lowered.get("sec-gpc", "").strip() == "1",
        country=geo.country, vendor_id=vendor_id, max_length=limits.max_consent_length,
    )
    if not consent.precise_geo_allowed and (geo.lat is not None or geo.lon is not None):
        geo = Geo(geo.country, geo.region, geo.city, geo.postal, geo.dma)  # TCF special feature 1 not given

    personal = consent.personalization_allowed
    return AdRequest(
        experience=experience,
        now=now.astimezone(UTC),
        size=_size(q.get("size")),
        format=_format(q.get("fmt")),
        tag=q.get("tag"),
        geo=geo,
        device=device_from_headers(lowered),
        data=q.folded_keys(DATA_KEYS),
        profile=q.folded_keys(PROFILE_KEYS) if personal else {},
        segments=_segments(q.get("seg"), limits) if personal else frozenset(),
        context=_context(q),
        consent=consent,
        user_id=q.get("uid") if personal else None,
        request_id=q.get("rid"),
        click_prefix=_click(q.get("click")),
        cache_buster=_cache_buster(q.get("cb")),
        debug=_debug(q.get("debug")),
        seed=_seed(q.get("seed")),
    )


def _check_limits(query: Mapping[str, str], limits: RequestLimits) -> None:
    if len(query) > limits.max_params:
        raise RequestError("query", f"more than {limits.max_params} parameters")
    size = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in query.items())
    if size > limits.max_query_bytes:
        raise RequestError("query", f"longer than {limits.max_query_bytes} bytes")


class _Query:
    """Known-parameter access: strips values, treats empty values and unexpanded macros as absent, checks
    length and control characters."""

    def __init__(self, query: Mapping[str, str], limits: RequestLimits) -> None:
        self.query = query
        self.limits = limits

    def get(self, name: str, *, max_length: int | None = None) -> str | None:
        raw = self.query.get(name)
        if raw is None:
            return None
        value = raw.strip()
        if not value or (value[0] in "$[{%_" and _MACRO.fullmatch(value)):
            return None
        limit = max_length or self.limits.max_value_length
        if len(value) > limit:
            raise RequestError(name, f"longer than {limit} characters")
        if not value.isprintable():
            raise RequestError(name, "contains control characters")
        return value

    def get_consent(self, name: str) -> str | None:
        # Consent strings may be long; parse_consent treats an over-long one as malformed, not as an error.
        return self.get(name, max_length=self.limits.max_query_bytes)

    def folded(self, name: str) -> str | None:
        value = self.get(name)
        return value.casefold() if value is not None else None

    def folded_keys(self, names: tuple[str, ...]) -> dict[str, str]:
        out = {}
        for name in names:
            value = self.folded(name)
            if value is not None:
                out[name] = value
        return out


def _country(value: str, param: str) -> str:
    code = value.upper()
    if code not in COUNTRY_CODES:
        hint = f" (did you mean {COUNTRY_HINTS[code]}?)" if code in COUNTRY_HINTS else ""
        raise RequestError(param, f"must be an ISO 3166-1 alpha-2 country code, got {value!r}{hint}")
    return code


def _coordinate(value: str, param: str, bound: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise RequestError(param, f"must be a number, got {value!r}") from None
    if not math.isfinite(number) or not -bound <= number <= bound:
        raise RequestError(param, f"must be between -{bound:g} and {bound:g}, got {value!r}")
    return number


def _geo(q: _Query, headers: Mapping[str, str]) -> Geo:
    """CloudFront viewer headers, then query overrides. When the query names a different country than the
    headers, the headers' finer fields (region, city, postal, dma, lat, lon) describe another place and are
    dropped."""
    header_geo = _header_geo(headers)
    country = q.get("country")
    query_country = _country(country, "country") if country is not None else None
    base = header_geo
    if query_country is not None and query_country != header_geo.country:
        base = Geo(country=query_country)
    dma = q.get("dma")
    if dma is not None and not _DMA.fullmatch(dma):
        raise RequestError("dma", f"must be a numeric DMA (metro) code, got {dma!r}")
    lat, lon = q.get("lat"), q.get("lon")
    return Geo(
        country=base.country,
        region=q.folded("region") or base.region,
        city=q.folded("city") or base.city,
        postal=q.folded("zip") or base.postal,
        dma=dma or base.dma,
        lat=_coordinate(lat, "lat", 90.0) if lat is not None else base.lat,
        lon=_coordinate(lon, "lon", 180.0) if lon is not None else base.lon,
    )


def _header_geo(headers: Mapping[str, str]) -> Geo:
    """Geo from CloudFront viewer headers; a header value that does not parse is ignored (headers are set by
    CloudFront, not by the tag, so a bad one is not the caller's error)."""

    def text(name: str, *, decode: bool = False) -> str | None:
        value = headers.get(name, "").strip()
        if decode:
            value = unquote(value).strip()
        return value.casefold() if value and value.isprintable() and len(value) <= 128 else None

    def number(name: str, bound: float) -> float | None:
        try:
            value = float(headers.get(name, ""))
        except ValueError:
            return None
        return value if math.isfinite(value) and -bound <= value <= bound else None

    country = headers.get("cloudfront-viewer-country", "").strip()
    try:
        country_code: str | None = _country(country, "country") if country else None
    except RequestError:
        country_code = None
    dma = headers.get("cloudfront-viewer-metro-code", "").strip()
    return Geo(
        country=country_code,
        region=text("cloudfront-viewer-country-region"),
        city=text("cloudfront-viewer-city", decode=True),
        postal=text("cloudfront-viewer-postal-code"),
        dma=dma if _DMA.fullmatch(dma) else None,
        lat=number("cloudfront-viewer-latitude", 90.0),
        lon=number("cloudfront-viewer-longitude", 180.0),
    )


def _size(value: str | None) -> str | None:
    if value is None:
        return None
    match = _SIZE.fullmatch(value)
    if match is None:
        raise RequestError("size", f"must be WIDTHxHEIGHT in pixels like 300x250, got {value!r}")
    return f"{match[1]}x{match[2]}"


def _format(value: str | None) -> str:
    if value is None:
        return "html"
    folded = value.casefold()
    if folded not in FORMATS:
        raise RequestError("fmt", f"must be one of {', '.join(FORMATS)}, got {value!r}")
    return folded


def _segments(value: str | None, limits: RequestLimits) -> frozenset[str]:
    if value is None:
        return frozenset()
    segments = frozenset(s.strip().casefold() for s in value.split(",") if s.strip())
    if len(segments) > limits.max_segments:
        raise RequestError("seg", f"more than {limits.max_segments} segments")
    return segments


def _context(q: _Query) -> dict[str, str]:
    context: dict[str, str] = {}
    for shorthand, key in CONTEXT_SHORTHANDS.items():
        value = q.folded(shorthand)
        if value is not None:
            context[key] = value
    for name in q.query:
        if not name.startswith("ctx."):
            continue
        key = name[4:].casefold()
        if not _CONTEXT_KEY.fullmatch(key):
            raise RequestError(name, "context keys are 1-32 of a-z, 0-9 and _")
        value = q.folded(name)
        if value is not None:
            context[key] = value  # an explicit ctx.<key> wins over its shorthand
    return context


def _click(value: str | None) -> str | None:
    if value is None:
        return None
    if value[:7].lower() in ("http%3a", "https%3"):  # still percent-encoded once more (a double-encoded macro)
        value = unquote(value)
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise RequestError("click", f"must be an absolute http(s) URL, got {value!r}")
    return value


def _cache_buster(value: str | None) -> str | None:
    if value is not None and not _CACHE_BUSTER.fullmatch(value):
        raise RequestError("cb", "must be 1-64 of A-Z, a-z, 0-9, _ and -")
    return value


def _debug(value: str | None) -> bool:
    if value is None:
        return False
    flag = _BOOL.get(value.lower())
    if flag is None:
        raise RequestError("debug", f"must be 1 or 0, got {value!r}")
    return flag


def _seed(value: str | None) -> int | None:
    if value is None:
        return None
    if not _SEED.fullmatch(value) or int(value) >= 2**63:
        raise RequestError("seed", f"must be an integer from 0 to 2**63-1, got {value!r}")
    return int(value)
