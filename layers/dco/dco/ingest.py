"""Ingest: a campaign or feed drop in, a published snapshot (or a report saying why not) out.

Data flow (the ingest function is the adapter; docs/storage.md names the keys)::

    S3 event record ──drop_from_record()──> Drop(campaign, kind, key, sequence)       (other prefixes: ignored)
    Drop ──process(drop, store)──>
        inputs: the dropped object + the other half (campaign config for a feed drop, newest feed for a
                campaign drop)
        build():        validate config, parse feed, build_snapshot(built_at = event time) -> Build
        rejected:       write the report, publish nothing (the pointer is untouched)
        accepted:       put snapshots/<c>/<hex>.msgpack (immutable; an existing key holds the same bytes)
                        next_pointer(current, candidate) -> new pointer | None (superseded / unchanged)
                        swap pointers/<c>.json conditionally (If-Match old ETag / If-None-Match *);
                        a lost race (412) re-reads the pointer and decides again
        report:         reports/<c>/<name>.json

Ordering. S3 notifications arrive at least once and in any order. Every drop carries a ``sequence``, and a
pointer is only replaced by a drop with a strictly greater sequence, so a duplicate or late notification never
rolls a newer snapshot back (it is reported as ``superseded``). The sequence is::

    "<event time, unix milliseconds, 13 digits>.<sequencer, upper-case hex left-padded with zeros to 32>"

compared as a string (both parts are fixed width). S3 documents the ``sequencer`` as ordering events *of one
key* (compare as hex after left-padding the shorter with zeros); events of different keys (a feed drop and a
campaign drop) are ordered by their event time first, which has millisecond resolution. So: the same key is
ordered exactly (by time and, within a millisecond, by sequencer); different keys are ordered by time.

A rollback (:func:`rollback_pointer`) keeps the pointer's sequence, so only a *newer* drop replaces it.

Nothing here does I/O directly: :func:`process` talks to an :class:`IngestStore` port (implemented on S3 by
:class:`dco.aws.store.S3Store`, in memory by the unit tests).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from dco.config import campaign_from_dict, parse_config_text, validate_campaign
from dco.errors import ConfigError, DcoError, SnapshotError
from dco.feed import Catalog, parse_feed
from dco.snapshot import build_snapshot, read_header

CAMPAIGN_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")
FEED_SUFFIXES: tuple[str, ...] = (".tsv", ".csv", ".txt")
HISTORY = 10  # earlier pointers kept in a pointer's ``previous`` list
MAX_SWAP_ATTEMPTS = 5
SEQUENCER_WIDTH = 32

# Outcomes written in reports.
PUBLISHED = "published"
REJECTED = "rejected"
SUPERSEDED = "superseded"
UNCHANGED = "unchanged"

_CAMPAIGN = r"[a-z0-9][a-z0-9_-]{0,63}"  # dco.config.ID_PATTERN
_CAMPAIGN_KEY = re.compile(rf"campaigns/({_CAMPAIGN})\.(yaml|yml|json)")
_FEED_KEY = re.compile(rf"feeds/({_CAMPAIGN})/([A-Za-z0-9._/ -]{{1,200}})\.(tsv|csv|txt)")
_HEX = re.compile(r"[0-9A-Fa-f]{1,64}")


class PointerConflictError(DcoError):
    """A conditional pointer write lost a race (S3 412): re-read the pointer and decide again."""


# ----------------------------------------------------------------------------------------------------- keys


def snapshot_key(campaign: str, version: str) -> str:
    """``snapshots/<campaign>/<hex>.msgpack`` for a version ``sha256:<hex>`` (or a bare hex digest)."""
    digest = version.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"not a snapshot version: {version!r}")
    return f"snapshots/{campaign}/{digest}.msgpack"


def pointer_key(campaign: str) -> str:
    return f"pointers/{campaign}.json"


def report_key(campaign: str, name: str) -> str:
    return f"reports/{campaign}/{name}.json"


def campaign_keys(campaign: str) -> tuple[str, ...]:
    """Where a campaign's config may be (the newest one wins when several exist)."""
    return tuple(f"campaigns/{campaign}{suffix}" for suffix in CAMPAIGN_SUFFIXES)


