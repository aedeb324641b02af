"""Warm state: refresh at most every N seconds, conditional fetches, the last good state through failures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgpack
import pytest
from dco.ingest import build, snapshot_key
from dco.warm import (
    NOT_MODIFIED,
    SNAPSHOT_REFRESH_FAILED,
    STATS_REFRESH_FAILED,
    Blob,
    SourceError,
    UnknownCampaignError,
    WarmCache,
    WarmStateUnavailableError,
)

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = "retail-demo"


def _build(holdout: str = "0.1") -> tuple[str, bytes]:
    config = (ROOT / "examples/retail/campaign.yaml").read_text().replace("holdout: 0.1", f"holdout: {holdout}")
    feed = b"".join((ROOT / "examples/retail/feed.tsv").read_bytes().splitlines(keepends=True)[:41])
    result = build(CAMPAIGN, config.encode(), feed, built_at=1)
    assert result.snapshot is not None and result.version is not None, result.report
    return result.version, result.snapshot


@pytest.fixture(scope="module")
def snapshots() -> list[tuple[str, bytes]]:
    return [_build("0.1"), _build("0.2")]


class FakeSource:
    """In-memory objects with MD5 entity tags; ``down`` makes every fetch fail."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.down = False
        self.fetches: list[tuple[str, str | None]] = []

    def put(self, key: str, body: bytes) -> None:
        self.objects[key] = body

    def publish(self, version: str, body: bytes) -> None:
        key = snapshot_key(CAMPAIGN, version)
        self.put(key, body)
        self.put(f"pointers/{CAMPAIGN}.json", json.dumps({"campaign": CAMPAIGN, "version": version, "key": key}).encode())

    def fetch(self, key: str, etag: str | None = None):
        self.fetches.append((key, etag))
        if self.down:
            raise SourceError("endpoint unreachable")
        body = self.objects.get(key)
        if body is None:
            return None
        tag = '"' + hashlib.md5(body).hexdigest() + '"'
        return NOT_MODIFIED if etag == tag else Blob(body, tag)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def failures() -> list[str]:
    return []


@pytest.fixture
def cache(source, clock, failures) -> WarmCache:
    return WarmCache(source, clock, refresh_seconds=30, on_failure=lambda metric, detail: failures.append(metric))


def test_cold_load_then_no_fetch_within_the_interval(cache, source, snapshots):
    source.publish(*snapshots[0])
    warm = cache.get(CAMPAIGN)
    assert warm.version == snapshots[0][0] and len(warm.stats) == 0
    assert [k for k, _ in source.fetches] == [
        f"pointers/{CAMPAIGN}.json", snapshot_key(CAMPAIGN, snapshots[0][0]), f"stats/{CAMPAIGN}.msgpack"
    ]
    source.fetches.clear()
    assert cache.get(CAMPAIGN) is warm and source.fetches == []


def test_after_the_interval_fetches_are_conditional_and_the_engine_is_reused(cache, source, clock, snapshots):
    source.publish(*snapshots[0])
    engine = cache.get(CAMPAIGN).engine
    source.fetches.clear()
    clock.now += 30
    assert cache.get(CAMPAIGN).engine is engine
    assert source.fetches[0][0] == f"pointers/{CAMPAIGN}.json" and source.fetches[0][1] is not None
    assert all(not key.startswith("snapshots/") for key, _ in source.fetches)


def test_a_new_pointer_is_served_after_the_interval_only(cache, source, clock, snapshots):
    source.publish(*snapshots[0])
    cache.get(CAMPAIGN)
    source.publish(*snapshots[1])
    clock.now += 29
    assert cache.get(CAMPAIGN).version == snapshots[0][0]
    clock.now += 1
    assert cache.get(CAMPAIGN).version == snapshots[1][0]
    assert cache.loaded() == {CAMPAIGN: snapshots[1][0]}


def test_outage_keeps_the_last_good_state_and_retries_after_the_interval(cache, source, clock, failures, snapshots):
    source.publish(*snapshots[0])
    cache.get(CAMPAIGN)
    source.down = True
    clock.now += 31
    assert cache.get(CAMPAIGN).version == snapshots[0][0]
    assert failures == [SNAPSHOT_REFRESH_FAILED]
    count = len(source.fetches)
    assert cache.get(CAMPAIGN).version == snapshots[0][0]
    assert len(source.fetches) == count  # no retry on every request during an outage


def test_cold_start_during_an_outage_is_unavailable(cache, source, failures):
    source.down = True
    with pytest.raises(WarmStateUnavailableError):
        cache.get(CAMPAIGN)
    assert failures == [SNAPSHOT_REFRESH_FAILED]


@pytest.mark.parametrize(
    "bad",
    [b"", b"not msgpack", msgpack.packb(["dco-snapshot", 99, b"0" * 32, b"", b""]), "truncate"],
)
def test_a_bad_new_snapshot_is_rejected_and_the_old_one_kept(cache, source, clock, failures, snapshots, bad):
    source.publish(*snapshots[0])
    cache.get(CAMPAIGN)
    body = snapshots[1][1][:-10] if bad == "truncate" else bad
    source.publish(snapshots[1][0], body)
    clock.now += 31
    assert cache.get(CAMPAIGN).version == snapshots[0][0]
    assert failures == [SNAPSHOT_REFRESH_FAILED]
    source.publish(*snapshots[1])  # fixed in place: picked up at the next interval
    clock.now += 31
    assert cache.get(CAMPAIGN).version == snapshots[1][0]


def test_a_pointer_to_another_campaigns_snapshot_is_rejected(source, clock, failures, snapshots):
    cache = WarmCache(source, clock, on_failure=lambda m, d: failures.append(m))
    key = snapshot_key("other", snapshots[0][0])
    source.put(key, snapshots[0][1])
    source.put("pointers/other.json", json.dumps({"version": snapshots[0][0], "key": key}).encode())
    with pytest.raises(WarmStateUnavailableError):
        cache.get("other")


def test_unknown_campaigns_are_remembered_for_the_interval(cache, source, clock):
    with pytest.raises(UnknownCampaignError):
        cache.get("nope")
    assert "nope" not in cache
    count = len(source.fetches)
    assert "nope" not in cache and len(source.fetches) == count
    clock.now += 31
    assert "nope" not in cache and len(source.fetches) == count + 1


def test_stats_are_decoded_and_a_bad_stats_object_keeps_the_last_good(cache, source, clock, failures, snapshots):
    source.publish(*snapshots[0])
    stats = {"version": 1, "campaign": CAMPAIGN, "arms": {"cr-retail": [10, 3, 0, 0]}, "components": {}}
    source.put(f"stats/{CAMPAIGN}.msgpack", msgpack.packb(stats))
    assert cache.get(CAMPAIGN).stats.get("cr-retail").clicks == 3
    source.put(f"stats/{CAMPAIGN}.msgpack", msgpack.packb({"version": 1, "arms": {"x": [1, 2]}}))
    clock.now += 31
    assert cache.get(CAMPAIGN).stats.get("cr-retail").clicks == 3
    assert failures == [STATS_REFRESH_FAILED]


def test_track_mode_skips_stats(source, clock, snapshots):
    source.publish(*snapshots[0])
    cache = WarmCache(source, clock, with_stats=False)
    assert CAMPAIGN in cache
    assert all(not key.startswith("stats/") for key, _ in source.fetches)

