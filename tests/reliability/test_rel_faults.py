"""Faults on moto (issue 8, items 1-3): what tests/functional does not already prove.

* publish-stats exactly-once under faults: a crash after the k-th stats write, conditional writes that keep
  losing to another writer (a moved ETag), Lambda's redeliveries (whole batch; from the lowest failed sequence
  number) and the whole stream again an hour of simulated time later: the stats object equals the counters.
* fold redelivered an hour (and 23 hours) of simulated time later, after newer records of another shard.
* Events table throttling injected at the client, under botocore's own retry handler: retried with backoff;
  past the retries the beacon is a 503 with Retry-After (a server-side condition), nothing half-stored.
* S3 down during ingest at every step of a publication: nothing half-published (the pointer never names a
  snapshot that is not complete; no report claims a publication that did not happen); the retry publishes.
* Two ingests racing on one campaign (threads on moto, interleaved at the pointer): one swap wins per version,
  the newer snapshot stays live.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from typing import Any

import pytest
from _stack import (
    BUCKET,
    CAMPAIGN,
    EXAMPLE,
    SAMPLE_NOW,
    SAMPLE_RING,
    FixedClock,
    load_app,
    load_event,
    publish_retail,
    put_retail,
    read_json,
    record_of,
)
from botocore.exceptions import ClientError, EndpointConnectionError
from dco.aws.counters import CounterStore
from dco.aws.stats_store import StatsStore, stats_key
from dco.learning.contract import COUNTER_SECTIONS

from tests.functional.conftest import AwsResources, LambdaContext, load_handler
from tests.functional.test_fold import BOUNDARY, campaign_counters, deliver, expected, item_of, synthetic

SHARD_A = "shardId-00000001714550000000-aaaa0000"
SHARD_B = "shardId-00000001714553600000-bbbb0000"
SEEDS = (11, 12, 13)
HOUR = 3600
CTX = LambdaContext()


class Crash(RuntimeError):
    """The function dies mid-batch (timeout, out of memory): Lambda redelivers the whole batch."""


def _seq_key(sequence: str) -> str:
    return sequence.zfill(40)


# ================================================================================== publish-stats under faults


def counter_stream(aws: AwsResources, seed: int, campaigns: list[str], chunk: int = 12) -> list[dict[str, Any]]:
    """The Counters table's stream as fold makes it: events folded chunk by chunk, and after each chunk one
    MODIFY record (NEW_IMAGE) per counter item the chunk changed; older images come before newer ones."""
    events = []
    for n, campaign in enumerate(campaigns):  # one shard per campaign, so every shard's order is kept
        events.extend(synthetic(seed * 10 + n, 20, campaign, (f"shard-{n}",), small=True))
    events.sort(key=lambda r: r.created_at)
    store = CounterStore(aws.counters_table, aws.dynamodb, max_workers=1)
    stream: list[dict[str, Any]] = []
    for start in range(0, len(events), chunk):
        part = events[start:start + chunk]
        assert deliver(store, part) == []
        keys = sorted({item_of(k) for k in expected(part)})  # discounted sums live in their counter's item
        request = {aws.counters_table: {"Keys": [{"pk": {"S": k}} for k in keys], "ConsistentRead": True}}
        items = aws.dynamodb.batch_get_item(RequestItems=request)["Responses"][aws.counters_table]
        for item in sorted(items, key=lambda i: i["pk"]["S"]):
            sequence = str(7_000_000 + len(stream))
            stream.append({
                "eventID": f"ev-{sequence}", "eventName": "MODIFY", "eventSource": "aws:dynamodb",
                "dynamodb": {"Keys": {"pk": item["pk"]}, "NewImage": item, "SequenceNumber": sequence,
                             "StreamViewType": "NEW_IMAGE"},
            })
    return stream


def clean_objects(aws: AwsResources, campaigns: list[str], stream: list[dict[str, Any]], now: int) -> dict[str, Any]:
    """What one clean application of the whole stream gives (a fresh bucket, no faults), per campaign."""
    bucket = f"clean-{campaigns[0]}"[:63]
    aws.s3.create_bucket(Bucket=bucket)
    app = load_handler("publish_stats")
    app.clock = lambda: now
    app.STORE = StatsStore(bucket, aws.s3)
    assert app.lambda_handler({"Records": stream}, CTX) == {"batchItemFailures": []}
    return {c: StatsStore(bucket, aws.s3).load(c)[0] for c in campaigns}


def rows_of_counters(aws: AwsResources, campaign: str) -> dict[str, dict[str, list[Any]]]:
    """A campaign's counter items as stats rows per section (an independent view of the truth): the all-time row
    of every ``arm:``, ``split:`` and ``ctx:`` item, and one ``<key>#d<epoch>`` row per epoch of discounted sums a
    ``ctx:`` item keeps (attributes ``d<epoch><i|c|n>``, docs/storage.md; a field not stored is 0)."""
    out: dict[str, dict[str, list[Any]]] = {section: {} for section in COUNTER_SECTIONS}
    for page in aws.dynamodb.get_paginator("scan").paginate(TableName=aws.counters_table, ConsistentRead=True):
        for item in page["Items"]:
            owner, _, counter = item["pk"]["S"].partition("#")
            prefix, colon, key = counter.partition(":")
            if owner != campaign or not colon:
                continue
            rows = out[{"arm": "arms", "split": "splits", "ctx": "contexts"}[prefix]]
            rows[key] = [int(item["impressions"]["N"]), int(item["clicks"]["N"]),
                         int(item["conversions"]["N"]), float(item["value"]["N"])]
            for name, value in item.items():
                found = re.fullmatch(r"d(\d+)([icn])", name)
                if found:
                    row = rows.setdefault(f"{key}#d{found[1]}", [0, 0, 0, 0.0])
                    row["icn".index(found[2])] = int(value["N"])
    return out


class FaultyS3:
    """An S3 client for publish-stats: the first ``allow`` stats writes go through, then

    * ``crash``: the next write kills the invocation (once);
    * ``conflict``: before each of the next ``rounds`` writes another publisher writes the same object first
      (older counts of the same counters, as a concurrent publish-stats would), so our ``IfMatch`` fails (412).
    """

    def __init__(self, client: Any, allow: int, mode: str, rival: dict[str, dict[str, Any]], rounds: int = 6, *,
                 now: int) -> None:
        self.client, self.allow, self.mode, self.rival, self.rounds = client, allow, mode, rival, rounds
        self.now = now  # the rival publisher's clock
        self.puts = 0
        self.faults = 0

    def put_object(self, **kwargs: Any) -> Any:
        if kwargs["Key"].startswith("stats/"):
            self.puts += 1
            if self.puts > self.allow:
                if self.mode == "crash" and self.faults == 0:
                    self.faults += 1
                    raise Crash(f"killed at stats write {self.puts}")
                if self.mode == "conflict" and self.faults < self.rounds:
                    self.faults += 1
                    campaign = kwargs["Key"][len("stats/"):-len(".msgpack")]
                    StatsStore(kwargs["Bucket"], self.client).publish(campaign, self.rival[campaign],
                                                                      now=self.now)
        return self.client.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def deliver_stream(app: Any, stream: list[dict[str, Any]], batch_size: int) -> int:
    """Lambda's event source mapping over ``stream``: batches in order; a crash redelivers the batch, a partial
    batch response redelivers from the lowest failed sequence number. Returns the invocations made."""
    invocations = 0
    for start in range(0, len(stream), batch_size):
        batch = stream[start:start + batch_size]
        pending = batch
        for _ in range(20):
            invocations += 1
            try:
                response = app.lambda_handler({"Records": [dict(r) for r in pending]}, CTX)
            except Crash:
                continue
            failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
            if not failed:
                break
            lowest = min(failed, key=_seq_key)
            pending = [r for r in batch if _seq_key(r["dynamodb"]["SequenceNumber"]) >= _seq_key(lowest)]
        else:
            pytest.fail("batch never succeeded")
    return invocations


@pytest.mark.parametrize("seed", SEEDS)
def test_publish_stats_exactly_once_under_faults(aws: AwsResources, settings: Any, seed: int) -> None:
    for mode in ("crash", "conflict"):
        _publish_stats_under_faults(aws, seed, mode)


def _publish_stats_under_faults(aws: AwsResources, seed: int, mode: str) -> None:
    from dco.aws.stats_store import decode_counters
    from dco.fold import stats_updates

    now = BOUNDARY + HOUR  # the events' times straddle BOUNDARY
    campaigns = [f"ps{seed}-{mode[:2]}-{n}" for n in range(2)]
    stream = counter_stream(aws, seed, campaigns, chunk=10)
    want = clean_objects(aws, campaigns, stream, now)
    truth = {c: rows_of_counters(aws, c) for c in campaigns}
    assert all(any("#d" in key for key in truth[c]["contexts"]) for c in campaigns)  # discounted sums published
    rival: dict[str, dict[str, Any]] = {c: {s: {} for s in COUNTER_SECTIONS} for c in campaigns}
    rows, _ = decode_counters(stream[: len(stream) // 2])  # older images of the same counters
    for campaign, update in stats_updates((row for _, row in rows), now=1).items():
        for section in COUNTER_SECTIONS:
            rival[campaign][section].update(update.get(section, {}))
    k = 0
    while True:
        bucket = f"ps-{seed}-{mode}-{k}"
        aws.s3.create_bucket(Bucket=bucket)
        faulty = FaultyS3(aws.s3, k, mode, rival, now=now)
        app = load_handler("publish_stats")
        app.clock = lambda: now
        app.STORE = StatsStore(bucket, faulty, sleep=lambda _s: None)

        # WHEN the stream is delivered in batches with a fault after the k-th stats write
        deliver_stream(app, stream, batch_size=20)
        if faulty.faults == 0:  # k passed the number of writes a clean run makes: every position was tried
            break
        # THEN every stats object equals one clean application, and the counters' arm rows
        for campaign in campaigns:
            obj, _ = StatsStore(bucket, aws.s3).load(campaign)
            assert obj is not None
            assert {s: obj[s] for s in COUNTER_SECTIONS} == \
                {s: want[campaign][s] for s in COUNTER_SECTIONS}, (seed, mode, k, campaign)
            assert {s: obj[s] for s in COUNTER_SECTIONS} == truth[campaign]

        # AND an hour of simulated time later the whole stream comes again: nothing changes, nothing is written
        etags = {c: aws.s3.head_object(Bucket=bucket, Key=stats_key(c))["ETag"] for c in campaigns}
        later = load_handler("publish_stats")
        later.clock = lambda: now + HOUR
        later.STORE = StatsStore(bucket, aws.s3)
        assert later.lambda_handler({"Records": stream}, CTX) == {"batchItemFailures": []}
        for campaign in campaigns:
            assert aws.s3.head_object(Bucket=bucket, Key=stats_key(campaign))["ETag"] == etags[campaign]
        k += 1
    print(f"\npublish-stats seed {seed} {mode}: a fault after each of {k} write positions, {len(stream)} records")
    assert k >= 5, k


# ============================================================================== fold, redelivered much later


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("delay", [HOUR, 23 * HOUR])
def test_fold_redelivered_hours_later_after_newer_records(aws: AwsResources, seed: int, delay: int) -> None:
    campaign = f"late-{seed}-{delay}"
    first = synthetic(seed, 40, campaign, (SHARD_A,))
    newer = [dataclasses.replace(r, created_at=r.created_at + delay)
             for r in synthetic(seed + 50, 30, campaign, (SHARD_B,))]
    store = CounterStore(aws.counters_table, aws.dynamodb, max_workers=4)
    # GIVEN shard A folded, then (simulated time later) a newer shard B folded into the same counters
    assert deliver(store, first) == []
    assert deliver(store, newer) == []
    # WHEN shard A's records are delivered again, whole and from the middle
    assert deliver(store, first) == []
    assert deliver(store, first[17:]) == []
    # THEN the counters equal one clean application of everything
    assert campaign_counters(aws, first + newer) == expected(first + newer)


# ====================================================================== Events table throttled in track


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kwargs: Any) -> Any:
        yield self.body


def throttle_puts(client: Any, times: int) -> dict[str, int]:
    """Make the next ``times`` PutItem attempts of a real boto3 DynamoDB client answer HTTP 400
    ProvisionedThroughputExceededException (``state["throttle"]`` can be changed later), at the HTTP send,
    so botocore's own retry handler (standard mode, jittered exponential backoff) sees real throttles."""
    from botocore.awsrequest import AWSResponse

    state = {"calls": 0, "throttle": times}
    originals: dict[int, Any] = {}
    body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                       "message": "The level of configured provisioned throughput for the table was exceeded."})

    def hook(request: Any, **_kwargs: Any) -> Any:
        state["calls"] += 1
        original = originals.setdefault(id(request), request.body)
        request.body = original  # botocore re-sends the same request object on a retry
        if state["calls"] <= state["throttle"]:
            # every before-send handler runs (moto's stubber too) and the first response wins: point the
            # request at no table, so the Events table never sees it, as when DynamoDB sheds the write
            request.body = json.dumps({"TableName": "throttled-void", "Item": {"pk": {"S": "x"}}}).encode()
            return AWSResponse(request.url, 400, {"x-amzn-requestid": "throttled",
                                                  "content-type": "application/x-amz-json-1.0"}, _Raw(body.encode()))
        return None

    client.meta.events.register_first("before-send.dynamodb.PutItem", hook)
    return state


