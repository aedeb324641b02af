"""The learning context of a request: the values of the campaign's learning dimensions (docs/learning.md,
"Learning dimensions"; docs/campaign-config.md, ``learning``).

A dimension is one of::

    region           geo.region (CloudFront viewer region or the ``region`` parameter)
    device           device.type (mobile, desktop, tablet, ctv, other)
    country          geo.country
    daypart          the request's local hour in the campaign's time zone: night 0-6, morning 6-12,
                     afternoon 12-18, evening 18-24
    context.<key>    a contextual key of the request (``ctx.<key>`` or its shorthand)

Values are case-folded. A dimension the request does not carry is left out (the learner then gives that request
no effect of that dimension). The context rides in the tracking token, so the fold counts each outcome in the
context its decision was made in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from dco.learning.contract import DIMENSION_PATTERN, escape_value

__all__ = ["DEFAULT_DIMENSIONS", "DAYPARTS", "MAX_DIMENSIONS", "is_dimension", "learning_context", "daypart",
           "model_context"]

DEFAULT_DIMENSIONS: tuple[str, ...] = ("region", "device")
MAX_DIMENSIONS = 4
DAYPARTS = ("night", "morning", "afternoon", "evening")
_SIGNAL = {"region": "geo.region", "device": "device.type", "country": "geo.country"}
_DIMENSION = re.compile(DIMENSION_PATTERN)


def is_dimension(name: str) -> bool:
    """Whether ``name`` is a learning dimension this package knows.

    >>> is_dimension("region"), is_dimension("context.weather"), is_dimension("geo.city")
    (True, True, False)
    """
    return bool(_DIMENSION.fullmatch(name))


def daypart(local: datetime) -> str:
    """The daypart of a local time.

    >>> from datetime import datetime
    >>> daypart(datetime(2026, 1, 1, 5)), daypart(datetime(2026, 1, 1, 13))
    ('night', 'afternoon')
    """
    return DAYPARTS[local.hour // 6]


def learning_context(
    signals: Mapping[str, str], dimensions: Sequence[str], local_time: datetime | None = None
) -> dict[str, str]:
    """``{dimension: value}`` of the request for the campaign's learning ``dimensions`` (absent ones left out).
    ``local_time`` (the request time in the campaign's zone) is needed for ``daypart`` only.

    >>> learning_context({"geo.region": "pnw", "device.type": "mobile", "context.weather": "Rain"},
    ...                  ("region", "context.weather", "daypart"))
    {'region': 'pnw', 'context.weather': 'rain'}
    """
    out: dict[str, str] = {}
    for dim in dimensions:
        if dim == "daypart":
            if local_time is not None:
                out[dim] = daypart(local_time)
            continue
        value = signals.get(_SIGNAL.get(dim, dim))
        if value:
            out[dim] = value.casefold()
    return out


def model_context(context: Mapping[str, str]) -> dict[str, str]:
    """The context as the model names its values (escaped, as in the ``contexts`` keys)."""
    return {dim: escape_value(value) for dim, value in context.items()}
