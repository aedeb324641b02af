"""Signed tracking tokens, event keys and tracking URLs."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import msgpack
import pytest
from dco.errors import RequestError, TokenError
from dco.tracking import (
    MAX_TOKEN_CHARS,
    PATH_TO_KIND,
    TokenClaims,
    event_key,
    make_decision_id,
    sign,
    tracking_urls,
    verify,
)

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
KEYS = {"k1": b"k1-secret-0123456789abcdef012345", "k2": b"k2-secret-0123456789abcdef012345"}
CLAIMS = TokenClaims(
    campaign="spring", experience="exp-300x250", arm="cr-2|p-123", creative="cr-2", product="p-123",
    variants=("hl-1", "img-3"), snapshot="2026-01-01T00:00:00Z-7", decision_id="d-abc", issued_at=NOW,
    holdout=False,
)
PAYLOADS = [
    json.loads(line)
    for line in (Path(__file__).parent / "fixtures" / "xss_payloads.txt").read_text("utf-8").splitlines()
    if line.strip() and not line.startswith("#")
]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def code_of(token: object, keys: dict[str, bytes] = KEYS, **kwargs: object) -> str:
    with pytest.raises(TokenError) as err:
        verify(token, keys, **{"now": NOW, **kwargs})  # type: ignore[arg-type]
    return err.value.code


# ------------------------------------------------------------------------------------------- round trip


def test_round_trip_restores_every_claim() -> None:
    token = sign(CLAIMS, KEYS, "k1")
    assert verify(token, KEYS, now=NOW + 60) == dataclasses.replace(CLAIMS, kid="k1")


def test_context_rides_as_an_optional_twelfth_element() -> None:
    with_context = dataclasses.replace(CLAIMS, context=(("device", "mobile"), ("region", "pnw")))
    token = sign(with_context, KEYS, "k1")
    assert verify(token, KEYS, now=NOW) == dataclasses.replace(with_context, kid="k1")
    assert len(msgpack.unpackb(unb64(token.split(".")[1]), raw=False)) == 12
    # Without context the payload keeps the 11-element shape of earlier tokens.
    assert len(msgpack.unpackb(unb64(sign(CLAIMS, KEYS, "k1").split(".")[1]), raw=False)) == 11


def test_token_is_compact_and_url_safe() -> None:
    token = sign(CLAIMS, KEYS, "k1")
    version, payload, mac = token.split(".")
    assert version == "v1" and len(mac) == 43 and len(unb64(mac)) == 32
    assert set(token) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    assert len(token) < 250


def test_signing_is_deterministic_and_kid_rotates() -> None:
    assert sign(CLAIMS, KEYS, "k1") == sign(CLAIMS, KEYS, "k1")
    new = sign(CLAIMS, KEYS, "k2")
    assert verify(new, KEYS, now=NOW).kid == "k2"
    assert code_of(new, {"k1": KEYS["k1"]}) == "unknown_key"  # a retired key's tokens stop verifying


def test_holdout_product_none_and_empty_variants_round_trip() -> None:
    claims = dataclasses.replace(CLAIMS, product=None, variants=(), holdout=True)
    assert verify(sign(claims, KEYS, "k1"), KEYS, now=NOW) == dataclasses.replace(claims, kid="k1")


@pytest.mark.parametrize("payload", PAYLOADS[:20] + PAYLOADS[-5:])
def test_any_claim_text_round_trips(payload: str) -> None:
    claims = dataclasses.replace(CLAIMS, campaign=payload[:100], arm=payload, variants=(payload,))
    try:
        token = sign(claims, KEYS, "k1")
    except ValueError:  # lone surrogates cannot be encoded; the signer refuses rather than mangles
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in payload)
        return
    assert verify(token, KEYS, now=NOW) == dataclasses.replace(claims, kid="k1")


# ------------------------------------------------------------------------------------------- tampering


def resign_payload(token: str, items: list[object]) -> str:
    """The token with its payload replaced and the original MAC kept (a forgery attempt)."""
    version, _, mac = token.split(".")
    return f"{version}.{b64(msgpack.packb(items, use_bin_type=True))}.{mac}"


@pytest.mark.parametrize(
    ("index", "value"),
    [(0, "other"), (1, "exp-2"), (2, "cr-9|p-1"), (3, "cr-9"), (4, "p-999"), (4, None), (5, ["hl-2"]),
     (6, "snap-0"), (7, "d-xyz"), (8, NOW + 1), (9, True)],
)
def test_tampering_any_claim_breaks_the_signature(index: int, value: object) -> None:
    token = sign(CLAIMS, KEYS, "k1")
    items = msgpack.unpackb(unb64(token.split(".")[1]), raw=False)
    assert items[index] != value
    items[index] = value
    assert code_of(resign_payload(token, items)) == "bad_signature"


def test_tampering_the_kid() -> None:
    token = sign(CLAIMS, KEYS, "k1")
    items = msgpack.unpackb(unb64(token.split(".")[1]), raw=False)
    assert code_of(resign_payload(token, [*items[:10], "k2"])) == "bad_signature"
    assert code_of(resign_payload(token, [*items[:10], "k9"])) == "unknown_key"


def test_tampering_the_signature() -> None:
    token = sign(CLAIMS, KEYS, "k1")
    version, payload, mac = token.split(".")
    flipped = mac[:10] + ("A" if mac[10] != "A" else "B") + mac[11:]
    assert code_of(f"{version}.{payload}.{flipped}") == "bad_signature"
    other_key = sign(CLAIMS, {"k1": b"another-secret-0123456789abcdef"}, "k1")
    assert code_of(other_key) == "bad_signature"
    assert code_of(f"{version}.{payload}.{b64(unb64(mac)[:16])}") == "malformed"  # truncated MAC


# ------------------------------------------------------------------------------------------- time, campaign


def test_expiry_and_future_bounds() -> None:
    token = sign(CLAIMS, KEYS, "k1")
    assert verify(token, KEYS, now=NOW + 86_400).decision_id == "d-abc"
    assert code_of(token, now=NOW + 86_401) == "expired"
    assert code_of(token, now=NOW + 61, max_age=60) == "expired"
    assert verify(token, KEYS, now=NOW - 300).decision_id == "d-abc"
    assert code_of(token, now=NOW - 301) == "future"


def test_unknown_campaign() -> None:
    token = sign(CLAIMS, KEYS, "k1")
    assert verify(token, KEYS, now=NOW, campaigns={"spring", "fall"}).campaign == "spring"
    assert code_of(token, campaigns={"fall"}) == "unknown_campaign"
    assert code_of(token, campaigns=frozenset()) == "unknown_campaign"


# ------------------------------------------------------------------------------------------- malformed


def _malformed_corpus() -> list[object]:
    good = sign(CLAIMS, KEYS, "k1")
    version, payload, mac = good.split(".")
    huge_array = bytes([0xDD, 0xFF, 0xFF, 0xFF, 0xFF])
    return [
        "", ".", "..", "...", "v1", "v1.", "v1..", "v1.x", "nodots", "v2." + payload + "." + mac,
        "V1." + payload + "." + mac, f"{version}.{payload}.{mac}.extra", f"{version}..{mac}", f"{version}.{payload}.",
        f"{version}.{payload}!.{mac}", f"{version}.{payload}={mac}", f"{version}.{payload}.{mac}=",
        f"{version}.{payload}+/.{mac}", f"{version}.a.{mac}", f"{version}.{payload[:-1]}.{mac}",
        f" {good}", f"{good}\n", good.replace("v1.", "v1.\u00e9"), "v1.AAAA.AAAA",
        f"{version}.{b64(b'not msgpack at all')}.{mac}", f"{version}.{b64(msgpack.packb({'a': 1}))}.{mac}",
        f"{version}.{b64(msgpack.packb([1] * 11))}.{mac}", f"{version}.{b64(msgpack.packb(['x'] * 12))}.{mac}",
        f"{version}.{b64(msgpack.packb(['c', 'e', 'a', 'cr', None, [], 's', 'd', True, False, 'k1']))}.{mac}",
        f"{version}.{b64(msgpack.packb(['c', 'e', 'a', 'cr', None, [1], 's', 'd', 1, False, 'k1']))}.{mac}",
        f"{version}.{b64(msgpack.packb(['c', 'e', 'a', 'cr', None, [], 's', 'd', 1, 0, 'k1']))}.{mac}",
        f"{version}.{b64(msgpack.packb(['c', 'e', 'a', b'cr', None, [], 's', 'd', 1, False, 'k1'], use_bin_type=True))}.{mac}",
        f"{version}.{b64(msgpack.packb([*['c'] * 11]) + b'extra')}.{mac}",
        f"{version}.{b64(huge_array)}.{mac}",  # an array32 header claiming 4 billion items
        "v1." + "A" * (MAX_TOKEN_CHARS + 1) + "." + mac, good + "A" * MAX_TOKEN_CHARS,
        None, 42, b"v1.abc.def",
    ]


@pytest.mark.parametrize("token", _malformed_corpus(), ids=range(len(_malformed_corpus())))
def test_malformed_tokens(token: object) -> None:
    assert code_of(token) == "malformed"


@pytest.mark.parametrize("token", PAYLOADS)
def test_payload_corpus_is_never_a_token(token: str) -> None:
    assert code_of(token) == "malformed"


def test_signer_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        sign(CLAIMS, KEYS, "k9")
    with pytest.raises(ValueError):
        sign(CLAIMS, {"short": b"0123456789"}, "short")
    with pytest.raises(ValueError):
        sign(dataclasses.replace(CLAIMS, issued_at="now"), KEYS, "k1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sign(dataclasses.replace(CLAIMS, variants=tuple(f"variant-{i}" for i in range(300))), KEYS, "k1")


# ------------------------------------------------------------------------------------------- ids and keys


def test_make_decision_id_is_deterministic_and_url_safe() -> None:
    a = make_decision_id(b"req-1|snap-7|0.123")
    assert a == make_decision_id(b"req-1|snap-7|0.123") != make_decision_id(b"req-2|snap-7|0.123")
    assert len(a) == 22 and set(a) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def test_event_keys() -> None:
    assert event_key("impression", CLAIMS) == "imp#d-abc"
    assert event_key("click", CLAIMS) == "click#d-abc"
    assert event_key("conversion", CLAIMS) == "conv#d-abc"
    first = event_key("conversion", CLAIMS, "order-1")
    assert first == event_key("conversion", CLAIMS, "order-1") != event_key("conversion", CLAIMS, "order-2")
    assert first.startswith("conv#d-abc#") and len(first) == len("conv#d-abc#") + 22
    other = dataclasses.replace(CLAIMS, decision_id="d-other")
    assert event_key("click", other) != event_key("click", CLAIMS)
    with pytest.raises(ValueError):
        event_key("view", CLAIMS)
    with pytest.raises(ValueError):
        event_key("click", CLAIMS, "order-1")
    assert set(PATH_TO_KIND.values()) == {"impression", "click", "conversion"}


# ------------------------------------------------------------------------------------------- URLs


def test_tracking_urls() -> None:
    token = sign(CLAIMS, KEYS, "k1")
    urls = tracking_urls("https://track.example/prod/", token, click_prefix=None, cache_buster="123abc")
    assert urls.impression == f"https://track.example/prod/v1/events/imp?t={token}&cb=123abc"
    assert urls.click == f"https://track.example/prod/v1/events/click?t={token}"
    assert urls.conversion_ref == f"https://track.example/prod/v1/events/conv?t={token}"
    assert parse_qs(urlsplit(urls.impression).query) == {"t": [token], "cb": ["123abc"]}
    plain = tracking_urls("http://127.0.0.1:3000", token)
    assert plain.impression == f"http://127.0.0.1:3000/v1/events/imp?t={token}"


def test_cache_buster_is_encoded() -> None:
    urls = tracking_urls("https://t.example", "v1.a.b", cache_buster="a b&c=<d>")
    assert urls.impression.endswith("&cb=a%20b%26c%3D%3Cd%3E")


def test_click_prefix_wraps_our_click_url() -> None:
    token = sign(CLAIMS, KEYS, "k1")
    prefix = "https://dsp.example/clk?campaign=9&redir="
    urls = tracking_urls("https://track.example", token, click_prefix=prefix)
    ours = f"https://track.example/v1/events/click?t={token}"
    assert urls.click.startswith(prefix)
    encoded = urls.click[len(prefix):]
    assert "/" not in encoded and "?" not in encoded and "=" not in encoded and "&" not in encoded
    assert unquote(encoded) == ours
    assert parse_qs(urlsplit(urls.click).query)["redir"] == [ours]


@pytest.mark.parametrize("prefix", ["javascript:alert(1)//", "//dsp.example/c?r=", "data:,x", "https://dsp.example/\"x"])
def test_unsafe_click_prefix_is_a_request_error(prefix: str) -> None:
    with pytest.raises(RequestError) as err:
        tracking_urls("https://t.example", "v1.a.b", click_prefix=prefix)
    assert err.value.param == "click_prefix"


@pytest.mark.parametrize("base", ["ftp://t.example", "t.example", "/v1", "javascript:alert(1)", ""])
def test_base_url_must_be_http(base: str) -> None:
    with pytest.raises(ValueError):
        tracking_urls(base, "v1.a.b")