def feed_prefix(campaign: str) -> str:
    return f"feeds/{campaign}/"


# ---------------------------------------------------------------------------------------------------- drops


@dataclass(frozen=True)
class Drop:
    """One object-created notification the ingest function acts on."""

    campaign: str
    kind: str  # "campaign" | "feed"
    key: str
    name: str  # the report name: the feed's name without suffix, or "campaign"
    sequence: str
    event_time_ms: int

    @property
    def built_at(self) -> int:
        return self.event_time_ms // 1000


def classify_key(key: str) -> tuple[str, str, str] | None:
    """``(kind, campaign, report name)`` of an input key, or None for any other key (snapshots, pointers,
    reports, stats: writing them never re-triggers ingest).

    >>> classify_key("feeds/retail-demo/daily.tsv"), classify_key("snapshots/x/ab.msgpack")
    (('feed', 'retail-demo', 'daily'), None)
    """
    match = _CAMPAIGN_KEY.fullmatch(key)
    if match:
        return "campaign", match[1], "campaign"
    match = _FEED_KEY.fullmatch(key)
    if match and ".." not in match[2].split("/") and not match[2].startswith("/"):
        return "feed", match[1], match[2]
    return None


def make_sequence(event_time_ms: int, sequencer: str | None) -> str:
    """The ordering key of a drop (see the module docstring).

    >>> make_sequence(1_767_225_600_000, "0055AED6DCD90281E5")
    '1767225600000.000000000000000055AED6DCD90281E5'
    """
    hex_part = (sequencer or "").strip().upper()
    if hex_part and not _HEX.fullmatch(hex_part):
        raise ValueError(f"sequencer must be hexadecimal, got {sequencer!r}")
    if event_time_ms < 0 or event_time_ms >= 10**13:
        raise ValueError(f"event time out of range: {event_time_ms}")
    return f"{event_time_ms:013d}.{hex_part.rjust(SEQUENCER_WIDTH, '0')}"


