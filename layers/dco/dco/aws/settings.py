"""Settings of the Lambda functions, read once from the environment.

The environment variable names live here and nowhere else (docs/storage.md is their contract; the SAM template
sets exactly these, and tests/functional/test_template.py checks both agree). A handler builds its settings at
module scope and passes plain values on to the adapters; the core never reads the environment::

    settings = Settings.from_env(os.environ, required=(EVENTS_TABLE, HMAC_PARAMETER))
    table = settings.require(EVENTS_TABLE)

An explicit argument beats the environment: ``Settings.from_env(os.environ, refresh_seconds=0)`` ignores
``DCO_REFRESH_SECONDS``; tests build ``Settings(bucket="b", ...)`` directly. A malformed number or a missing
required variable raises :class:`ValueError` naming the variable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

BUCKET = "DCO_BUCKET"
EVENTS_TABLE = "DCO_EVENTS_TABLE"
COUNTERS_TABLE = "DCO_COUNTERS_TABLE"
HMAC_PARAMETER = "DCO_HMAC_PARAMETER"
REFRESH_SECONDS = "DCO_REFRESH_SECONDS"
EVENT_TTL_DAYS = "DCO_EVENT_TTL_DAYS"
TOKEN_MAX_AGE = "DCO_TOKEN_MAX_AGE"
PUBLIC_BASE_URL = "DCO_PUBLIC_BASE_URL"
# Read by Powertools itself; named here so the template and the settings cannot drift apart.
SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"

DCO_VARIABLES: tuple[str, ...] = (
    BUCKET,
    EVENTS_TABLE,
    COUNTERS_TABLE,
    HMAC_PARAMETER,
    REFRESH_SECONDS,
    EVENT_TTL_DAYS,
    TOKEN_MAX_AGE,
    PUBLIC_BASE_URL,
)
POWERTOOLS_VARIABLES: tuple[str, ...] = (SERVICE_NAME, METRICS_NAMESPACE, LOG_LEVEL)
ALL_VARIABLES: tuple[str, ...] = DCO_VARIABLES + POWERTOOLS_VARIABLES

DEFAULT_REFRESH_SECONDS = 30.0
DEFAULT_EVENT_TTL_DAYS = 30
DEFAULT_TOKEN_MAX_AGE = 86_400
DEFAULT_SERVICE_NAME = "dco"
DEFAULT_METRICS_NAMESPACE = "DCO"
DEFAULT_LOG_LEVEL = "INFO"

# field name -> environment variable, in declaration order.
_FIELD_TO_VARIABLE: dict[str, str] = {
    "bucket": BUCKET,
    "events_table": EVENTS_TABLE,
    "counters_table": COUNTERS_TABLE,
    "hmac_parameter": HMAC_PARAMETER,
    "refresh_seconds": REFRESH_SECONDS,
    "event_ttl_days": EVENT_TTL_DAYS,
    "token_max_age": TOKEN_MAX_AGE,
    "public_base_url": PUBLIC_BASE_URL,
    "service_name": SERVICE_NAME,
    "metrics_namespace": METRICS_NAMESPACE,
    "log_level": LOG_LEVEL,
}
_VARIABLE_TO_FIELD = {variable: field for field, variable in _FIELD_TO_VARIABLE.items()}


@dataclass(frozen=True)
class Settings:
    """What a function needs to know about its deployment. Empty string = not configured."""

    bucket: str = ""
    events_table: str = ""
    counters_table: str = ""
    hmac_parameter: str = ""
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    event_ttl_days: int = DEFAULT_EVENT_TTL_DAYS
    token_max_age: int = DEFAULT_TOKEN_MAX_AGE
    public_base_url: str = ""
    service_name: str = DEFAULT_SERVICE_NAME
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    log_level: str = DEFAULT_LOG_LEVEL

    def __post_init__(self) -> None:
        _check_number(REFRESH_SECONDS, self.refresh_seconds, minimum=0)
        _check_number(EVENT_TTL_DAYS, self.event_ttl_days, minimum=1)
        _check_number(TOKEN_MAX_AGE, self.token_max_age, minimum=1)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        required: Iterable[str] = (BUCKET,),
        **overrides: Any,
    ) -> Settings:
        """Settings from ``environ`` (usually ``os.environ``); keyword ``overrides`` win over the environment.

        ``required`` names the variables this function cannot run without (``DCO_BUCKET`` by default); a
        missing or blank one raises ``ValueError`` naming it.

        >>> Settings.from_env({"DCO_BUCKET": "b", "DCO_REFRESH_SECONDS": "5"}).refresh_seconds
        5.0
        >>> Settings.from_env({"DCO_BUCKET": "b"}, refresh_seconds=0).refresh_seconds
        0
        """
        unknown = set(overrides) - set(_FIELD_TO_VARIABLE)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for field, variable in _FIELD_TO_VARIABLE.items():
            if field in overrides:
                values[field] = overrides[field]
                continue
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            if field == "refresh_seconds":
                values[field] = _parse_float(variable, raw)
            elif field in ("event_ttl_days", "token_max_age"):
                values[field] = _parse_int(variable, raw)
            else:
                values[field] = raw
        settings = cls(**values)
        for variable in required:
            settings.require(variable)
        return settings

    def require(self, variable: str) -> str:
        """The value of a text setting, by its environment variable name; ``ValueError`` when it is not set.

        >>> Settings(bucket="b").require(BUCKET)
        'b'
        """
        field = _VARIABLE_TO_FIELD.get(variable)
        if field is None:
            raise ValueError(f"{variable} is not a DCO setting (known: {', '.join(ALL_VARIABLES)})")
        value = getattr(self, field)
        if not isinstance(value, str):
            raise ValueError(f"{variable} is not a text setting")
        if not value:
            raise ValueError(f"{variable} must be set for this function (see docs/storage.md)")
        return value

    @property
    def event_ttl_seconds(self) -> int:
        """How long an event item lives before DynamoDB TTL removes it."""
        return self.event_ttl_days * 86_400

    def as_environ(self) -> dict[str, str]:
        """The environment that :meth:`from_env` reads back into equal settings (local stack, tests)."""
        out: dict[str, str] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value != "":
                out[_FIELD_TO_VARIABLE[item.name]] = str(value)
        return out


def _parse_float(variable: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{variable} must be a number of seconds, got {raw!r}") from None
    return value


def _parse_int(variable: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{variable} must be a whole number, got {raw!r}") from None


def _check_number(variable: str, value: object, *, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{variable} must be a number, got {value!r}")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{variable} must be a finite number >= {minimum:g}, got {value!r}")
