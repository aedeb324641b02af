"""Signed tracking tokens, event idempotency keys and tracking URLs.

Every decision the engine serves carries one token. The ad's impression pixel, its click-through URL and the
advertiser's conversion call all send it back, so the track handler learns *which arm* was shown for *which
decision* without any server-side lookup, and cannot be fooled into crediting an arm that was never served.

Data flow::

    decide: TokenClaims ──sign(claims, keys, kid)──> token ──tracking_urls(base, token)──> URLs in the markup
    track:  token from ?t= ──verify(token, keys, now=...)──> TokenClaims ──event_key(kind, claims)──> Events item

Token format (version 1), at most :data:`MAX_TOKEN_CHARS` characters, URL-safe without quoting::

    v1.<payload>.<mac>
    payload = base64url(msgpack([campaign, experience, arm, creative, product, variants, snapshot,
                                 decision_id, issued_at, holdout, kid(, context)]))  (no padding)
    mac     = base64url(HMAC-SHA256(keys[kid], "v1." + payload))                  (all 32 bytes, 43 chars)

``context`` (the decision's context values for component counters, ``[[dimension, value], ...]`` sorted, see
:func:`dco.learning.event_context`) is appended as a 12th element only when non-empty, so tokens without it are
byte-identical to those of earlier releases and both shapes verify.

The key id ``kid`` travels inside the payload, so keys rotate without a flag day: sign with the new key, keep
the old key in the verification map until the longest-lived token signed with it has expired (``max_age``).
The full 256-bit MAC is kept (43 characters); truncation would save ~20 characters for no real gain.
Verification compares MACs in constant time (:func:`hmac.compare_digest`). The payload is decoded before the MAC
is checked (the kid is inside it); decoding is bounded by the token length and rejects anything but the exact
11- or 12-element array shape.

Nothing here reads the clock or the environment: ``now`` (unix seconds) and the key map are passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Container, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import msgpack

from dco.errors import RequestError, TokenError

TOKEN_VERSION = "v1"
MAX_TOKEN_CHARS = 2048
MAC_BYTES = 32
MIN_KEY_BYTES = 16
DEFAULT_MAX_AGE = 86_400
MAX_CLOCK_SKEW = 300
MAX_URL_CHARS = 8192

# Event kinds and the path segment of their endpoint (``/v1/events/<segment>``).
EVENT_KINDS: tuple[str, ...] = ("impression", "click", "conversion")
KIND_TO_PATH: dict[str, str] = {"impression": "imp", "click": "click", "conversion": "conv"}
PATH_TO_KIND: dict[str, str] = {path: kind for kind, path in KIND_TO_PATH.items()}

# Token error codes (``TokenError.code``).
MALFORMED = "malformed"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_KEY = "unknown_key"
EXPIRED = "expired"
FUTURE = "future"
UNKNOWN_CAMPAIGN = "unknown_campaign"

_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_.\-]+")
_CLAIM_COUNT = 11  # the 12th element, context, is optional


@dataclass(frozen=True)
class TokenClaims:
    """What a token asserts about one served decision.

    ``arm`` is the bandit arm id credited by outcomes; ``variants`` lists the component variants of an assembled
    creative (empty otherwise); ``snapshot`` is the snapshot version that served; ``issued_at`` is unix seconds;
    ``holdout`` marks decisions served to the holdout group; ``kid`` names the signing key (set by :func:`sign`);
    ``context`` holds the ``(dimension, value)`` pairs of the request that component counters are split by
    (region, device), sorted by dimension: the track function cannot see the request's signals, the token can.
    """

    campaign: str
    experience: str
    arm: str
    creative: str
    product: str | None
    variants: tuple[str, ...]
    snapshot: str
    decision_id: str
    issued_at: int
    holdout: bool
    kid: str = ""
    context: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TrackingUrls:
    """The URLs a rendered ad carries. ``click`` already wears the DSP click prefix when one was given."""

    impression: str
    click: str
    conversion_ref: str


# ---------------------------------------------------------------------------------------------------- tokens


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict, canonical base64url without padding; raises ValueError otherwise."""
    if len(text) % 4 == 1:
        raise ValueError("impossible base64 length")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64encode(raw) != text:  # non-canonical trailing bits: two spellings of one value
        raise ValueError("non-canonical base64")
    return raw