def parse_event_time(text: str) -> int:
    """Unix milliseconds of an S3 ``eventTime`` (``2026-01-01T00:00:00.000Z``)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"eventTime without a timezone: {text!r}")
    return int(round(moment.timestamp() * 1000))


def drop_from_record(record: Mapping[str, Any]) -> Drop | None:
    """The drop of one S3 event record, or None when the record is not an object-created event on an input key.

    Raises ValueError for a record that claims to be one but is malformed (no event time, a bad sequencer).
    """
    from urllib.parse import unquote_plus

    if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
        return None
    obj = record.get("s3", {}).get("object", {})
    key = unquote_plus(str(obj.get("key", "")))  # S3 notifications URL-encode keys (space as +)
    kind = classify_key(key)
    if kind is None:
        return None
    event_time_ms = parse_event_time(str(record.get("eventTime", "")))
    return Drop(
        campaign=kind[1], kind=kind[0], key=key, name=kind[2],
        sequence=make_sequence(event_time_ms, obj.get("sequencer")), event_time_ms=event_time_ms,
    )


# ---------------------------------------------------------------------------------------------------- build


@dataclass
class Build:
    """The outcome of validating and compiling one campaign + feed pair."""

    campaign: str
    snapshot: bytes | None
    version: str | None
    report: dict[str, Any]

    @property
    def accepted(self) -> bool:
        return self.snapshot is not None


def build(
    campaign: str,
    campaign_bytes: bytes | None,
    feed_bytes: bytes | None,
    *,
    campaign_source: str | None = None,
    feed_source: str | None = None,
    built_at: int | None = None,
) -> Build:
    """Validate the campaign config and the feed and build the snapshot; never raises on input bytes.

    A campaign without a feed is built over an empty catalog (fine for campaigns without product selection;
    otherwise the snapshot builder's error lands in the report).
    """
    report: dict[str, Any] = {
        "campaign": campaign, "campaign_source": campaign_source, "feed_source": feed_source,
        "config_errors": [], "feed": None, "error": None, "version": None,
    }

    def rejected(message: str) -> Build:
        report["error"] = message
        return Build(campaign, None, None, report)

    if campaign_bytes is None:
        return rejected(f"no campaign config for {campaign!r} (expected one of {', '.join(campaign_keys(campaign))})")
    fmt = "json" if campaign_source and campaign_source.endswith(".json") else None
    try:
        data = parse_config_text(campaign_bytes, fmt=fmt)
    except ConfigError as exc:
        report["config_errors"] = [{"path": exc.path, "message": exc.reason}]
        return rejected("campaign config does not parse")
    errors = validate_campaign(data)
    if errors:
        report["config_errors"] = [{"path": e.path, "message": e.reason} for e in errors[:100]]
        return rejected(f"campaign config is invalid ({len(errors)} problem(s))")
    config = campaign_from_dict(data)
    if config.id != campaign:
        report["config_errors"] = [{"path": "id", "message": f"is {config.id!r} but the file names {campaign!r}"}]
        return rejected("campaign id does not match its key")

    feed_sha256: str | None = None
    if feed_bytes is None:
        catalog = Catalog(ids=[])
    else:
        result = parse_feed(feed_bytes, config.feed, currency=config.currency)
        report["feed"] = result.report.to_dict()
        if result.catalog is None:
            return rejected(f"feed rejected ({result.report.fatal})")
        catalog = result.catalog
        feed_sha256 = hashlib.sha256(feed_bytes).hexdigest()
    try:
        blob = build_snapshot(data, catalog, campaign=config, feed_sha256=feed_sha256, built_at=built_at)
        _, version = read_header(blob)
    except ConfigError as exc:
        report["config_errors"] = [{"path": exc.path, "message": exc.reason}]
        return rejected("campaign and feed do not fit together")
    except SnapshotError as exc:
        return rejected(f"snapshot could not be built: {exc}")
    report["version"] = version
    return Build(campaign, blob, version, report)


# -------------------------------------------------------------------------------------------------- pointer


@dataclass(frozen=True)
class PointerDecision:
    outcome: str  # published | superseded | unchanged
    pointer: dict[str, Any] | None  # the pointer to write (None: leave it)


def _history_entry(pointer: Mapping[str, Any]) -> dict[str, Any]:
    return {k: pointer.get(k) for k in ("version", "key", "sequence", "feed", "published_at")}


def next_pointer(
    current: Mapping[str, Any] | None,
    *,
    campaign: str,
    version: str,
    sequence: str,
    feed: str | None,
    published_at: int,
    history: int = HISTORY,
) -> PointerDecision:
    """What to write to the pointer for a new build. A drop whose sequence is not greater than the pointer's is
    superseded (a duplicate or a late notification); the same version re-published only raises the sequence.

    >>> first = next_pointer(None, campaign="c", version="sha256:" + "a" * 64, sequence="2", feed=None,
    ...                      published_at=1).pointer
    >>> next_pointer(first, campaign="c", version="sha256:" + "b" * 64, sequence="1", feed=None,
    ...              published_at=2).outcome
    'superseded'
    """
    if current is not None and str(current.get("sequence", "")) >= sequence:
        return PointerDecision(SUPERSEDED, None)
    previous: list[Any] = []
    if current is not None:
        previous = [_history_entry(current), *list(current.get("previous") or [])][:history]
        if current.get("version") == version:
            previous = list(current.get("previous") or [])
    pointer = {
        "campaign": campaign,
        "version": version,
        "key": snapshot_key(campaign, version),
        "sequence": sequence,
        "feed": feed,
        "published_at": published_at,
        "previous": previous,
    }
    outcome = UNCHANGED if current is not None and current.get("version") == version else PUBLISHED
    return PointerDecision(outcome, pointer)


def rollback_pointer(current: Mapping[str, Any], *, version: str, published_at: int, history: int = HISTORY) -> dict:
    """The pointer that points ``current``'s campaign back at ``version`` (an existing snapshot). The sequence is
    kept, so a late notification of an older drop still cannot replace it; a newer drop will."""
    campaign = str(current["campaign"])
    return {
        "campaign": campaign,
        "version": version,
        "key": snapshot_key(campaign, version),
        "sequence": current.get("sequence", ""),
        "feed": next((p.get("feed") for p in current.get("previous") or [] if p.get("version") == version), None),
        "published_at": published_at,
        "rolled_back_from": current.get("version"),
        "previous": [_history_entry(current), *list(current.get("previous") or [])][:history],
    }


# ------------------------------------------------------------------------------------------------ process


class IngestStore(Protocol):
    """The storage ingest needs (S3 in production: :class:`dco.aws.store.S3Store`)."""

    def read(self, key: str) -> bytes | None: ...

    def newest(self, keys_or_prefix: Sequence[str] | str, suffixes: Sequence[str]) -> str | None:
        """The most recently modified existing key among ``keys`` (a tuple) or under a prefix (a string)."""
        ...

    def read_pointer(self, campaign: str) -> tuple[dict[str, Any], str] | None: ...

    def put_snapshot(self, key: str, body: bytes) -> None: ...

    def swap_pointer(self, campaign: str, pointer: Mapping[str, Any], etag: str | None) -> None:
        """Write the pointer if its ETag is still ``etag`` (None: if it does not exist); else
        :class:`PointerConflictError`."""
        ...

    def put_report(self, key: str, report: Mapping[str, Any]) -> None: ...


@dataclass
class Outcome:
    drop: Drop
    outcome: str
    report: dict[str, Any] = field(default_factory=dict)
    report_key: str = ""


def process(drop: Drop, store: IngestStore, *, now: int, max_attempts: int = MAX_SWAP_ATTEMPTS) -> Outcome:
    """Build and publish one drop; always writes its report (the report is returned too)."""
    if drop.kind == "feed":
        campaign_source = store.newest(campaign_keys(drop.campaign), CAMPAIGN_SUFFIXES)
        feed_source: str | None = drop.key
    else:
        campaign_source = drop.key
        feed_source = store.newest(feed_prefix(drop.campaign), FEED_SUFFIXES)
    campaign_bytes = store.read(campaign_source) if campaign_source else None
    feed_bytes = store.read(feed_source) if feed_source else None
    if drop.kind == "feed" and feed_bytes is None:
        feed_source = None  # deleted since the notification; build() reports a campaign without feed
    result = build(
        drop.campaign, campaign_bytes, feed_bytes,
        campaign_source=campaign_source, feed_source=feed_source, built_at=drop.built_at,
    )
    report = dict(result.report)
    report.update({"drop": drop.key, "sequence": drop.sequence, "processed_at": now})
    outcome = REJECTED
    if result.accepted:
        assert result.snapshot is not None and result.version is not None
        key = snapshot_key(drop.campaign, result.version)
        store.put_snapshot(key, result.snapshot)
        report["snapshot_key"] = key
        outcome = _swap(drop, store, result.version, feed_source, now, max_attempts)
    report["outcome"] = outcome
    key = report_key(drop.campaign, drop.name)
    store.put_report(key, report)
    return Outcome(drop, outcome, report, key)


def _swap(drop: Drop, store: IngestStore, version: str, feed: str | None, now: int, max_attempts: int) -> str:
    for _ in range(max_attempts):
        found = store.read_pointer(drop.campaign)
        current, etag = found if found is not None else (None, None)
        decision = next_pointer(
            current, campaign=drop.campaign, version=version, sequence=drop.sequence, feed=feed, published_at=now
        )
        if decision.pointer is None:
            return decision.outcome
        try:
            store.swap_pointer(drop.campaign, decision.pointer, etag)
        except PointerConflictError:
            continue
        return decision.outcome
    raise PointerConflictError(f"pointer of {drop.campaign!r} kept changing; gave up after {max_attempts} tries")
