"""Exceptions raised by the DCO runtime package.

Every error the package raises on purpose derives from :class:`DcoError`, so adapters can map errors to
responses by type (never by message text)::

    DcoError
    ├── ConfigError            a campaign config is invalid; ``path`` names the field
    ├── FeedError              a product feed is rejected as a whole (undecodable, missing header, too many bad rows)
    ├── SnapshotError          a snapshot cannot be built or loaded
    │   ├── CorruptSnapshotError   the checksum or structure does not match
    │   └── SnapshotVersionError   the format version is newer than this code understands
    ├── RequestError           an ad request parameter is invalid; ``param`` names it (a client error, 4xx)
    └── TokenError             a tracking token is forged, tampered with or expired (a client error, 4xx)
"""

from __future__ import annotations


class DcoError(Exception):
    """Base class of every error the package raises on purpose."""


class ConfigError(DcoError):
    """A campaign config is invalid. ``path`` is the dotted path of the bad field (``experiences[2].id``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}" if path else message)


class FeedError(DcoError):
    """A product feed is rejected as a whole; ``report`` carries the row-level findings when there are any."""

    def __init__(self, message: str, report: object | None = None) -> None:
        self.report = report
        super().__init__(message)


class SnapshotError(DcoError):
    """A snapshot cannot be built or loaded."""


class CorruptSnapshotError(SnapshotError):
    """The snapshot object is truncated, altered or not a snapshot at all."""


class SnapshotVersionError(SnapshotError):
    """The snapshot was written by a newer format version than this code reads."""


class RequestError(DcoError):
    """An ad request parameter is invalid. ``param`` names the parameter; adapters answer 400."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        self.reason = message
        super().__init__(f"{param}: {message}")


class TokenError(DcoError):
    """A tracking token failed verification (bad signature, tampered fields, expired, unknown campaign)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)