def _mac(key: bytes, signed_part: str) -> bytes:
    return hmac.new(key, signed_part.encode("ascii"), hashlib.sha256).digest()


def _claims_to_list(claims: TokenClaims, kid: str) -> list[object]:
    items: list[object] = [
        claims.campaign, claims.experience, claims.arm, claims.creative, claims.product, list(claims.variants),
        claims.snapshot, claims.decision_id, claims.issued_at, claims.holdout, kid,
    ]
    if claims.context:
        items.append([list(pair) for pair in claims.context])
    return items


def _claims_from_list(items: object) -> TokenClaims:
    """Rebuild claims from a decoded payload, checking every type; raises ValueError on any mismatch."""
    if not isinstance(items, list) or len(items) not in (_CLAIM_COUNT, _CLAIM_COUNT + 1):
        raise ValueError("payload is not an 11- or 12-element array")
    campaign, experience, arm, creative, product, variants, snapshot, decision_id, issued_at, holdout, kid = items[
        :_CLAIM_COUNT
    ]
    raw_context = items[_CLAIM_COUNT] if len(items) > _CLAIM_COUNT else []
    if not isinstance(raw_context, list) or not raw_context and len(items) > _CLAIM_COUNT:
        raise ValueError("context must be a non-empty list of [dimension, value] pairs")  # one spelling per value
    context: list[tuple[str, str]] = []
    for pair in raw_context:
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not all(isinstance(x, str) for x in pair):
            raise ValueError("context must be a list of [dimension, value] string pairs")
        context.append((pair[0], pair[1]))
    for value in (campaign, experience, arm, creative, snapshot, decision_id, kid):
        if not isinstance(value, str):
            raise ValueError("string claim expected")
    if product is not None and not isinstance(product, str):
        raise ValueError("product must be a string or nil")
    if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
        raise ValueError("variants must be a list of strings")
    if not isinstance(issued_at, int) or isinstance(issued_at, bool):
        raise ValueError("issued_at must be an integer")
    if not isinstance(holdout, bool):
        raise ValueError("holdout must be a boolean")
    return TokenClaims(
        campaign=campaign, experience=experience, arm=arm, creative=creative, product=product,
        variants=tuple(variants), snapshot=snapshot, decision_id=decision_id, issued_at=issued_at,
        holdout=holdout, kid=kid, context=tuple(context),
    )


def sign(claims: TokenClaims, keys: Mapping[str, bytes], kid: str) -> str:
    """Sign ``claims`` with ``keys[kid]`` and return the token. ``kid`` overrides ``claims.kid``.

    Raises ValueError when the key is missing or shorter than :data:`MIN_KEY_BYTES`, when a claim has the wrong
    type, or when the token would exceed :data:`MAX_TOKEN_CHARS` (too many or too long variant ids).

    >>> keys = {"k1": b"0123456789abcdef0123456789abcdef"}
    >>> c = TokenClaims("c", "e", "a", "cr", None, (), "s1", "d1", 1_700_000_000, False)
    >>> verify(sign(c, keys, "k1"), keys, now=1_700_000_060).arm
    'a'
    """
    key = keys.get(kid)
    if key is None:
        raise ValueError(f"no signing key {kid!r}")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"signing key {kid!r} is shorter than {MIN_KEY_BYTES} bytes")
    items = _claims_to_list(claims, kid)
    _claims_from_list(items)  # the same type checks verify() applies, so every signed token verifies
    payload = _b64encode(msgpack.packb(items, use_bin_type=True))
    signed_part = f"{TOKEN_VERSION}.{payload}"
    token = f"{signed_part}.{_b64encode(_mac(key, signed_part))}"
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"token would be {len(token)} characters, over {MAX_TOKEN_CHARS}")
    return token


