"""Tracking keys (HMAC) from SSM Parameter Store, through Powertools Parameters (cached).

The parameter (``DCO_HMAC_PARAMETER``, a SecureString) holds JSON ``{"kid": "base64 key", ...}``. The first entry
is the current signing key; every entry verifies. Rotation: put the new key first, keep the old one until the
longest-lived token signed with it has expired (``DCO_TOKEN_MAX_AGE``), then drop it.

Powertools caches the parameter value for ``max_age`` seconds (300 by default), so a warm function makes at most
one SSM call per five minutes; the parsed :class:`KeyRing` is cached per raw value.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dco.tracking import MIN_KEY_BYTES

DEFAULT_MAX_AGE = 300


@dataclass(frozen=True)
class KeyRing:
    """The signing key id and every key that verifies."""

    current: str
    keys: Mapping[str, bytes] = field(repr=False)  # never in logs


def parse_keys(text: str | bytes) -> KeyRing:
    """Parse the parameter's JSON; ValueError naming the problem (the message never contains key material).

    >>> parse_keys('{"k2": "' + "A" * 43 + '=", "k1": "' + "B" * 43 + '="}').current
    'k2'
    """
    try:
        raw = json.loads(text)
    except ValueError:
        raise ValueError('tracking keys must be JSON {"kid": "base64 key", ...}') from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError('tracking keys must be a non-empty JSON object {"kid": "base64 key", ...}')
    keys: dict[str, bytes] = {}
    for kid, value in raw.items():
        if not isinstance(value, str):
            raise ValueError(f"tracking key {kid!r} must be a base64 string")
        try:
            text = value.strip().replace("-", "+").replace("_", "/")  # standard or URL-safe alphabet
            key = base64.b64decode(text + "=" * (-len(text.rstrip("=")) % 4 if "=" not in text else 0), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"tracking key {kid!r} is not base64") from None
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"tracking key {kid!r} is shorter than {MIN_KEY_BYTES} bytes")
        keys[kid] = key
    return KeyRing(current=next(iter(keys)), keys=keys)


_PARSED: dict[str, KeyRing] = {}


def load_keys(parameter_name: str, *, max_age: int = DEFAULT_MAX_AGE, provider: Any | None = None) -> KeyRing:
    """The key ring held in SSM parameter ``parameter_name`` (decrypted), cached ``max_age`` seconds.

    ``provider`` is anything with ``get(name, decrypt=, max_age=)`` and that caching rule: the handlers pass a
    :class:`dco.aws.handler_support.SSMParameters` (a plain botocore SSM client, so decide never imports boto3),
    tests may pass a Powertools ``SSMProvider`` over a moto client; Powertools' module default otherwise.
    """
    if not parameter_name:
        raise ValueError("DCO_HMAC_PARAMETER must be set (see docs/storage.md)")
    if provider is None:
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_parameter(parameter_name, decrypt=True, max_age=max_age)
    else:
        value = provider.get(parameter_name, decrypt=True, max_age=max_age)
    text = value.decode() if isinstance(value, bytes) else str(value)
    ring = _PARSED.get(text)
    if ring is None:
        ring = parse_keys(text)
        _PARSED.clear()  # one parameter value at a time: a rotated value replaces the old parse
        _PARSED[text] = ring
    return ring