@pytest.fixture
def track(aws: Any, settings: Any) -> Any:
    publish_retail(aws.s3)
    app = load_app("track")
    app.clock = FixedClock(SAMPLE_NOW)
    app.get_keys = lambda: SAMPLE_RING
    app.get_settings = lambda: settings
    return app


def _events(aws: Any) -> list[dict[str, Any]]:
    return aws.dynamodb.scan(TableName=aws.events_table, ConsistentRead=True)["Items"]


def test_throttled_beacon_is_retried_by_the_client_with_backoff(aws, track, lambda_context) -> None:
    client = track._events().client  # the production client: Config(retries standard, max_attempts=3)
    state = throttle_puts(client, times=2)
    response = track.handler(load_event("track", "impression"), lambda_context)
    assert response["statusCode"] == 200
    assert state["calls"] == 3  # two throttled attempts, then the put that stored it
    assert len(_events(aws)) == 1


def test_beacon_that_cannot_be_stored_is_503_and_a_retry_counts_once(aws, track, lambda_context) -> None:
    client = track._events().client
    state = throttle_puts(client, times=100)  # every attempt botocore makes is throttled
    event = load_event("track", "click")
    response = track.handler(event, lambda_context)
    # A beacon we could not store is a server-side condition, not the client's mistake: 503 + Retry-After,
    # a JSON error without internals (no exception text, no stack trace), and no redirect.
    assert response["statusCode"] == 503, response
    headers = {k.lower(): v for k, v in response["headers"].items()}
    assert headers["retry-after"] and "location" not in headers
    body = json.loads(response["body"])
    assert body["error"]["param"] is None and "Throughput" not in response["body"]
    assert "Traceback" not in response["body"]
    assert 3 <= state["calls"] <= 5 and _events(aws) == []  # bounded retries (botocore standard mode)
    state["throttle"] = 0
    # WHEN the browser (or the pixel's retry) sends it again once the table has capacity: stored once
    assert track.handler(load_event("track", "click"), lambda_context)["statusCode"] == 302
    assert track.handler(load_event("track", "click"), lambda_context)["statusCode"] == 302
    assert len(_events(aws)) == 1


