"""ingest on moto: drops publish snapshots with a conditional pointer swap; nothing ever rolls a pointer back."""

from __future__ import annotations

from typing import Any

import pytest
from _stack import (
    BUCKET,
    CAMPAIGN,
    EXAMPLE,
    FixedClock,
    load_app,
    load_event,
    put_retail,
    read_json,
    record_of,
)
from dco.aws.store import RollbackError, S3Store
from dco.snapshot import load_snapshot

POINTER = f"pointers/{CAMPAIGN}.json"


@pytest.fixture
def ingest(settings: Any) -> Any:
    app = load_app("ingest")
    app.clock = FixedClock()
    return app


def run(ingest: Any, event: dict[str, Any], context: Any) -> list[dict[str, Any]]:
    return ingest.handler(event, context)["results"]


def test_feed_drop_publishes_snapshot_pointer_and_report(aws, ingest, lambda_context):
    # GIVEN the campaign config and a feed in the bucket
    put_retail(aws.s3)
    # WHEN the feed-drop notification arrives
    [result] = run(ingest, load_event("ingest", "feed_drop"), lambda_context)
    # THEN a snapshot is published under its content hash and the pointer names it
    assert result["outcome"] == "published"
    pointer = read_json(aws.s3, POINTER)
    assert pointer["version"] == result["version"]
    assert pointer["key"] == f"snapshots/{CAMPAIGN}/{result['version'].removeprefix('sha256:')}.msgpack"
    assert pointer["sequence"] == "1767225600000.000000000000000065A1B2C3D4E5F601"
    assert pointer["feed"] == f"feeds/{CAMPAIGN}/products.tsv"
    snapshot = load_snapshot(aws.s3.get_object(Bucket=BUCKET, Key=pointer["key"])["Body"].read())
    assert snapshot.version == pointer["version"]
    assert snapshot.build["built_at"] == 1_767_225_600  # the event time, not the wall clock
    report = read_json(aws.s3, f"reports/{CAMPAIGN}/products.json")
    assert report["outcome"] == "published" and report["feed"]["accepted"] == 3000


def test_bad_feed_publishes_nothing_and_reports_why(aws, ingest, lambda_context):
    put_retail(aws.s3, feed=False)
    aws.s3.put_object(Bucket=BUCKET, Key=f"feeds/{CAMPAIGN}/products.tsv", Body=b"\xff\xfe\x00garbage\x00\x01")
    [result] = run(ingest, load_event("ingest", "feed_drop"), lambda_context)
    assert result["outcome"] == "rejected"
    assert "Contents" not in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="pointers/")
    assert "Contents" not in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="snapshots/")
    report = read_json(aws.s3, f"reports/{CAMPAIGN}/products.json")
    assert report["outcome"] == "rejected" and report["feed"]["publishable"] is False
    assert report["feed"]["fatal"] == "undecodable_file"


def test_bad_feed_after_a_good_one_leaves_the_pointer_alone(aws, ingest, lambda_context):
    put_retail(aws.s3)
    run(ingest, load_event("ingest", "feed_drop"), lambda_context)
    before = read_json(aws.s3, POINTER)
    aws.s3.put_object(Bucket=BUCKET, Key=f"feeds/{CAMPAIGN}/products.tsv", Body=b"id\ttitle\n")
    later = record_of(load_event("ingest", "feed_drop"), event_time="2026-01-01T01:00:00.000Z", sequencer="0065A1B2C3D4E5F699")
    [result] = run(ingest, later, lambda_context)
    assert result["outcome"] == "rejected"
    assert read_json(aws.s3, POINTER) == before


def test_campaign_without_config_is_rejected_with_a_report(aws, ingest, lambda_context):
    put_retail(aws.s3, campaign=False)
    [result] = run(ingest, load_event("ingest", "feed_drop"), lambda_context)
    assert result["outcome"] == "rejected"
    assert "no campaign config" in read_json(aws.s3, f"reports/{CAMPAIGN}/products.json")["error"]


def test_duplicate_and_out_of_order_notifications_never_roll_back(aws, ingest, lambda_context):
    # GIVEN feed A published by its notification
    put_retail(aws.s3)
    old_event = load_event("ingest", "feed_drop")
    [first] = run(ingest, old_event, lambda_context)
    # AND a newer feed B (fewer products) dropped later and published
    lines = (EXAMPLE / "feed.tsv").read_bytes().splitlines(keepends=True)
    aws.s3.put_object(Bucket=BUCKET, Key=f"feeds/{CAMPAIGN}/products.tsv", Body=b"".join(lines[:101]))
    new_event = record_of(old_event, event_time="2026-01-01T00:10:00.000Z", sequencer="0065A1B2C3D4E5F7FF")
    [second] = run(ingest, new_event, lambda_context)
    assert second["outcome"] == "published" and second["version"] != first["version"]
    newest = read_json(aws.s3, POINTER)
    # WHEN the notification of A is delivered again (duplicate, late) and B's is repeated
    [late] = run(ingest, old_event, lambda_context)
    [again] = run(ingest, new_event, lambda_context)
    # THEN neither replaces the newer pointer
    assert (late["outcome"], again["outcome"]) == ("superseded", "superseded")
    assert read_json(aws.s3, POINTER) == newest
    assert newest["previous"][0]["version"] == first["version"]


