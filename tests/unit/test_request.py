"""Ad request parsing: every parameter good and bad, CloudFront headers, query overrides, the device corpus,
consent-driven dropping of user-level inputs and the signal mapping of docs/signals.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from dco.bots import is_bot
from dco.consent import Consent
from dco.device import Device, classify_uncached, device_from_headers
from dco.errors import RequestError
from dco.request import AdRequest, Geo, RequestLimits, parse_request

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

CLOUDFRONT = {
    "CloudFront-Viewer-Country": "US",
    "CloudFront-Viewer-Country-Region": "CA",
    "CloudFront-Viewer-City": "San%20Francisco",
    "CloudFront-Viewer-Postal-Code": "94103",
    "CloudFront-Viewer-Metro-Code": "807",
    "CloudFront-Viewer-Latitude": "37.7749",
    "CloudFront-Viewer-Longitude": "-122.4194",
    "User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
}


def parse(query: dict[str, str], headers: dict[str, str] | None = None, **kwargs: object) -> AdRequest:
    return parse_request({"exp": "summer", **query}, headers or {}, now=NOW, **kwargs)  # type: ignore[arg-type]


def error_param(query: dict[str, str], headers: dict[str, str] | None = None, **kwargs: object) -> str:
    with pytest.raises(RequestError) as err:
        parse(query, headers, **kwargs)
    return err.value.param


# --- parameters ----------------------------------------------------------------------------------------------


def test_minimal_request_defaults() -> None:
    request = parse({})
    assert request.experience == "summer"
    assert request.format == "html"
    assert (request.size, request.tag, request.user_id, request.request_id, request.seed) == (None,) * 5
    assert request.debug is False
    assert request.now == NOW
    assert request.consent == Consent()
    assert request.signals() == {"device.type": "other"}


def test_missing_exp_is_named() -> None:
    with pytest.raises(RequestError) as err:
        parse_request({"fmt": "js"}, {}, now=NOW)
    assert err.value.param == "exp"
    assert error_param({"exp": "  "}) == "exp"
    assert error_param({"exp": "${EXP}"}) == "exp"


@pytest.mark.parametrize(
    ("param", "good", "expected_attr", "expected"),
    [
        ("size", "300x250", "size", "300x250"),
        ("size", "728X90", "size", "728x90"),
        ("fmt", "VAST", "format", "vast"),
        ("fmt", "json", "format", "json"),
        ("tag", "4", "tag", "4"),
        ("rid", "abc-123", "request_id", "abc-123"),
        ("uid", "u-42", "user_id", "u-42"),
        ("cb", "A1_b-2", "cache_buster", "A1_b-2"),
        ("debug", "1", "debug", True),
        ("debug", "0", "debug", False),
        ("seed", "12345", "seed", 12345),
        ("seed", "0", "seed", 0),
        ("click", "https://dsp.example/c?r=", "click_prefix", "https://dsp.example/c?r="),
        ("click", "http%3A%2F%2Fdsp.example%2Fc%3Fr%3D", "click_prefix", "http://dsp.example/c?r="),
    ],
)
def test_good_values(param: str, good: str, expected_attr: str, expected: object) -> None:
    assert getattr(parse({param: good}), expected_attr) == expected


@pytest.mark.parametrize(
    ("param", "bad"),
    [
        ("size", "300"), ("size", "300x"), ("size", "0x250"), ("size", "300x250x1"), ("size", "99999x1"),
        ("fmt", "xml"), ("fmt", "htm"),
        ("country", "USA"), ("country", "XX"), ("country", "UK"), ("country", "1A"),
        ("lat", "north"), ("lat", "91"), ("lat", "nan"), ("lon", "-180.5"), ("lon", "inf"),
        ("dma", "abc"),
        ("seed", "-1"), ("seed", "1.5"), ("seed", "x"), ("seed", str(2**63)),
        ("gdpr", "2"), ("gdpr", "true"),
        ("us_privacy", "1YYYY"), ("us_privacy", "YNN"),
        ("gpp_sid", "x"),
        ("click", "javascript:alert(1)"), ("click", "//dsp.example/c"), ("click", "ftp://dsp.example/"),
        ("click", "https://"), ("click", "https://dsp.example/a b"),
        ("cb", "a.b"), ("cb", "x" * 65),
        ("debug", "yes"),
        ("tag", "a\x00b"),
        ("t1", "x" * 513),
        ("ctx.Bad-Key", "sunny"),
    ],
)
def test_bad_values_name_the_param(param: str, bad: str) -> None:
    assert error_param({param: bad}) == param


def test_country_hint_in_message() -> None:
    with pytest.raises(RequestError, match="did you mean GB"):
        parse({"country": "uk"})


def test_unknown_parameters_are_ignored() -> None:
    request = parse({"dsp_auction": "x" * 600, "foo": "bar"})
    assert request.signals() == {"device.type": "other"}


@pytest.mark.parametrize("macro", ["${GDPR}", "[GDPR]", "%%GDPR%%", "{gdpr}", "__GDPR__", "%7Bgdpr%7D"])
def test_unexpanded_macros_count_as_absent(macro: str) -> None:
    request = parse({"gdpr": macro, "uid": macro, "cb": macro, "size": macro})
    assert request.consent.gdpr_applies is None
    assert (request.user_id, request.cache_buster, request.size) == (None, None, None)


def test_limits() -> None:
    assert error_param({f"p{i}": "1" for i in range(64)}) == "query"
    assert error_param({"x": "y" * 9000}) == "query"
    assert error_param({"seg": ",".join(f"s{i}" for i in range(101))}) == "seg"
    small = RequestLimits(max_value_length=6, max_segments=2)
    assert error_param({"t1": "abcdefg"}, limits=small) == "t1"
    assert error_param({"seg": "a,b,c"}, limits=small) == "seg"
    assert parse({"seg": "a,b,a"}, limits=small).segments == {"a", "b"}


def test_now_must_be_aware_and_is_converted_to_utc() -> None:
    with pytest.raises(ValueError):
        parse_request({"exp": "e"}, {}, now=datetime(2026, 1, 1))
    paris = datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    request = parse_request({"exp": "e"}, {}, now=paris)
    assert request.now == NOW and request.now.tzinfo is UTC


def test_data_profile_segments_context_are_casefolded() -> None:
    request = parse({
        "t1": " Shoes ", "t5": "STRASSE", "ut2": "Gold", "seg": "Auto-Intender, SPORTS,,", "weather": "Rain",
        "page_cat": "News", "ctx.Mood": "Happy", "t2": "",
    })
    assert request.data == {"t1": "shoes", "t5": "strasse"}
    assert request.profile == {"ut2": "gold"}
    assert request.segments == {"auto-intender", "sports"}
    assert request.context == {"weather": "rain", "page_category": "news", "mood": "happy"}


def test_explicit_context_key_wins_over_shorthand() -> None:
    assert parse({"weather": "rain", "ctx.weather": "snow"}).context == {"weather": "snow"}


# --- headers and geo -----------------------------------------------------------------------------------------


def test_cloudfront_headers() -> None:
    request = parse({}, CLOUDFRONT)
    assert request.geo == Geo("US", "ca", "san francisco", "94103", "807", 37.7749, -122.4194)
    assert request.device == Device("mobile", "safari", "ios", False)


def test_header_names_are_case_insensitive() -> None:
    lowered = {k.lower(): v for k, v in CLOUDFRONT.items()}
    assert parse({}, lowered).geo == parse({}, CLOUDFRONT).geo


def test_city_header_is_url_decoded() -> None:
    assert parse({}, {"CloudFront-Viewer-City": "S%C3%A3o%20Paulo"}).geo.city == "são paulo"


def test_bad_cloudfront_values_are_ignored() -> None:
    geo = parse({}, {"CloudFront-Viewer-Country": "ZZZ", "CloudFront-Viewer-Latitude": "x",
                     "CloudFront-Viewer-Metro-Code": "n/a"}).geo
    assert geo == Geo()


def test_query_overrides_headers_in_the_same_country() -> None:
    geo = parse({"country": "us", "city": "Oakland", "zip": "94607", "dma": "807"}, CLOUDFRONT).geo
    assert geo == Geo("US", "ca", "oakland", "94607", "807", 37.7749, -122.4194)


def test_query_country_elsewhere_drops_header_detail() -> None:
    geo = parse({"country": "CA", "region": "ON", "lat": "43.65", "lon": "-79.38"}, CLOUDFRONT).geo
    assert geo == Geo(country="CA", region="on", lat=43.65, lon=-79.38)


def test_client_hints_override_the_agent() -> None:
    headers = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/124.0.0.0 Safari/537.36", "Sec-CH-UA-Mobile": "?1", "Sec-CH-UA-Platform": '"Android"'}
    assert parse({}, headers).device == Device("mobile", "chrome", "android", False)


def test_cloudfront_device_headers_when_no_agent() -> None:
    assert parse({}, {"CloudFront-Is-Tablet-Viewer": "true", "CloudFront-Is-Mobile-Viewer": "false"}).device == \
        Device("tablet")
    assert parse({}, {"CloudFront-Is-SmartTV-Viewer": "true"}).device.type == "tv"
    assert parse({}, {"CloudFront-Is-Desktop-Viewer": "true"}).device.type == "desktop"


def test_ssai_device_agent_header_wins() -> None:
    headers = {"User-Agent": "curl/8.4.0", "X-Device-User-Agent": "Roku/DVP-12.5 (12.5.0.4178-AE)"}
    assert device_from_headers({k.lower(): v for k, v in headers.items()}).type == "tv"


# --- device corpus -------------------------------------------------------------------------------------------

# (agent, type, browser, os, is_bot); browser/os as ua-parser names them, case-folded and aliased.
CORPUS = [
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Mobile/15E148 Safari/604.1", "mobile", "safari", "ios", False),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
     "Mobile Safari/537.36", "mobile", "chrome", "android", False),
    ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 "
     "Mobile/15E148 Safari/604.1", "tablet", "safari", "ios", False),
    ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
     "Safari/537.36", "tablet", "chrome", "android", False),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
     "Safari/537.36", "desktop", "chrome", "windows", False),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
     "Safari/537.36 Edg/124.0.2478.51", "desktop", "edge", "windows", False),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
     "Safari/605.1.15", "desktop", "safari", "macos", False),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "desktop", "firefox", "linux",
     False),
    ("Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0", "mobile", "firefox", "android",
     False),
    ("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36", "mobile", "samsung internet", "android", False),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1", "mobile", "chrome", "ios", False),
    ("Mozilla/5.0 (Linux; Android 11; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/124.2.1 "
     "like Chrome/124.0.6367.118 Safari/537.36", "tablet", "amazon silk", "android", False),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
     "Safari/537.36", "desktop", "chrome", "chrome os", False),
    ("Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3945.79 "
     "Safari/537.36 WebAppManager", "tv", "chrome", "webos", False),
    ("Roku/DVP-12.5 (12.5.0.4178-AE)", "tv", "roku", "roku", False),
    ("AppleCoreMedia/1.0.0.21E236 (Apple TV; U; CPU OS 17_4 like Mac OS X; en_us)", "tv", None, "tvos", False),
    ("Mozilla/5.0 (Linux; Android 12; CUBOT X50) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
     "Mobile Safari/537.36", "mobile", "chrome", "android", False),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "other", "googlebot", None,
     True),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "other", "bingbot", None, True),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.6367.29 "
     "Safari/537.36", "other", "headlesschrome", "linux", True),
    ("curl/8.4.0", "other", "curl", None, True),
    ("python-requests/2.31.0", "other", "python requests", None, True),
]


@pytest.mark.parametrize(("agent", "type_", "browser", "os", "bot"), CORPUS)
def test_device_corpus(agent: str, type_: str, browser: str | None, os: str | None, bot: bool) -> None:
    assert classify_uncached(agent) == Device(type_, browser, os, bot)


@pytest.mark.parametrize(("agent", "type_", "browser", "os", "bot"), CORPUS)
def test_fallback_classifier_agrees_on_type_and_bot(
    agent: str, type_: str, browser: str | None, os: str | None, bot: bool
) -> None:
    # Without ua-parser (Pyodide) the type and bot flag are the same; the families are coarse.
    device = classify_uncached(agent, use_ua_parser=False)
    assert (device.type, device.is_bot) == (type_, bot)
    if browser in ("chrome", "safari", "firefox", "edge", "samsung internet") and not bot:
        assert device.browser == browser
    if os in ("ios", "android", "windows", "macos", "chrome os"):
        assert device.os == os


@pytest.mark.parametrize(
    "agent",
    ["AhrefsBot/7.0", "Mozilla/5.0 (compatible; GPTBot/1.2; +https://openai.com/gptbot)",
     "facebookexternalhit/1.1", "Wget/1.21", "Go-http-client/2.0", "SomeCrawler/1.0", "Mozilla/5.0 (compatible; Foo bot)"],
)
def test_bots(agent: str) -> None:
    assert is_bot(agent)


@pytest.mark.parametrize("agent", ["", None, "okhttp/4.12.0", CORPUS[0][0], CORPUS[16][0]])
def test_not_bots(agent: str | None) -> None:
    assert not is_bot(agent)


def test_bot_traffic_keeps_type_other_despite_hints() -> None:
    headers = {"user-agent": CORPUS[17][0], "sec-ch-ua-mobile": "?1"}
    assert device_from_headers(headers) == Device("other", "googlebot", None, True)


# --- consent in the request ----------------------------------------------------------------------------------

USER_LEVEL = {"uid": "u-1", "ut1": "Gold", "seg": "a,b", "rid": "r-1"}


def test_personal_inputs_kept_with_consent() -> None:
    request = parse(USER_LEVEL)
    assert (request.user_id, request.profile, request.segments) == ("u-1", {"ut1": "gold"}, {"a", "b"})
    assert request.holdout_key() == "u:u-1"


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ({"gdpr": "1"}, {}),
        ({"gdpr": "1", "gdpr_consent": "garbage"}, {}),
        ({"us_privacy": "1YYN"}, {}),
        ({}, {"Sec-GPC": "1"}),
        ({}, {"CloudFront-Viewer-Country": "DE"}),
    ],
)
def test_personal_inputs_dropped_without_consent(query: dict[str, str], headers: dict[str, str]) -> None:
    request = parse({**USER_LEVEL, **query, "ut2": "x" * 600}, headers)  # not even validated
    assert (request.user_id, request.profile, request.segments) == (None, {}, frozenset())
    assert "ut1" not in request.signals()
    assert request.holdout_key() == "r:r-1"
    assert not request.consent.personalization_allowed


def test_precise_geo_dropped_under_gdpr_without_special_feature() -> None:
    request = parse({"gdpr": "1", "lat": "48.85", "lon": "2.35", "country": "FR"})
    assert (request.geo.lat, request.geo.lon, request.geo.country) == (None, None, "FR")


def test_holdout_key_fallbacks() -> None:
    assert parse({"rid": "r"}).holdout_key() == "r:r"
    assert parse({"cb": "c1"}).holdout_key() == "c:c1"
    assert parse({}).holdout_key() == f"t:{NOW.isoformat()}|summer"


# --- signals -------------------------------------------------------------------------------------------------


def test_signals_exactly_per_docs() -> None:
    request = parse(
        {"t1": "Shoes", "ut1": "VIP", "ctx.weather": "Sunny", "page_cat": "Sport", "seg": "x",
         "region": "NY", "city": "New York", "zip": "10001", "dma": "501", "country": "us"},
        {"User-Agent": CORPUS[4][0]},
    )
    assert request.signals() == {
        "geo.country": "US",
        "geo.region": "ny",
        "geo.city": "new york",
        "geo.postal": "10001",
        "geo.dma": "501",
        "device.type": "desktop",
        "device.browser": "chrome",
        "device.os": "windows",
        "t1": "shoes",
        "ut1": "vip",
        "context.weather": "sunny",
        "context.page_category": "sport",
    }
    assert request.segments == {"x"}


def test_signals_is_a_fresh_dict() -> None:
    request = parse({"t1": "a"})
    request.signals()["t1"] = "mutated"
    assert request.signals()["t1"] == "a"