# =========================================================================== S3 down during ingest


class BrokenS3:
    """An S3 client that fails one kind of call (``step``) while ``down``: like an unreachable endpoint
    (``endpoint``) or S3 shedding load (``slowdown``: 503 SlowDown)."""

    STEPS = {
        "list": ("list_objects_v2", None),
        "read_input": ("get_object", ("campaigns/", "feeds/")),
        "read_pointer": ("get_object", ("pointers/",)),
        "put_snapshot": ("put_object", ("snapshots/",)),
        "swap_pointer": ("put_object", ("pointers/",)),
        "put_report": ("put_object", ("reports/",)),
    }

    def __init__(self, client: Any, step: str, kind: str) -> None:
        self.client, self.step, self.kind, self.down, self.hits = client, step, kind, False, 0

    def _maybe_fail(self, method: str, kwargs: dict[str, Any]) -> None:
        name, prefixes = self.STEPS[self.step]
        if not self.down or method != name:
            return
        if prefixes and not str(kwargs.get("Key", "")).startswith(prefixes):
            return
        self.hits += 1
        if self.kind == "endpoint":
            raise EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com")
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                           "ResponseMetadata": {"HTTPStatusCode": 503}}, method)

    def get_object(self, **kwargs: Any) -> Any:
        self._maybe_fail("get_object", kwargs)
        return self.client.get_object(**kwargs)

    def put_object(self, **kwargs: Any) -> Any:
        self._maybe_fail("put_object", kwargs)
        return self.client.put_object(**kwargs)

    def list_objects_v2(self, **kwargs: Any) -> Any:
        self._maybe_fail("list_objects_v2", kwargs)
        return self.client.list_objects_v2(**kwargs)

    def get_paginator(self, name: str) -> Any:
        outer = self

        class Paginator:
            def paginate(self, **kwargs: Any) -> Any:
                outer._maybe_fail(name, kwargs)
                return outer.client.get_paginator(name).paginate(**kwargs)

        return Paginator()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def _snapshots(aws: Any) -> set[str]:
    return {o["Key"] for o in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="snapshots/").get("Contents", [])}


