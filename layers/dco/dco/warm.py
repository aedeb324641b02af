"""Warm state of the serving functions: the current snapshot and stats of each campaign, refreshed at most every
N seconds, never lost to a bad refresh.

The decide and track handlers keep one :class:`WarmCache` at module scope. Per campaign it holds the engine
built from the snapshot the campaign's pointer names (built once per snapshot version) and, for decide, the
campaign's :class:`~dco.stats.StatsTable`. Data flow of one refresh (docs/storage.md has the keys)::

    pointers/<c>.json   ──fetch(key, etag)──> unchanged (304) | missing | new pointer
        new pointer naming another snapshot ──fetch(snapshots/<c>/<hex>.msgpack)──> load_snapshot ──> Engine
    stats/<c>.msgpack   ──fetch(key, etag)──> unchanged | missing (empty stats) | decode ──> StatsTable

Rules:

* A campaign is refreshed at most once per ``refresh_seconds`` (a conditional GET per object; the immutable
  snapshot is fetched only when the pointer names a new one). ``refresh_seconds=0`` checks on every call.
* When the source is unreachable, or a new snapshot fails :func:`~dco.snapshot.load_snapshot` (corrupt, a newer
  format), or a stats object does not decode, the last good state keeps serving and ``on_failure`` is told
  (``SnapshotRefreshFailed`` / ``StatsRefreshFailed``: the handlers turn it into a metric). The failed object is
  tried again after the interval, not on every request.
* Cold, with nothing loaded and nothing loadable: :class:`WarmStateUnavailableError` (decide answers 503).
* No pointer at all: :class:`UnknownCampaignError` (a client mistake; the answer is cached for the interval).

Nothing here imports boto3, reads the environment or the clock: the object ``source`` (a port: :class:`Source`,
implemented by :class:`dco.aws.store.S3Store`) and ``clock`` (seconds, any epoch) are passed in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

from dco.engine import Engine
from dco.errors import DcoError, SnapshotError
from dco.snapshot import Snapshot, load_snapshot
from dco.stats import StatsTable

SNAPSHOT_REFRESH_FAILED = "SnapshotRefreshFailed"
STATS_REFRESH_FAILED = "StatsRefreshFailed"
# Unknown campaign ids are remembered (negative cache) up to this many, then the memory is cleared.
MAX_UNKNOWN = 1024


class SourceError(DcoError):
    """The object source failed (unreachable, throttled, denied): the caller keeps what it has."""


class UnknownCampaignError(DcoError):
    """The campaign has no pointer: it was never published (or was withdrawn)."""

    def __init__(self, campaign: str) -> None:
        self.campaign = campaign
        super().__init__(f"unknown campaign {campaign!r}: no snapshot is published for it")


class WarmStateUnavailableError(DcoError):
    """Nothing is loaded for the campaign and nothing can be loaded now (cold start during an outage)."""


class _NotModified:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_MODIFIED"


NOT_MODIFIED = _NotModified()


@dataclass(frozen=True)
class Blob:
    """An object's bytes and its entity tag."""

    body: bytes
    etag: str


class Source(Protocol):
    """Where warm state comes from: a key-value object store with entity tags (S3).

    ``fetch(key, etag)`` returns the object, :data:`NOT_MODIFIED` when ``etag`` is given and still current,
    or ``None`` when the key does not exist; any other failure raises :class:`SourceError`.
    """

    def fetch(self, key: str, etag: str | None = None) -> Blob | _NotModified | None: ...


def pointer_key(campaign: str) -> str:
    return f"pointers/{campaign}.json"


def stats_key(campaign: str) -> str:
    return f"stats/{campaign}.msgpack"


def decode_stats(body: bytes) -> StatsTable:
    """A stats object (msgpack, or JSON when it starts with ``{``) as a StatsTable; ValueError when malformed."""
    try:
        obj = json.loads(body) if body[:1] == b"{" else msgpack.unpackb(body, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ValueError(f"stats object does not decode: {exc}") from None
    return StatsTable.from_object(obj)


def parse_pointer(body: bytes) -> dict[str, Any]:
    """A pointer object (docs/storage.md); ValueError unless it is a JSON object with a ``key`` and ``version``."""
    try:
        pointer = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"pointer is not JSON: {exc}") from None
    if not isinstance(pointer, dict) or not isinstance(pointer.get("key"), str) or not isinstance(
        pointer.get("version"), str
    ):
        raise ValueError("pointer lacks a key or version")
    return pointer


@dataclass
class Warm:
    """What one campaign serves from right now."""

    campaign: str
    engine: Engine
    stats: StatsTable
    pointer: dict[str, Any]

    @property
    def snapshot(self) -> Snapshot:
        return self.engine.snapshot

    @property
    def version(self) -> str:
        return self.engine.snapshot.version


@dataclass
class _Entry:
    next_check: float = 0.0
    warm: Warm | None = None
    pointer_etag: str | None = None
    stats_etag: str | None = None
    stats: StatsTable | None = None


