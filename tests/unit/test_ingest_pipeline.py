"""The ingest pipeline without AWS: keys, sequences, pointer decisions, builds and the publish loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dco.ingest import (
    PUBLISHED,
    REJECTED,
    SUPERSEDED,
    UNCHANGED,
    PointerConflictError,
    build,
    classify_key,
    drop_from_record,
    make_sequence,
    next_pointer,
    process,
    rollback_pointer,
)

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = "retail-demo"
CONFIG = (ROOT / "examples/retail/campaign.yaml").read_bytes()
FEED = b"".join((ROOT / "examples/retail/feed.tsv").read_bytes().splitlines(keepends=True)[:31])
V1, V2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("campaigns/retail-demo.yaml", ("campaign", "retail-demo", "campaign")),
        ("campaigns/retail-demo.json", ("campaign", "retail-demo", "campaign")),
        ("feeds/retail-demo/daily.tsv", ("feed", "retail-demo", "daily")),
        ("feeds/retail-demo/2026/01/daily.csv", ("feed", "retail-demo", "2026/01/daily")),
        ("feeds/retail-demo/../x.tsv", None),
        ("feeds/retail-demo/daily.xlsx", None),
        ("campaigns/Retail.yaml", None),
        ("snapshots/retail-demo/ab.msgpack", None),
        ("pointers/retail-demo.json", None),
        ("reports/retail-demo/daily.json", None),
        ("stats/retail-demo.msgpack", None),
    ],
)
def test_only_input_keys_are_ingested(key, expected):
    assert classify_key(key) == expected


def test_sequences_compare_as_fixed_width_strings():
    # S3: compare sequencers of one key as hex after left-padding the shorter with zeros.
    short, long = make_sequence(1000, "FF"), make_sequence(1000, "0100")
    assert short < long
    assert make_sequence(999, "FFFFFFFF") < make_sequence(1000, "00")  # event time first (different keys)
    assert make_sequence(1000, "abc") == make_sequence(1000, "ABC")
    with pytest.raises(ValueError):
        make_sequence(1000, "xyz")


def test_drop_from_record_decodes_keys_and_ignores_other_events():
    record = {
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-01-01T00:00:01.500Z",
        "s3": {"object": {"key": "feeds/retail-demo/spring+sale.tsv", "sequencer": "0A"}},
    }
    drop = drop_from_record(record)
    assert drop is not None
    assert (drop.kind, drop.name, drop.key) == ("feed", "spring sale", "feeds/retail-demo/spring sale.tsv")
    assert drop.built_at == 1_767_225_601 and drop.sequence == make_sequence(1_767_225_601_500, "0A")
    assert drop_from_record({**record, "eventName": "ObjectRemoved:Delete"}) is None
    with pytest.raises(ValueError):
        drop_from_record({**record, "eventTime": "yesterday"})


def test_next_pointer_publishes_supersedes_and_keeps_history():
    first = next_pointer(None, campaign=CAMPAIGN, version=V1, sequence="002", feed="f", published_at=1)
    assert first.outcome == PUBLISHED and first.pointer is not None and first.pointer["previous"] == []
    assert next_pointer(first.pointer, campaign=CAMPAIGN, version=V2, sequence="002", feed="f", published_at=2).outcome == SUPERSEDED
    assert next_pointer(first.pointer, campaign=CAMPAIGN, version=V2, sequence="001", feed="f", published_at=2).outcome == SUPERSEDED
    same = next_pointer(first.pointer, campaign=CAMPAIGN, version=V1, sequence="003", feed="f", published_at=3)
    assert same.outcome == UNCHANGED and same.pointer is not None and same.pointer["previous"] == []
    pointer: dict[str, Any] = first.pointer
    for i in range(15):
        decision = next_pointer(pointer, campaign=CAMPAIGN, version=f"sha256:{i:064x}", sequence=f"{10 + i:03d}", feed=None, published_at=i)
        assert decision.pointer is not None
        pointer = decision.pointer
    assert len(pointer["previous"]) == 10 and pointer["previous"][0]["version"] == f"sha256:{13:064x}"


def test_rollback_keeps_the_sequence():
    first = next_pointer(None, campaign=CAMPAIGN, version=V1, sequence="5", feed="a", published_at=1).pointer
    second = next_pointer(first, campaign=CAMPAIGN, version=V2, sequence="6", feed="b", published_at=2).pointer
    back = rollback_pointer(second, version=V1, published_at=3)
    assert (back["version"], back["sequence"], back["feed"], back["rolled_back_from"]) == (V1, "6", "a", V2)
    assert next_pointer(back, campaign=CAMPAIGN, version=V2, sequence="6", feed="b", published_at=4).outcome == SUPERSEDED


def test_build_accepts_a_good_pair_deterministically():
    a = build(CAMPAIGN, CONFIG, FEED, built_at=7)
    b = build(CAMPAIGN, CONFIG, FEED, built_at=7)
    assert a.accepted and a.snapshot == b.snapshot and a.report["version"] == a.version
    assert a.report["feed"]["accepted"] == 30


@pytest.mark.parametrize(
    ("campaign", "config", "feed", "needle"),
    [
        (CAMPAIGN, None, FEED, "no campaign config"),
        (CAMPAIGN, b"id: [unclosed", FEED, "does not parse"),
        (CAMPAIGN, CONFIG.replace(b"timezone: America/Chicago", b"timezone: Mars/Olympus"), FEED, "invalid"),
        ("other-id", CONFIG, FEED, "does not match"),
        (CAMPAIGN, CONFIG, b"\xff\xfe\x00\x00", "feed rejected"),
        (CAMPAIGN, CONFIG, None, "do not fit"),  # the campaign indexes feed columns: it needs a feed
    ],
)
def test_build_rejects_with_a_report(campaign, config, feed, needle):
    result = build(campaign, config, feed)
    assert not result.accepted and result.snapshot is None
    assert needle in result.report["error"]


class MemoryStore:
    """The IngestStore port in memory, with an ETag per pointer write and an optional racing writer."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.pointer: tuple[dict[str, Any], str] | None = None
        self.writes = 0
        self.race = 0  # this many swaps lose to a concurrent writer first

    def read(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def newest(self, keys_or_prefix: Any, suffixes: Any) -> str | None:
        keys = [k for k in self.objects if (k.startswith(keys_or_prefix) and k.endswith(tuple(suffixes)))] if isinstance(
            keys_or_prefix, str
        ) else [k for k in keys_or_prefix if k in self.objects]
        return keys[-1] if keys else None

    def read_pointer(self, campaign: str) -> tuple[dict[str, Any], str] | None:
        return self.pointer

    def put_snapshot(self, key: str, body: bytes) -> None:
        self.objects.setdefault(key, body)

    def swap_pointer(self, campaign: str, pointer: Any, etag: str | None) -> None:
        if self.race:
            self.race -= 1
            self.writes += 1
            current = self.pointer[0] if self.pointer else {}
            self.pointer = (dict(current, published_at=-1), f"e{self.writes}")
        if (self.pointer[1] if self.pointer else None) != etag:
            raise PointerConflictError("moved")
        self.writes += 1
        self.pointer = (dict(pointer), f"e{self.writes}")

    def put_report(self, key: str, report: Any) -> None:
        self.objects[key] = json.dumps(report, default=str).encode()


def _drop(kind: str, seq_ms: int):
    key = f"feeds/{CAMPAIGN}/daily.tsv" if kind == "feed" else f"campaigns/{CAMPAIGN}.yaml"
    record = {"eventName": "ObjectCreated:Put", "eventTime": "2026-01-01T00:00:00Z", "s3": {"object": {"key": key}}}
    drop = drop_from_record(record)
    assert drop is not None
    return type(drop)(drop.campaign, drop.kind, drop.key, drop.name, make_sequence(seq_ms, "01"), seq_ms)


def test_process_publishes_and_reports():
    store = MemoryStore()
    store.objects |= {f"campaigns/{CAMPAIGN}.yaml": CONFIG, f"feeds/{CAMPAIGN}/daily.tsv": FEED}
    outcome = process(_drop("feed", 1000), store, now=5)
    assert outcome.outcome == PUBLISHED and store.pointer is not None
    assert store.pointer[0]["key"] in store.objects
    assert json.loads(store.objects[f"reports/{CAMPAIGN}/daily.json"])["outcome"] == PUBLISHED
    assert process(_drop("feed", 1000), store, now=6).outcome == SUPERSEDED  # a duplicate notification
    # A later campaign drop with the same inputs (built in the same second) gives the same version.
    assert process(_drop("campaign", 1500), store, now=7).outcome == UNCHANGED


def test_process_retries_lost_races_and_gives_up_eventually():
    store = MemoryStore()
    store.objects |= {f"campaigns/{CAMPAIGN}.yaml": CONFIG, f"feeds/{CAMPAIGN}/daily.tsv": FEED}
    store.race = 2
    assert process(_drop("feed", 1000), store, now=5).outcome == PUBLISHED
    store.race = 100
    with pytest.raises(PointerConflictError):
        process(_drop("feed", 3000), store, now=6)


def test_rejected_drop_writes_only_the_report():
    store = MemoryStore()
    store.objects |= {f"campaigns/{CAMPAIGN}.yaml": CONFIG, f"feeds/{CAMPAIGN}/daily.tsv": b"id\n"}
    outcome = process(_drop("feed", 1000), store, now=5)
    assert outcome.outcome == REJECTED and store.pointer is None
    assert sorted(store.objects) == [f"campaigns/{CAMPAIGN}.yaml", f"feeds/{CAMPAIGN}/daily.tsv", f"reports/{CAMPAIGN}/daily.json"]