@pytest.mark.parametrize("kind", ["endpoint", "slowdown"])
@pytest.mark.parametrize("step", list(BrokenS3.STEPS))
def test_s3_down_during_ingest_publishes_nothing_half(aws, settings, lambda_context, step: str, kind: str) -> None:
    from dco.aws.store import S3Store
    from dco.snapshot import load_snapshot

    broken = BrokenS3(aws.s3, step, kind)
    ingest = load_app("ingest")
    ingest.clock = FixedClock()
    ingest.get_store = lambda: S3Store(BUCKET, client=broken)
    # GIVEN version 1 published
    put_retail(aws.s3)
    [first] = ingest.handler(load_event("ingest", "feed_drop"), lambda_context)["results"]
    assert first["outcome"] == "published"
    before = read_json(aws.s3, f"pointers/{CAMPAIGN}.json")
    # WHEN a changed campaign is dropped while S3 fails at one step of the publication
    text = (EXAMPLE / "campaign.yaml").read_text().replace("holdout: 0.1", "holdout: 0.25")
    aws.s3.put_object(Bucket=BUCKET, Key=f"campaigns/{CAMPAIGN}.yaml", Body=text.encode())
    event = load_event("ingest", "campaign_drop")
    broken.down = True
    with pytest.raises((EndpointConnectionError, ClientError)):  # the invocation fails: Lambda retries it
        ingest.handler(event, lambda_context)
    broken.down = False
    assert broken.hits >= 1
    # THEN the pointer names a complete, verifiable snapshot: the old one, or (the report write failed after
    # the swap) the new one; and no report claims that this drop was published unless it was
    pointer = read_json(aws.s3, f"pointers/{CAMPAIGN}.json")
    load_snapshot(aws.s3.get_object(Bucket=BUCKET, Key=pointer["key"])["Body"].read())  # checksum verified
    if step == "put_report":
        assert pointer["version"] != before["version"]
    else:
        assert pointer == before
    try:
        report = read_json(aws.s3, f"reports/{CAMPAIGN}/campaign.json")
    except ClientError:
        report = None
    assert report is None, report  # the drop's report is written last, only after a successful publication
    # AND Lambda's retry of the same notification publishes it (once)
    [retry] = ingest.handler(event, lambda_context)["results"]
    final = read_json(aws.s3, f"pointers/{CAMPAIGN}.json")
    assert retry["outcome"] == ("superseded" if step == "put_report" else "published")
    assert final["version"] == retry["version"] != before["version"]
    assert [p["version"] for p in final["previous"]].count(before["version"]) == 1
    assert read_json(aws.s3, f"reports/{CAMPAIGN}/campaign.json")["outcome"] == retry["outcome"]
    assert len(_snapshots(aws)) == 2


