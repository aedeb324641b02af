"""Device signals from request headers: type, browser family, OS family and a bot flag.

Data flow: :func:`device_from_headers` takes lower-cased request headers, picks the agent string
(``X-Device-User-Agent`` from an SSAI server first, then ``User-Agent``), classifies it once per distinct string
with :func:`classify_user_agent` (an LRU cache of 2048 agents, so a repeated agent costs about a microsecond),
then applies client hints and CloudFront device headers:

- ``Sec-CH-UA-Mobile: ?1`` makes the type ``mobile``; ``Sec-CH-UA-Platform`` replaces the OS family.
- ``CloudFront-Is-{Mobile,Tablet,SmartTV,Desktop}-Viewer`` only decide the type when there is no agent string
  (CloudFront forwards them when the origin policy leaves the User-Agent out).

Families come from ua-parser 1.0 (user-agent and OS domains only: the device domain costs more than the other
two together and is not needed, because the type is decided from agent tokens below), case-folded and mapped to
one name per product (``chrome mobile`` -> ``chrome``, ``mobile safari`` -> ``safari``, ``mac os x`` ->
``macos``, the spelling the ``Sec-CH-UA-Platform`` hint uses). Where ``ua_parser`` cannot be imported (Pyodide
without the wheel) a tiny built-in classifier gives the same type rules and coarse families for the major
browsers and systems (``USING_UA_PARSER`` tells which one runs).

Type rules, first match wins: a bot is ``other``; TV and console tokens (SmartTV, AppleTV, Roku, Fire TV,
Chromecast, webOS, Tizen TV, HbbTV, PlayStation, Xbox) give ``tv``; iPad, Kindle/Silk, Android without
``Mobile`` and explicit ``Tablet`` tokens give ``tablet``; iPhone, iPod, Android ``Mobile``, Windows Phone and
other ``Mobi`` agents give ``mobile``; anything else is ``desktop``. iPadOS Safari in its default desktop mode
sends a Macintosh agent and is classified ``desktop``: nothing in the request tells them apart.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dco.bots import is_bot

_ua_parser: Any
try:  # pragma: no cover - which branch runs depends on the platform
    import ua_parser as _ua_parser

    USING_UA_PARSER = True
except ImportError:  # pragma: no cover
    _ua_parser = None
    USING_UA_PARSER = False

MAX_AGENT_LENGTH = 1024  # longer agents are cut before classification (and before they become a cache key)
CACHE_SIZE = 2048

BROWSER_ALIASES: dict[str, str] = {
    "chrome mobile": "chrome",
    "chrome mobile ios": "chrome",
    "mobile safari": "safari",
    "mobile safari ui/wkwebview": "safari",
    "firefox mobile": "firefox",
    "firefox ios": "firefox",
    "edge mobile": "edge",
    "opera mobile": "opera",
    "samsung internet": "samsung internet",
    "ie": "ie",
    "ie mobile": "ie",
}
OS_ALIASES: dict[str, str] = {
    "mac os x": "macos",
    "macos": "macos",
    "chromium os": "chrome os",
    "chrome os": "chrome os",
    "ipados": "ios",
    "web0s": "webos",
    "atv os x": "tvos",
}


@dataclass(frozen=True)
class Device:
    """Device signals: ``type`` is one of desktop, mobile, tablet, tv, other; families are case-folded."""

    type: str = "other"
    browser: str | None = None
    os: str | None = None
    is_bot: bool = False


_TV = re.compile(
    r"smart-?tv|googletv|google tv|android tv|appletv|apple tv|roku|crkey|; aft[a-z]|bravia|hbbtv|netcast"
    r"|web0s|webos.*tv|tizen.*tv|viera|aquos|philipstv|playstation|xbox|\bdtv\b"
)
_TABLET = re.compile(r"ipad|kindle|\bsilk\b|playbook|; tablet;|tablet(?! pc)")
_MOBILE = re.compile(r"iphone|ipod|windows phone|iemobile|blackberry|bb10|opera mini|mobi|dalvik")


def _device_type(lowered: str) -> str:
    if _TV.search(lowered):
        return "tv"
    if _TABLET.search(lowered):
        return "tablet"
    if "android" in lowered and "mobile" not in lowered and "dalvik" not in lowered:
        return "tablet"
    if _MOBILE.search(lowered):
        return "mobile"
    return "desktop"


def _canonical(family: str | None, aliases: Mapping[str, str]) -> str | None:
    if not family:
        return None
    folded = family.casefold()
    if folded == "other":
        return None
    return aliases.get(folded, folded)


# Coarse families for the fallback classifier: (token, family), first match wins.
_FALLBACK_BROWSERS: tuple[tuple[str, str], ...] = (
    ("headlesschrome", "headlesschrome"), ("edg/", "edge"), ("edga/", "edge"), ("edgios/", "edge"),
    ("opr/", "opera"), ("opera", "opera"), ("samsungbrowser", "samsung internet"), ("silk/", "amazon silk"), ("fxios", "firefox"),
    ("firefox/", "firefox"), ("crios", "chrome"), ("chromium/", "chromium"), ("chrome/", "chrome"),
    ("version/", "safari"), ("msie ", "ie"), ("trident/", "ie"),
)
_FALLBACK_OSES: tuple[tuple[str, str], ...] = (
    ("windows phone", "windows phone"), ("windows", "windows"), ("iphone", "ios"), ("ipad", "ios"),
    ("ipod", "ios"), ("apple tv", "tvos"), ("android", "android"), ("roku", "roku"), ("cros", "chrome os"), ("mac os x", "macos"),
    ("macintosh", "macos"), ("tizen", "tizen"), ("web0s", "webos"), ("linux", "linux"),
)


def fallback_families(lowered: str) -> tuple[str | None, str | None]:
    """Coarse (browser, os) families from a lower-cased agent, for platforms without ua-parser."""
    browser = next((name for token, name in _FALLBACK_BROWSERS if token in lowered), None)
    if browser == "safari" and "safari/" not in lowered:
        browser = None
    os_family = next((name for token, name in _FALLBACK_OSES if token in lowered), None)
    return browser, os_family


_parser: Any = None


def _ua_parser_families(agent: str) -> tuple[str | None, str | None]:
    global _parser
    if _parser is None:  # built on first use; lazy rules compile each regex when first tried (cold start)
        _parser = _ua_parser.Parser(_ua_parser.BestAvailableResolver(_ua_parser.load_lazy_builtins()))
    result = _parser(agent, _ua_parser.Domain.USER_AGENT | _ua_parser.Domain.OS)
    browser = result.user_agent.family if result.user_agent else None
    os_family = result.os.family if result.os else None
    return _canonical(browser, BROWSER_ALIASES), _canonical(os_family, OS_ALIASES)


def classify_uncached(agent: str, *, use_ua_parser: bool = USING_UA_PARSER) -> Device:
    """Classify one agent string without the cache (``use_ua_parser=False`` forces the built-in classifier)."""
    agent = agent[:MAX_AGENT_LENGTH]
    lowered = agent.lower()
    if use_ua_parser and _ua_parser is not None:
        browser, os_family = _ua_parser_families(agent)
    else:
        browser, os_family = fallback_families(lowered)
    if is_bot(agent):
        return Device(type="other", browser=browser, os=os_family, is_bot=True)
    return Device(type=_device_type(lowered), browser=browser, os=os_family, is_bot=False)


@functools.lru_cache(maxsize=CACHE_SIZE)
def classify_user_agent(agent: str) -> Device:
    """Classify a User-Agent string (cached per distinct string).

    >>> classify_user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    ...                     "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
    Device(type='mobile', browser='safari', os='ios', is_bot=False)
    """
    return classify_uncached(agent)


_PLATFORMS: dict[str, str] = {
    "android": "android", "chrome os": "chrome os", "chromium os": "chrome os", "ios": "ios",
    "linux": "linux", "macos": "macos", "windows": "windows",
}


def device_from_headers(headers: Mapping[str, str]) -> Device:
    """The :class:`Device` of a request; ``headers`` must have lower-cased names."""
    agent = (headers.get("x-device-user-agent") or headers.get("user-agent") or "").strip()
    if agent:
        device = classify_user_agent(agent[:MAX_AGENT_LENGTH])
    else:
        device = Device(type=_cloudfront_type(headers))
    if device.is_bot:
        return device
    platform = headers.get("sec-ch-ua-platform", "").strip().strip('"').casefold()
    os_family = _PLATFORMS.get(platform, device.os)
    device_type = device.type
    if headers.get("sec-ch-ua-mobile", "").strip() == "?1" and device_type != "tv":
        device_type = "mobile"
    if os_family == device.os and device_type == device.type:
        return device
    return Device(type=device_type, browser=device.browser, os=os_family, is_bot=False)


def _cloudfront_type(headers: Mapping[str, str]) -> str:
    def flag(name: str) -> bool:
        return headers.get(name, "").strip().lower() == "true"

    if flag("cloudfront-is-smarttv-viewer"):
        return "tv"
    if flag("cloudfront-is-tablet-viewer"):
        return "tablet"
    if flag("cloudfront-is-mobile-viewer"):
        return "mobile"
    if flag("cloudfront-is-desktop-viewer"):
        return "desktop"
    return "other"