def test_campaign_drop_rebuilds_with_the_newest_feed(aws, ingest, lambda_context):
    put_retail(aws.s3)
    [feed] = run(ingest, load_event("ingest", "feed_drop"), lambda_context)
    # A changed campaign (holdout 0.1 -> 0.2) is dropped five minutes later.
    text = (EXAMPLE / "campaign.yaml").read_text().replace("holdout: 0.1", "holdout: 0.2")
    aws.s3.put_object(Bucket=BUCKET, Key=f"campaigns/{CAMPAIGN}.yaml", Body=text.encode())
    [campaign] = run(ingest, load_event("ingest", "campaign_drop"), lambda_context)
    assert campaign["outcome"] == "published" and campaign["version"] != feed["version"]
    pointer = read_json(aws.s3, POINTER)
    assert pointer["version"] == campaign["version"] and pointer["feed"] == f"feeds/{CAMPAIGN}/products.tsv"
    snapshot = load_snapshot(aws.s3.get_object(Bucket=BUCKET, Key=pointer["key"])["Body"].read())
    assert snapshot.campaign.holdout == 0.2 and snapshot.rows == 3000
    assert read_json(aws.s3, f"reports/{CAMPAIGN}/campaign.json")["outcome"] == "published"


def test_other_prefixes_are_ignored(aws, ingest, lambda_context):
    put_retail(aws.s3)
    event = load_event("ingest", "feed_drop")
    for key in (f"snapshots/{CAMPAIGN}/ab.msgpack", POINTER, f"reports/{CAMPAIGN}/products.json", "stats/x.msgpack"):
        assert run(ingest, record_of(event, key=key), lambda_context) == [{"key": key, "outcome": "ignored"}]
    assert "Contents" not in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="pointers/")


def test_rollback_points_back_and_a_late_drop_cannot_undo_it(aws, ingest, lambda_context):
    put_retail(aws.s3)
    event = load_event("ingest", "feed_drop")
    [first] = run(ingest, event, lambda_context)
    lines = (EXAMPLE / "feed.tsv").read_bytes().splitlines(keepends=True)
    aws.s3.put_object(Bucket=BUCKET, Key=f"feeds/{CAMPAIGN}/products.tsv", Body=b"".join(lines[:51]))
    newer = record_of(event, event_time="2026-01-01T02:00:00.000Z", sequencer="0065A1B2C3D4E5F800")
    [second] = run(ingest, newer, lambda_context)
    store = S3Store(BUCKET, client=aws.s3)

    pointer = store.rollback(CAMPAIGN, first["version"], now=1_767_240_000)

    assert pointer["version"] == first["version"] and pointer["rolled_back_from"] == second["version"]
    assert read_json(aws.s3, POINTER)["version"] == first["version"]
    assert run(ingest, newer, lambda_context)[0]["outcome"] == "superseded"  # redelivery keeps the rollback
    assert read_json(aws.s3, POINTER)["version"] == first["version"]
    with pytest.raises(RollbackError):
        store.rollback(CAMPAIGN, "sha256:" + "f" * 64)
    with pytest.raises(RollbackError):
        store.rollback("no-such-campaign", first["version"])


def test_a_lost_pointer_race_is_retried_against_the_new_pointer(aws, ingest, lambda_context):
    store = S3Store(BUCKET, client=aws.s3)
    ingest.get_store = lambda: store
    put_retail(aws.s3)
    run(ingest, load_event("ingest", "feed_drop"), lambda_context)
    original = store.swap_pointer
    calls = []

    def racing_swap(campaign: str, pointer: dict[str, Any], etag: str | None) -> None:
        if not calls:  # someone else rewrites the pointer between our read and our write
            current, current_etag = store.read_pointer(campaign) or ({}, None)
            original(campaign, {**current, "published_at": 1}, current_etag)
        calls.append(etag)
        original(campaign, pointer, etag)

    store.swap_pointer = racing_swap  # type: ignore[method-assign]
    text = (EXAMPLE / "campaign.yaml").read_text().replace("holdout: 0.1", "holdout: 0.3")
    aws.s3.put_object(Bucket=BUCKET, Key=f"campaigns/{CAMPAIGN}.yaml", Body=text.encode())
    [result] = run(ingest, load_event("ingest", "campaign_drop"), lambda_context)
    assert result["outcome"] == "published" and len(calls) == 2 and calls[0] != calls[1]
    assert read_json(aws.s3, POINTER)["version"] == result["version"]