# =========================================================================== two ingests racing


class Interleaved:
    """Two ingest "instances" sharing S3: both read the pointer before either writes it (a barrier), then
    their pointer writes happen in the order ``turns`` names (S3 applies one conditional write at a time)."""

    def __init__(self, client: Any, turns: list[str]) -> None:
        self.client = client
        self.turns = list(turns)
        self.barrier = threading.Barrier(2, timeout=20)
        self.cond = threading.Condition()
        self.first_read: set[str] = set()
        self.swaps: list[tuple[str, str, bool]] = []  # (instance, version, won)
        self.put_lock = threading.Lock()

    def view(self, name: str) -> Any:
        outer = self

        class View:
            def get_object(self, **kwargs: Any) -> Any:
                response = outer.client.get_object(**kwargs)
                if kwargs["Key"].startswith("pointers/") and name not in outer.first_read:
                    outer.first_read.add(name)
                    outer.barrier.wait()
                return response

            def put_object(self, **kwargs: Any) -> Any:
                if not kwargs["Key"].startswith("pointers/"):
                    return outer.client.put_object(**kwargs)
                with outer.cond:
                    assert outer.cond.wait_for(lambda: not outer.turns or outer.turns[0] == name, timeout=20)
                    try:
                        with outer.put_lock:
                            response = outer.client.put_object(**kwargs)
                        outer.swaps.append((name, json.loads(kwargs["Body"])["version"], True))
                        return response
                    except ClientError:
                        outer.swaps.append((name, json.loads(kwargs["Body"])["version"], False))
                        raise
                    finally:
                        if outer.turns and outer.turns[0] == name:
                            outer.turns.pop(0)
                        outer.cond.notify_all()

            def __getattr__(self, attr: str) -> Any:
                return getattr(outer.client, attr)

        return View()


