"""Consent: TCF v2 and GPP decoding, and the consent matrix of docs/request.md.

TC and GPP strings are built here with a small bit writer, field by field, so every test says which purposes,
vendors and opt-outs its string carries.
"""

from __future__ import annotations

import pytest
from dco.consent import Consent, decode_gpp, decode_tc_string, parse_consent
from dco.errors import RequestError

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[str] = []

    def int(self, value: int, width: int) -> BitWriter:
        self.bits.append(format(value, f"0{width}b"))
        return self

    def flags(self, ids: set[int], width: int) -> BitWriter:
        return self.int(sum(1 << (width - i) for i in ids), width)

    def letters(self, two: str) -> BitWriter:
        return self.int(ord(two[0]) - 65, 6).int(ord(two[1]) - 65, 6)

    def fibonacci(self, value: int) -> BitWriter:
        fibs = [1, 2]
        while fibs[-1] <= value:
            fibs.append(fibs[-1] + fibs[-2])
        code = ["0"] * len(fibs)
        for i in range(len(fibs) - 1, -1, -1):
            if fibs[i] <= value:
                code[i], value = "1", value - fibs[i]
        self.bits.append("".join(code).rstrip("0") + "1")
        return self

    def encode(self) -> str:
        s = "".join(self.bits)
        s += "0" * (-len(s) % 6)
        return "".join(_ALPHABET[int(s[i : i + 6], 2)] for i in range(0, len(s), 6))


def tc_string(
    purposes: set[int] = frozenset(),
    *,
    special_features: set[int] = frozenset(),
    vendors: set[int] | None = None,
    ranges: list[tuple[int, int]] | None = None,
    version: int = 2,
) -> str:
    w = (
        BitWriter().int(version, 6).int(16504920000, 36).int(16504920000, 36).int(31, 12).int(640, 12)
        .int(1, 6).letters("EN").int(126, 12).int(4, 6).int(0, 1).int(0, 1).flags(special_features, 12)
        .flags(purposes, 24).flags(set(), 24).int(0, 1).letters("DE")
    )
    if ranges is not None:
        w.int(max(end for _, end in ranges), 16).int(1, 1).int(len(ranges), 12)
        for start, end in ranges:
            w.int(int(start != end), 1).int(start, 16)
            if start != end:
                w.int(end, 16)
    else:
        vendors = vendors or set()
        top = max(vendors, default=0)
        w.int(top, 16).int(0, 1).flags(vendors, top) if top else w.int(0, 16).int(0, 1)
    return w.encode()


def gpp_string(sections: dict[int, str]) -> str:
    ids = sorted(sections)
    w = BitWriter().int(3, 6).int(1, 6).int(len(ids), 12)
    previous = 0
    for sid in ids:
        w.int(0, 1).fibonacci(sid - previous)
        previous = sid
    return "~".join([w.encode(), *(sections[s] for s in ids)])


def us_section(offsets: dict[int, int], length: int = 40) -> str:
    bits = ["0"] * length
    bits[0:6] = "000001"
    for offset, value in offsets.items():
        bits[offset : offset + 2] = format(value, "02b")
    return BitWriter().int(int("".join(bits), 2), length).encode()


ALL_ADS = {1, 2, 3, 4, 7}
# A TC string from the wild (GPP documentation example, CMP 31, 2022): a valid v2 core with no purposes.
REAL_GPP = "DBACNY~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN"
REAL_TC = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"


# --- decoding ------------------------------------------------------------------------------------------------


def test_decode_tc_string_reads_the_core_fields() -> None:
    tcf = decode_tc_string(tc_string({1, 3, 4}, special_features={1}))
    assert (tcf.version, tcf.cmp_id, tcf.cmp_version, tcf.consent_language, tcf.publisher_cc) == (
        2, 31, 640, "EN", "DE"
    )
    assert tcf.purposes_consent == {1, 3, 4}
    assert tcf.special_features == {1}
    assert tcf.vendor_consent is None


def test_decode_real_tc_string() -> None:
    tcf = decode_tc_string(REAL_TC)
    assert (tcf.version, tcf.cmp_id, tcf.cmp_version, tcf.consent_language, tcf.publisher_cc) == (
        2, 31, 640, "EN", "DE"
    )
    assert tcf.vendor_list_version == 126
    assert tcf.created == 16504920000  # deciseconds: 2022-04-20
    assert tcf.purposes_consent == frozenset()


def test_decode_ignores_segments_after_the_core() -> None:
    core = tc_string({1})
    assert decode_tc_string(core + ".YAAAAAAAAAAA").purposes_consent == {1}