def verify(
    token: str,
    keys: Mapping[str, bytes],
    *,
    now: int,
    max_age: int = DEFAULT_MAX_AGE,
    campaigns: Container[str] | None = None,
) -> TokenClaims:
    """Check a token and return its claims, or raise :class:`TokenError` with a ``code``:

    - ``malformed``: not a string, over 2048 characters, wrong shape, bad base64, undecodable payload;
    - ``unknown_key``: the payload names a kid not in ``keys``;
    - ``bad_signature``: the MAC does not match (any claim, the kid or the MAC itself was altered);
    - ``expired``: issued more than ``max_age`` seconds before ``now``;
    - ``future``: issued more than 300 seconds after ``now`` (clock skew allowance);
    - ``unknown_campaign``: ``campaigns`` is given and does not contain the token's campaign.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError(MALFORMED, "token is empty, not text or too long")
    if not _TOKEN_CHARS.fullmatch(token):
        raise TokenError(MALFORMED, "token has characters outside the base64url alphabet")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION or not parts[1] or not parts[2]:
        raise TokenError(MALFORMED, "token is not v1.<payload>.<mac>")
    try:
        mac = _b64decode(parts[2])
        payload = _b64decode(parts[1])
        if len(mac) != MAC_BYTES:
            raise ValueError("wrong MAC length")
        claims = _claims_from_list(msgpack.unpackb(payload, raw=False, use_list=True, strict_map_key=True))
    except (ValueError, TypeError, binascii.Error, msgpack.UnpackException) as exc:
        raise TokenError(MALFORMED, f"token cannot be decoded: {exc}") from None
    key = keys.get(claims.kid)
    if key is None:
        raise TokenError(UNKNOWN_KEY, f"token signed with unknown key {claims.kid!r}")
    if not hmac.compare_digest(mac, _mac(key, f"{parts[0]}.{parts[1]}")):
        raise TokenError(BAD_SIGNATURE, "token signature does not match")
    if now - claims.issued_at > max_age:
        raise TokenError(EXPIRED, "token has expired")
    if claims.issued_at - now > MAX_CLOCK_SKEW:
        raise TokenError(FUTURE, "token is issued in the future")
    if campaigns is not None and claims.campaign not in campaigns:
        raise TokenError(UNKNOWN_CAMPAIGN, f"unknown campaign {claims.campaign!r}")
    return claims


def make_decision_id(seed_material: bytes) -> str:
    """A deterministic 22-character URL-safe id: base64url of the first 16 bytes of SHA-256(seed_material).

    Callers feed it material that is unique per decision (request id, snapshot version, a draw from the
    request's rng...), so the same inputs give the same id (replays and tests are reproducible).

    >>> make_decision_id(b"req-1")
    'lFa9-hLqdpWclKNXL12Rxw'
    """
    return _b64encode(hashlib.sha256(seed_material).digest()[:16])


def event_key(kind: str, claims: TokenClaims, order_id: str | None = None) -> str:
    """The idempotency key of an event: a repeated beacon gives the same key, so it is stored once.

    - impression: ``imp#<decision_id>``: at most one impression per decision;
    - click: ``click#<decision_id>``: at most one click per decision;
    - conversion: ``conv#<decision_id>#<h>`` where ``h`` is base64url(SHA-256(order_id))[:22], so one decision
      can convert several orders but each order once; without an order id it is ``conv#<decision_id>`` (one
      conversion per decision). The order id is hashed: it is caller-supplied text of any length and alphabet.

    Raises ValueError for an unknown kind, or an order id with a non-conversion kind.
    """
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {EVENT_KINDS}")
    prefix = KIND_TO_PATH[kind]
    if kind != "conversion":
        if order_id is not None:
            raise ValueError("only conversions carry an order id")
        return f"{prefix}#{claims.decision_id}"
    if order_id is None:
        return f"{prefix}#{claims.decision_id}"
    return f"{prefix}#{claims.decision_id}#{make_decision_id(order_id.encode('utf-8'))}"


# ---------------------------------------------------------------------------------------------------- URLs

_URL_BAD_CHARS = frozenset('\\"\'<>`')
# scheme, optional userinfo, a non-empty host (or [IPv6]), an optional port, then the end or a path/query/fragment
_URL_AUTHORITY = re.compile(r"https?://(?:[^/?#@]*@)?([^/?#:@\[\]]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{0,5}))?(?:[/?#]|\Z)", re.I)
_URL_ASCII = re.compile(r"[!#-&(-;=?-\[\]-_a-~]*")  # printable ASCII but space, quotes, <, >, backslash, backtick


def safe_url(value: object) -> str | None:
    """``value`` when it is an absolute http(s) URL safe to place in markup, else ``None``.

    Rejected: non-strings; anything longer than 8192 characters; any control, format, whitespace or separator
    character anywhere (so ``"java\\tscript:"``, ``"  javascript:"``, a zero-width space or U+2028 tricks never
    reach a browser's lenient URL parser); backslashes, quotes, backticks and angle brackets; schemes other than
    ``http``/``https`` (``javascript:``, ``data:``, ``vbscript:``, ``blob:``...); relative and scheme-relative
    URLs; URLs without a host or with an invalid port. Accepted URLs are returned unchanged.

    >>> safe_url("https://shop.example/p/1?x=1&y=2")
    'https://shop.example/p/1?x=1&y=2'
    >>> safe_url("javascript:alert(1)") is None
    True
    """
    if not isinstance(value, str) or not value or len(value) > MAX_URL_CHARS:
        return None
    if _URL_ASCII.fullmatch(value) is None:  # fast path for the usual all-ASCII URL; else check each char
        for ch in value:
            if ch in _URL_BAD_CHARS or ord(ch) <= 0x20 or (ord(ch) >= 0x7F and unicodedata.category(ch)[0] in "CZ"):
                return None
    match = _URL_AUTHORITY.match(value)
    if match is None or (match.group(2) and int(match.group(2)) > 65535):
        return None
    return value


def tracking_urls(
    base_url: str,
    token: str,
    *,
    click_prefix: str | None = None,
    cache_buster: str | None = None,
) -> TrackingUrls:
    """The tracking URLs of one decision.

    - impression: ``<base>/v1/events/imp?t=<token>[&cb=<cache_buster>]``;
    - click: ``<base>/v1/events/click?t=<token>``; with a DSP ``click_prefix`` the click URL becomes
      ``click_prefix + quote(click, safe="")`` so the DSP's tracker counts the click, then redirects to ours;
    - conversion_ref: ``<base>/v1/events/conv?t=<token>``; the advertiser calls it with ``&oid=<order id>``.

    ``base_url`` must be an absolute http(s) URL (ValueError otherwise: it is deployment configuration);
    ``click_prefix`` must be one too (RequestError on param ``click_prefix``: it arrives with the ad request).

    >>> tracking_urls("https://t.example/", "v1.x.y", click_prefix="https://dsp.example/c?r=").click
    'https://dsp.example/c?r=https%3A%2F%2Ft.example%2Fv1%2Fevents%2Fclick%3Ft%3Dv1.x.y'
    """
    if safe_url(base_url) is None:
        raise ValueError(f"tracking base URL must be an absolute http(s) URL: {base_url!r}")
    base = base_url.rstrip("/")
    t = quote(token, safe="")
    impression = f"{base}/v1/events/imp?t={t}"
    if cache_buster:
        impression += f"&cb={quote(cache_buster, safe='')}"
    click = f"{base}/v1/events/click?t={t}"
    if click_prefix:
        if safe_url(click_prefix) is None:
            raise RequestError("click_prefix", "must be an absolute http(s) URL")
        click = click_prefix + quote(click, safe="")
    return TrackingUrls(impression=impression, click=click, conversion_ref=f"{base}/v1/events/conv?t={t}")