def _feed_drop(key: str, minute: int) -> Any:
    from dco.ingest import drop_from_record

    event = record_of(load_event("ingest", "feed_drop"), key=key,
                      event_time=f"2026-01-01T00:{minute:02d}:00.000Z", sequencer=f"0065A1B2C3D4E5F7{minute:02X}")
    return drop_from_record(event["Records"][0])


@pytest.mark.parametrize(
    ("drops", "turns"),
    [
        (("older", "newer"), ["older", "newer"]),  # the older one swaps first, the newer one must win after
        (("older", "newer"), ["newer", "older"]),  # the newer one swaps first, the older one must not undo it
        (("newer", "newer2"), ["newer", "newer2"]),  # the same drop delivered twice, concurrently
    ],
)
def test_two_ingests_racing_one_swap_per_version_newer_stays_live(aws, settings, drops, turns) -> None:
    from dco.aws.store import S3Store
    from dco.ingest import process

    lines = (EXAMPLE / "feed.tsv").read_bytes().splitlines(keepends=True)
    put_retail(aws.s3)
    aws.s3.put_object(Bucket=BUCKET, Key=f"feeds/{CAMPAIGN}/a.tsv", Body=b"".join(lines[:301]))
    aws.s3.put_object(Bucket=BUCKET, Key=f"feeds/{CAMPAIGN}/b.tsv", Body=b"".join(lines[:201]))
    # GIVEN a published baseline
    baseline = process(_feed_drop(f"feeds/{CAMPAIGN}/products.tsv", 1), S3Store(BUCKET, aws.s3), now=1)
    assert baseline.outcome == "published"
    made = {"older": _feed_drop(f"feeds/{CAMPAIGN}/a.tsv", 5), "newer": _feed_drop(f"feeds/{CAMPAIGN}/b.tsv", 9),
            "newer2": _feed_drop(f"feeds/{CAMPAIGN}/b.tsv", 9)}
    shared = Interleaved(aws.s3, turns)
    outcomes: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            outcomes[name] = process(made[name], S3Store(BUCKET, shared.view(name)), now=2)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    # WHEN both ingests run at once, both reading the same pointer before either writes
    threads = [threading.Thread(target=run, args=(name,)) for name in drops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    # THEN exactly one pointer swap won per version, the loser re-read, and the newer snapshot is live
    won = [version for _, version, ok in shared.swaps if ok]
    assert len(won) == len(set(won)), shared.swaps
    assert any(not ok for _, _, ok in shared.swaps), "the second writer lost its first conditional write"
    newer = outcomes[drops[1]].report["version"]
    pointer = read_json(aws.s3, f"pointers/{CAMPAIGN}.json")
    assert pointer["version"] == newer and pointer["sequence"] == made[drops[1]].sequence
    history = [p["version"] for p in pointer["previous"]]
    assert len(history) == len(set(history)) and baseline.report["version"] in history
    assert sorted(o.outcome for o in outcomes.values()) == (
        ["published", "published"] if turns == ["older", "newer"] else ["published", "superseded"])
