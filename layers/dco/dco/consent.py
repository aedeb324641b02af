"""Privacy signals of an ad request and what they allow: personalisation and user-level storage.

:func:`parse_consent` turns the raw privacy parameters of a tag (``gdpr``, ``gdpr_consent``, ``gpp``,
``gpp_sid``, ``us_privacy``) and the ``Sec-GPC`` header into one frozen :class:`Consent` that says whether
personalisation (profile keys, segments, the user id) is allowed, whether user-level storage is allowed (keeping
user ids and user-level events), and why, in ``reason``. :mod:`dco.request` drops the user-level inputs of a
request that does not allow personalisation before anything else sees them.

The TCF v2 TC string and the GPP string are decoded here, without a dependency (:func:`decode_tc_string`,
:func:`decode_gpp`). A consent string that does not decode is never an error: it is not ours to reject, so it
counts as *no consent* and the reason says why. Parameters with a fixed small syntax that we define the reading
of (``gdpr``, ``us_privacy``, ``gpp_sid``) are validated and raise :class:`~dco.errors.RequestError`.

The rules (docs/request.md has the long form):

- GDPR applies when ``gdpr=1``; when ``gdpr`` is absent, when ``gpp_sid`` lists section 2 (TCF EU v2) or the
  viewer's country is in the EEA, the UK or Switzerland. ``gdpr=0`` is believed.
- Under GDPR: storage needs TCF purpose 1 consent; personalisation needs consent to purposes 1, 3 and 4 (TCF 2.2
  kept purposes 3 and 4 separate and removed legitimate interest as a basis for them, so only consent bits
  count); with a configured ``vendor_id`` both also need that vendor's consent. A missing or undecodable TC
  string allows neither. ``Sec-GPC: 1`` additionally withholds personalisation.
- Outside GDPR: both are allowed unless the viewer opted out: ``Sec-GPC: 1``, ``us_privacy`` with ``Y`` in
  the third place (opted out of sale), or an applicable GPP US section with a sale, sharing or targeted-
  advertising opt-out. An applicable GPP section this module cannot read (a US state section past Connecticut,
  Canada's TCF) and an undecodable GPP string count as an opt-out: unknown means no.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from dco.errors import RequestError

# EU member states (with outermost regions that have their own ISO code), the rest of the EEA, the UK (UK GDPR)
# and Switzerland (revFADP, which TCF serves too).
_EEA_UK_CH = """AT BE BG HR CY CZ DK EE FI FR DE GR IE IT LV LT LU MT NL PL PT RO SK SI ES SE
GF GP MQ RE YT MF AX IS LI NO GB CH"""
GDPR_COUNTRIES: frozenset[str] = frozenset(_EEA_UK_CH.split())

PURPOSE_STORAGE = 1  # Store and/or access information on a device
PURPOSES_PERSONALISED_ADS = (1, 3, 4)  # plus 3: create profiles for ads, 4: use profiles to select ads
SPECIAL_FEATURE_PRECISE_GEO = 1

GPP_TCF_EU_V2 = 2
GPP_HEADER = 3
GPP_SIGNAL_INTEGRITY = 4
GPP_US_PRIVACY = 6
GPP_US_NATIONAL = 7
# US sections we decode: section id -> (name, bit offsets of the opt-out fields after the 6-bit version).
GPP_US_OPT_OUT_BITS: dict[int, tuple[str, tuple[int, ...]]] = {
    7: ("usnat", (18, 20, 22)),  # SaleOptOut, SharingOptOut, TargetedAdvertisingOptOut
    8: ("usca", (12, 14)),  # SaleOptOut, SharingOptOut
    9: ("usva", (12, 14)),  # SaleOptOut, TargetedAdvertisingOptOut
    10: ("usco", (12, 14)),
    11: ("usut", (14, 16)),
    12: ("usct", (12, 14)),
}
GPP_OPTED_OUT = 1  # 0 not applicable, 1 opted out, 2 did not opt out

MAX_CONSENT_LENGTH = 4096

_US_PRIVACY = re.compile(r"1[YN-][YN-][YN-]")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class TcfConsent:
    """The core segment of a TCF v2 TC string (times in deciseconds since the epoch, as encoded)."""

    version: int
    created: int
    last_updated: int
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str
    vendor_list_version: int
    policy_version: int
    is_service_specific: bool
    special_features: frozenset[int]
    purposes_consent: frozenset[int]
    purposes_legitimate_interest: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str
    vendor_consent: bool | None = None  # for the vendor id asked about; None when none was asked

    def has_purposes(self, purposes: Iterable[int]) -> bool:
        return all(p in self.purposes_consent for p in purposes)


@dataclass(frozen=True)
class Consent:
    """What the privacy signals of one request allow. The default is a request without any privacy signal."""

    gdpr_applies: bool | None = None
    tcf: TcfConsent | None = None
    us_privacy: str | None = None
    gpc: bool = False
    gpp_sections: tuple[int, ...] = ()  # applicable GPP section ids
    personalization_allowed: bool = True
    storage_allowed: bool = True
    precise_geo_allowed: bool = True
    reason: str = "no privacy signals"


class _Bits:
    """Big-endian bit reader over a base64url string (6 bits a character, no padding, as IAB encodes)."""

    __slots__ = ("value", "size", "pos")

    def __init__(self, encoded: str) -> None:
        if not encoded or not _BASE64URL.fullmatch(encoded):
            raise ValueError("not base64url")
        # Pad with "A" (six zero bits) to whole bytes; only the first 6 * len(encoded) bits are data.
        padded = encoded + "A" * (-len(encoded) % 4)
        try:
            data = base64.urlsafe_b64decode(padded)
        except (binascii.Error, ValueError) as exc:  # pragma: no cover - the regex already rejects these
            raise ValueError("not base64url") from exc
        self.size = len(encoded) * 6
        self.value = int.from_bytes(data, "big") >> (len(data) * 8 - self.size)
        self.pos = 0

    def read(self, width: int) -> int:
        if self.pos + width > self.size:
            raise ValueError("truncated")
        self.pos += width
        return (self.value >> (self.size - self.pos)) & ((1 << width) - 1)

    def flags(self, width: int) -> frozenset[int]:
        field = self.read(width)
        return frozenset(i + 1 for i in range(width) if field >> (width - 1 - i) & 1)

    def letters(self) -> str:
        return chr(ord("A") + self.read(6)) + chr(ord("A") + self.read(6))

    def fibonacci(self) -> int:
        """A Fibonacci-coded integer (GPP): bit i weighs F(i+2) = 1, 2, 3, 5...; ``11`` ends it."""
        value, a, b, previous = 0, 1, 2, 0
        while True:
            bit = self.read(1)
            if bit and previous:
                return value
            if bit:
                value += a
            a, b, previous = b, a + b, bit


def decode_tc_string(tc_string: str, *, vendor_id: int | None = None) -> TcfConsent:
    """Decode the core segment of a TCF v2 TC string; raises ``ValueError`` when it is not one.

    Only the first ``.``-separated segment (the core) is read. With ``vendor_id`` the vendor consent section is
    read as well and ``vendor_consent`` tells whether that vendor has consent.
    """
    bits = _Bits(tc_string.split(".", 1)[0])
    try:
        version = bits.read(6)
        if version != 2:
            raise ValueError(f"TC string version {version}, expected 2")
        created, last_updated = bits.read(36), bits.read(36)
        cmp_id, cmp_version, consent_screen = bits.read(12), bits.read(12), bits.read(6)
        language = bits.letters()
        vendor_list_version, policy_version = bits.read(12), bits.read(6)
        is_service_specific = bool(bits.read(1))
        bits.read(1)  # UseNonStandardTexts
        special_features = bits.flags(12)
        purposes_consent = bits.flags(24)
        purposes_li = bits.flags(24)
        purpose_one_treatment = bool(bits.read(1))
        publisher_cc = bits.letters()
        vendor_consent = _vendor_in_section(bits, vendor_id) if vendor_id is not None else None
    except ValueError as exc:
        raise ValueError(f"TC string {exc}") from exc
    return TcfConsent(
        version=version, created=created, last_updated=last_updated, cmp_id=cmp_id, cmp_version=cmp_version,
        consent_screen=consent_screen, consent_language=language, vendor_list_version=vendor_list_version,
        policy_version=policy_version, is_service_specific=is_service_specific,
        special_features=special_features, purposes_consent=purposes_consent,
        purposes_legitimate_interest=purposes_li, purpose_one_treatment=purpose_one_treatment,
        publisher_cc=publisher_cc, vendor_consent=vendor_consent,
    )


def _vendor_in_section(bits: _Bits, vendor_id: int) -> bool:
    max_vendor_id = bits.read(16)
    if not bits.read(1):  # bit field
        if vendor_id < 1 or vendor_id > max_vendor_id:
            bits.read(max_vendor_id)
            return False
        start = bits.pos
        bits.read(max_vendor_id)
        return bool(bits.value >> (bits.size - start - vendor_id) & 1)
    found = False
    for _ in range(bits.read(12)):
        is_range = bits.read(1)
        first = bits.read(16)
        last = bits.read(16) if is_range else first
        found = found or first <= vendor_id <= last
    return found


def decode_gpp(gpp: str) -> dict[int, str]:
    """Split a GPP string into ``{section id: encoded section}``; raises ``ValueError`` when malformed.

    The header (type 3, version 1) lists the section ids as a Fibonacci-coded range; the sections follow in that
    order, separated by ``~``.
    """
    header, *sections = gpp.split("~")
    bits = _Bits(header)
    try:
        if bits.read(6) != GPP_HEADER or bits.read(6) != 1:
            raise ValueError("not a GPP v1 header")
        ids: list[int] = []
        previous = 0
        for _ in range(bits.read(12)):
            if bits.read(1):
                first = previous + bits.fibonacci()
                previous = first + bits.fibonacci()
                ids.extend(range(first, previous + 1))
            else:
                previous += bits.fibonacci()
                ids.append(previous)
    except ValueError as exc:
        raise ValueError(f"GPP header {exc}") from exc
    if len(ids) != len(sections):
        raise ValueError(f"GPP header lists {len(ids)} sections, string has {len(sections)}")
    return dict(zip(ids, sections, strict=True))


def _gpp_us_opt_out(section_id: int, encoded: str) -> bool:
    """True when a decoded US section (ids 7..12) carries an opt-out; raises ``ValueError`` when malformed."""
    _, offsets = GPP_US_OPT_OUT_BITS[section_id]
    bits = _Bits(encoded.split(".", 1)[0])
    bits.read(6)  # version
    values = []
    for offset in offsets:
        bits.pos = offset
        values.append(bits.read(2))
    return GPP_OPTED_OUT in values


def parse_gdpr(value: str | None) -> bool | None:
    """The ``gdpr`` parameter: ``1`` -> True, ``0`` -> False, absent -> None."""
    if value is None or value == "":
        return None
    if value in ("0", "1"):
        return value == "1"
    raise RequestError("gdpr", f"must be 0 or 1, got {value!r}")


def parse_us_privacy(value: str | None) -> str | None:
    """The CCPA ``us_privacy`` string: version 1 and three of Y, N or - (``1YNN``)."""
    if value is None or value == "":
        return None
    normalised = value.upper()
    if not _US_PRIVACY.fullmatch(normalised):
        raise RequestError("us_privacy", f"must be a US Privacy string like 1YNN, got {value!r}")
    return normalised


def parse_gpp_sid(value: str | None) -> tuple[int, ...] | None:
    """The ``gpp_sid`` parameter: comma-separated section ids (negative ids, meaning "none", are dropped)."""
    if value is None or value.strip() == "":
        return None
    ids = []
    for part in value.split(","):
        part = part.strip()
        if not re.fullmatch(r"-?\d{1,4}", part):
            raise RequestError("gpp_sid", f"must be comma-separated section ids, got {value!r}")
        if int(part) > 0:
            ids.append(int(part))
    return tuple(ids)


def parse_consent(
    gdpr: str | None = None,
    gdpr_consent: str | None = None,
    gpp: str | None = None,
    gpp_sid: str | None = None,
    us_privacy: str | None = None,
    gpc: bool = False,
    *,
    country: str | None = None,
    vendor_id: int | None = None,
    max_length: int = MAX_CONSENT_LENGTH,
) -> Consent:
    """Read the privacy signals of a request (raw parameter values, None when absent).

    ``country`` (upper-case ISO alpha-2) decides whether GDPR applies when ``gdpr`` is absent; ``vendor_id`` is
    the operator's IAB vendor id, when it has one. Raises :class:`RequestError` only for a malformed ``gdpr``,
    ``us_privacy`` or ``gpp_sid``.

    >>> parse_consent(gdpr="0", us_privacy="1YYN").personalization_allowed
    False
    """
    gdpr_flag = parse_gdpr(gdpr)
    usp = parse_us_privacy(us_privacy)
    sids = parse_gpp_sid(gpp_sid)

    sections: dict[int, str] = {}
    gpp_problem = None
    if gpp:
        try:
            if len(gpp) > max_length:
                raise ValueError(f"GPP string longer than {max_length} characters")
            sections = decode_gpp(gpp)
        except ValueError as exc:
            gpp_problem = str(exc)
    applicable = sids if sids is not None else tuple(sections)

    gdpr_applies = gdpr_flag
    inferred = ""
    if gdpr_flag is None and (GPP_TCF_EU_V2 in (sids or ()) or (country or "").upper() in GDPR_COUNTRIES):
        gdpr_applies, inferred = True, " (inferred from gpp_sid/country)"

    if gdpr_applies:
        tc_string = gdpr_consent or sections.get(GPP_TCF_EU_V2)
        return _gdpr_consent(tc_string, usp, gpc, applicable, vendor_id, max_length, inferred)

    opt_outs = []
    if gpc:
        opt_outs.append("Sec-GPC opt-out")
    if usp is not None and usp[2] == "Y":
        opt_outs.append("us_privacy opt-out of sale")
    if gpp_problem is not None:
        opt_outs.append(f"gpp undecodable: {gpp_problem}")
    else:
        opt_outs.extend(_gpp_opt_outs(applicable, sections))
    allowed = not opt_outs
    if allowed:
        reason = "outside GDPR, no opt-out" if gdpr_flag is False or gpp or usp else "no privacy signals"
    else:
        reason = "; ".join(opt_outs)
    return Consent(
        gdpr_applies=gdpr_flag, us_privacy=usp, gpc=gpc, gpp_sections=applicable,
        personalization_allowed=allowed, storage_allowed=allowed, precise_geo_allowed=allowed, reason=reason,
    )


def _gpp_opt_outs(applicable: tuple[int, ...], sections: dict[int, str]) -> list[str]:
    found = []
    for sid in applicable:
        if sid in (GPP_TCF_EU_V2, GPP_HEADER, GPP_SIGNAL_INTEGRITY):
            continue
        encoded = sections.get(sid)
        if encoded is None:
            found.append(f"gpp section {sid} applicable but missing")
        elif sid == GPP_US_PRIVACY:
            if not _US_PRIVACY.fullmatch(encoded.upper()):
                found.append("gpp uspv1 section malformed")
            elif encoded[2].upper() == "Y":
                found.append("gpp uspv1 opt-out of sale")
        elif sid in GPP_US_OPT_OUT_BITS:
            name = GPP_US_OPT_OUT_BITS[sid][0]
            try:
                if _gpp_us_opt_out(sid, encoded):
                    found.append(f"gpp {name} opt-out")
            except ValueError:
                found.append(f"gpp {name} section malformed")
        else:
            found.append(f"gpp section {sid} not decoded (treated as opt-out)")
    return found


def _gdpr_consent(
    tc_string: str | None,
    usp: str | None,
    gpc: bool,
    applicable: tuple[int, ...],
    vendor_id: int | None,
    max_length: int,
    inferred: str,
) -> Consent:
    def denied(reason: str, tcf: TcfConsent | None = None, storage: bool = False) -> Consent:
        return Consent(
            gdpr_applies=True, tcf=tcf, us_privacy=usp, gpc=gpc, gpp_sections=applicable,
            personalization_allowed=False, storage_allowed=storage,
            precise_geo_allowed=bool(tcf and SPECIAL_FEATURE_PRECISE_GEO in tcf.special_features),
            reason=f"gdpr{inferred}: {reason}",
        )

    if not tc_string:
        return denied("no TC string")
    if len(tc_string) > max_length:
        return denied(f"TC string longer than {max_length} characters")
    try:
        tcf = decode_tc_string(tc_string, vendor_id=vendor_id)
    except ValueError as exc:
        return denied(f"malformed TC string ({exc})")
    if vendor_id is not None and not tcf.vendor_consent:
        return denied(f"no consent for vendor {vendor_id}", tcf)
    storage = PURPOSE_STORAGE in tcf.purposes_consent
    if not storage:
        return denied("no consent to purpose 1", tcf)
    missing = [p for p in PURPOSES_PERSONALISED_ADS if p not in tcf.purposes_consent]
    if missing:
        return denied(f"no consent to purpose {','.join(map(str, missing))}", tcf, storage=True)
    if gpc:
        return denied("Sec-GPC opt-out", tcf, storage=True)
    return Consent(
        gdpr_applies=True, tcf=tcf, us_privacy=usp, gpc=gpc, gpp_sections=applicable,
        personalization_allowed=True, storage_allowed=True,
        precise_geo_allowed=SPECIAL_FEATURE_PRECISE_GEO in tcf.special_features,
        reason=f"gdpr{inferred}: consent to purposes 1,3,4",
    )