@dataclass
class WarmCache:
    """Per-campaign warm state over a :class:`Source`. Not thread-safe (one Lambda invocation at a time).

    ``with_stats=False`` (track) skips the stats object. ``on_failure(metric, detail)`` hears about every
    refresh failure that the cache absorbed or turned into :class:`WarmStateUnavailableError`.
    """

    source: Source
    clock: Callable[[], float]
    refresh_seconds: float = 30.0
    with_stats: bool = True
    on_failure: Callable[[str, Mapping[str, Any]], None] | None = None
    loader: Callable[[bytes], Snapshot] = load_snapshot
    _entries: dict[str, _Entry] = field(default_factory=dict, repr=False)
    _unknown: dict[str, float] = field(default_factory=dict, repr=False)

    def get(self, campaign: str) -> Warm:
        """The campaign's warm state, refreshed when the interval has passed.

        Raises :class:`UnknownCampaignError` or :class:`WarmStateUnavailableError`.
        """
        now = self.clock()
        entry = self._entries.get(campaign)
        if entry is not None and entry.warm is not None and now < entry.next_check:
            return entry.warm
        retry_at = self._unknown.get(campaign)
        if entry is None and retry_at is not None and now < retry_at:
            raise UnknownCampaignError(campaign)
        if entry is None:
            entry = _Entry()
        self._refresh(campaign, entry, now)
        assert entry.warm is not None
        return entry.warm

    def __contains__(self, campaign: object) -> bool:
        """Whether ``campaign`` is published (for :func:`dco.tracking.verify`'s ``campaigns``). Propagates
        :class:`WarmStateUnavailableError`: an outage is not an unknown campaign."""
        if not isinstance(campaign, str):
            return False
        try:
            self.get(campaign)
        except UnknownCampaignError:
            return False
        return True

    def loaded(self) -> dict[str, str]:
        """campaign -> snapshot version currently served (for logs and tests)."""
        return {c: e.warm.version for c, e in self._entries.items() if e.warm is not None}

    # ------------------------------------------------------------------------------------------ refresh

    def _fail(self, metric: str, campaign: str, key: str, exc: BaseException) -> None:
        if self.on_failure is not None:
            self.on_failure(metric, {"campaign": campaign, "key": key, "error": f"{type(exc).__name__}: {exc}"})

    def _refresh(self, campaign: str, entry: _Entry, now: float) -> None:
        key = pointer_key(campaign)
        try:
            fetched = self.source.fetch(key, entry.pointer_etag if entry.warm is not None else None)
        except SourceError as exc:
            self._fail(SNAPSHOT_REFRESH_FAILED, campaign, key, exc)
            self._keep_or_raise(campaign, entry, now, exc, refresh_stats=False)  # the source is down: no stats
            return
        if fetched is None:
            self._entries.pop(campaign, None)
            if len(self._unknown) >= MAX_UNKNOWN:
                self._unknown.clear()
            self._unknown[campaign] = now + self.refresh_seconds
            raise UnknownCampaignError(campaign)
        self._unknown.pop(campaign, None)
        warm = entry.warm
        if isinstance(fetched, Blob):
            try:
                pointer = parse_pointer(fetched.body)
                engine = self._engine_for(campaign, pointer, warm)
            except (SourceError, SnapshotError, ValueError) as exc:
                self._fail(SNAPSHOT_REFRESH_FAILED, campaign, key, exc)
                self._keep_or_raise(campaign, entry, now, exc, refresh_stats=True)
                return
            stats = entry.stats or StatsTable.empty(campaign)
            warm = Warm(campaign, engine, stats, pointer)
            entry.pointer_etag = fetched.etag
        assert warm is not None  # NOT_MODIFIED is only possible with an etag, i.e. with a warm state
        if self.with_stats:
            warm.stats = self._stats(campaign, entry)
        entry.warm = warm
        entry.next_check = now + self.refresh_seconds
        self._entries[campaign] = entry

    def _engine_for(self, campaign: str, pointer: Mapping[str, Any], warm: Warm | None) -> Engine:
        if warm is not None and warm.pointer.get("key") == pointer["key"]:
            return warm.engine  # the pointer was rewritten (e.g. a rollback history) but names the same object
        key = pointer["key"]
        blob = self.source.fetch(key)
        if not isinstance(blob, Blob):
            raise SourceError(f"snapshot {key} named by the pointer does not exist")
        snapshot = self.loader(blob.body)
        if snapshot.campaign.id != campaign:
            raise SnapshotError(f"snapshot {key} is campaign {snapshot.campaign.id!r}, not {campaign!r}")
        return Engine(snapshot)

    def _stats(self, campaign: str, entry: _Entry) -> StatsTable:
        key = stats_key(campaign)
        current = entry.stats
        try:
            fetched = self.source.fetch(key, entry.stats_etag if current is not None else None)
            if fetched is None:
                table, etag = StatsTable.empty(campaign), None
            elif isinstance(fetched, Blob):
                table, etag = decode_stats(fetched.body), fetched.etag
            else:
                assert current is not None
                return current
        except (SourceError, ValueError) as exc:
            self._fail(STATS_REFRESH_FAILED, campaign, key, exc)
            return current if current is not None else StatsTable.empty(campaign)
        entry.stats, entry.stats_etag = table, etag
        return table

    def _keep_or_raise(
        self, campaign: str, entry: _Entry, now: float, exc: BaseException, *, refresh_stats: bool
    ) -> None:
        if entry.warm is None:
            raise WarmStateUnavailableError(
                f"no snapshot of campaign {campaign!r} is loaded and none can be loaded now"
            ) from exc
        entry.next_check = now + self.refresh_seconds  # try again after the interval, keep serving meanwhile
        if self.with_stats and refresh_stats:
            entry.warm.stats = self._stats(campaign, entry)