@pytest.mark.parametrize(
    "bad",
    ["", "not base64!", "CPXx", tc_string({1}, version=1), "A" * 10, "C" + "=" * 10],
)
def test_decode_rejects_malformed_tc_strings(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_tc_string(bad)


def test_vendor_consent_bitfield_and_ranges() -> None:
    bitfield = tc_string(ALL_ADS, vendors={5, 755})
    assert decode_tc_string(bitfield, vendor_id=755).vendor_consent is True
    assert decode_tc_string(bitfield, vendor_id=5).vendor_consent is True
    assert decode_tc_string(bitfield, vendor_id=6).vendor_consent is False
    assert decode_tc_string(bitfield, vendor_id=9999).vendor_consent is False
    ranged = tc_string(ALL_ADS, ranges=[(3, 3), (100, 800)])
    assert decode_tc_string(ranged, vendor_id=755).vendor_consent is True
    assert decode_tc_string(ranged, vendor_id=3).vendor_consent is True
    assert decode_tc_string(ranged, vendor_id=50).vendor_consent is False


def test_decode_gpp_header_of_a_real_string() -> None:
    assert decode_gpp(REAL_GPP) == {2: REAL_TC, 6: "1YNN"}


def test_decode_gpp_round_trips_the_writer() -> None:
    sections = {2: "x", 7: "y", 8: "z", 12: "w"}
    assert decode_gpp(gpp_string(sections)) == sections


@pytest.mark.parametrize("bad", ["", "!!", "DBACNY~only-one", "CBACNY~a~b", "DB"])
def test_decode_gpp_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_gpp(bad)


# --- the consent matrix --------------------------------------------------------------------------------------


def test_no_signals_allows_everything() -> None:
    consent = parse_consent()
    assert consent == Consent()
    assert consent.personalization_allowed and consent.storage_allowed
    assert consent.reason == "no privacy signals"


@pytest.mark.parametrize(
    ("gdpr", "purposes", "personal", "storage"),
    [
        ("1", ALL_ADS, True, True),
        ("1", {1, 3, 4}, True, True),
        ("1", {1}, False, True),
        ("1", {1, 3}, False, True),
        ("1", {3, 4}, False, False),
        ("1", set(), False, False),
        ("0", set(), True, True),  # gdpr=0 is believed; the TC string is not read
    ],
)
def test_gdpr_purposes(gdpr: str, purposes: set[int], personal: bool, storage: bool) -> None:
    consent = parse_consent(gdpr, tc_string(purposes))
    assert (consent.personalization_allowed, consent.storage_allowed) == (personal, storage)
    assert consent.gdpr_applies is (gdpr == "1")


@pytest.mark.parametrize("tc", [None, "", "garbage!", "CPXx", tc_string(ALL_ADS, version=1)])
def test_gdpr_without_a_valid_tc_string_allows_nothing(tc: str | None) -> None:
    consent = parse_consent("1", tc)
    assert not consent.personalization_allowed
    assert not consent.storage_allowed
    assert consent.reason.startswith("gdpr: ")


def test_malformed_tc_string_is_recorded_not_raised() -> None:
    consent = parse_consent("1", "%%%")
    assert "malformed TC string" in consent.reason
    assert consent.tcf is None


def test_overlong_tc_string_counts_as_malformed() -> None:
    consent = parse_consent("1", tc_string(ALL_ADS) + "A" * 100, max_length=50)
    assert not consent.storage_allowed
    assert "longer than 50" in consent.reason


def test_gpc_under_gdpr_withholds_personalisation_not_storage() -> None:
    consent = parse_consent("1", tc_string(ALL_ADS), gpc=True)
    assert (consent.personalization_allowed, consent.storage_allowed) == (False, True)
    assert "Sec-GPC" in consent.reason


def test_vendor_id_requires_vendor_consent() -> None:
    assert parse_consent("1", tc_string(ALL_ADS, vendors={42}), vendor_id=42).personalization_allowed
    consent = parse_consent("1", tc_string(ALL_ADS, vendors={41}), vendor_id=42)
    assert not consent.personalization_allowed and not consent.storage_allowed
    assert "vendor 42" in consent.reason


@pytest.mark.parametrize(
    ("gdpr", "gpc", "usp", "personal"),
    [
        (None, False, None, True),
        ("0", False, None, True),
        (None, True, None, False),
        ("0", True, None, False),
        (None, False, "1YNN", True),
        (None, False, "1YYN", False),
        ("0", False, "1NYY", False),
        (None, False, "1---", True),
        (None, False, "1yyn", False),  # case-insensitive
    ],
)
def test_outside_gdpr_opt_outs(gdpr: str | None, gpc: bool, usp: str | None, personal: bool) -> None:
    consent = parse_consent(gdpr, None, us_privacy=usp, gpc=gpc)
    assert consent.personalization_allowed is personal
    assert consent.storage_allowed is personal


def test_gdpr_is_inferred_from_an_eea_country_when_absent() -> None:
    consent = parse_consent(country="DE")
    assert consent.gdpr_applies is True and not consent.personalization_allowed
    assert "inferred" in consent.reason
    assert parse_consent(None, tc_string(ALL_ADS), country="FR").personalization_allowed
    assert parse_consent("0", country="DE").personalization_allowed  # explicit gdpr=0 wins
    assert parse_consent(country="US").personalization_allowed


@pytest.mark.parametrize(
    ("param", "kwargs"),
    [
        ("gdpr", {"gdpr": "2"}),
        ("gdpr", {"gdpr": "yes"}),
        ("us_privacy", {"us_privacy": "1YN"}),
        ("us_privacy", {"us_privacy": "2YNN"}),
        ("us_privacy", {"us_privacy": "1XNN"}),
        ("gpp_sid", {"gpp_sid": "7,a"}),
        ("gpp_sid", {"gpp_sid": "7;8"}),
    ],
)
def test_malformed_fixed_syntax_params_raise(param: str, kwargs: dict[str, str]) -> None:
    with pytest.raises(RequestError) as err:
        parse_consent(**kwargs)
    assert err.value.param == param


# --- GPP -----------------------------------------------------------------------------------------------------


def test_gpp_tcf_section_applies_gdpr() -> None:
    gpp = gpp_string({2: tc_string(ALL_ADS)})
    consent = parse_consent(gpp=gpp, gpp_sid="2")
    assert consent.gdpr_applies and consent.personalization_allowed
    assert consent.gpp_sections == (2,)
    assert not parse_consent(gpp=REAL_GPP, gpp_sid="2").storage_allowed  # the real string has no purposes


def test_gpp_uspv1_section() -> None:
    assert parse_consent(gpp=REAL_GPP, gpp_sid="6").personalization_allowed
    assert not parse_consent(gpp=gpp_string({6: "1YYN"}), gpp_sid="6").personalization_allowed


@pytest.mark.parametrize(
    ("sid", "offsets", "personal"),
    [
        (7, {18: 2, 20: 2, 22: 2}, True),  # usnat: did not opt out of sale, sharing, targeted ads
        (7, {18: 2, 20: 2, 22: 1}, False),  # usnat: opted out of targeted advertising
        (7, {18: 1}, False),  # usnat: opted out of sale
        (7, {}, True),  # usnat: all not applicable
        (8, {12: 2, 14: 1}, False),  # usca: opted out of sharing
        (8, {12: 2, 14: 2}, True),
        (9, {12: 2, 14: 1}, False),  # usva: targeted advertising opt-out
        (10, {12: 1}, False),  # usco: sale opt-out
        (11, {14: 2, 16: 1}, False),  # usut: targeted advertising opt-out
        (12, {12: 2, 14: 2}, True),  # usct
    ],
)
def test_gpp_us_sections(sid: int, offsets: dict[int, int], personal: bool) -> None:
    gpp = gpp_string({sid: us_section(offsets)})
    consent = parse_consent(gpp=gpp, gpp_sid=str(sid))
    assert consent.personalization_allowed is personal
    assert consent.gdpr_applies is None


def test_gpp_conservative_cases() -> None:
    # a US state section this module does not decode
    assert not parse_consent(gpp=gpp_string({13: us_section({})}), gpp_sid="13").personalization_allowed
    # gpp_sid names a section the string does not carry
    assert "missing" in parse_consent(gpp=gpp_string({7: us_section({})}), gpp_sid="8").reason
    # undecodable GPP string
    consent = parse_consent(gpp="not~gpp", gpp_sid="7")
    assert not consent.personalization_allowed and "gpp undecodable" in consent.reason
    # a section present but not applicable is not read
    gpp = gpp_string({6: "1YYN", 7: us_section({18: 2})})
    assert parse_consent(gpp=gpp, gpp_sid="7").personalization_allowed
    # without gpp_sid every section in the string applies
    assert not parse_consent(gpp=gpp).personalization_allowed


def test_gpp_sid_negative_means_none() -> None:
    assert parse_consent(gpp=gpp_string({6: "1YYN"}), gpp_sid="-1").personalization_allowed
