"""``dco bench fold``: fold aggregation throughput and the write count of one Lambda batch, against a naive fold.

Events are synthetic but shaped like the retail campaign's (examples/retail/campaign.yaml) as track stores them:

- 70% assembled ``cr-retail`` combinations (``cr-retail|h01.img07.c02.o01``: 12 headlines x 40 images x 6 calls
  to action x 3 offers, drawn with a skew as Thompson sampling concentrates traffic), with their 4 variants;
- 15% product cards (``cr-product|SKU-...``: the top 200 products of each region's filter);
- 10% the house ad, 5% the video spot (arm = creative);
- context ``{region, device}`` (six regions and a national share; mobile/desktop/tablet), holdout 10%;
- impressions with ~2% clicks and ~0.2% conversions (with a value), ``ts`` spread over two days (one epoch of
  discounted sums: an epoch is eight one-day half-lives, dco.learning.contract).

Counter keys per event (dco.learning.contract.counter_keys): ``arm:<arm>``, ``arm:<creative>`` (dynamic and
assembled creatives), ``split:<holdout|optimized>``, and for a steered (not holdout) assembled decision one
``ctx:<combination>@device=<d>[@region=<r>]`` counter: 4 keys for a steered assembled event, 3 for a holdout one
or a product card, 2 for the house ad and the video (about 3.45 per event). A ``ctx:`` counter also sums each
event's time-discounted weight per epoch (:func:`dco.learning.contract.decay_stamp`), written as attributes
``d<epoch>i/c/n`` of its own item in the same UpdateItem as its totals: no counter or write of its own.

Figures:

- ``events_per_s``: :func:`dco.fold.aggregate` over ``N`` parsed records (median of repetitions, wall clock;
  the fold's counter-key memo is emptied before each repetition, so nothing is remembered from the last one);
  ``events_per_cpu_s`` the same in process CPU time (what other processes' load does not inflate);
  ``batched_events_per_s`` the same records in batches of 1000 (as Lambda delivers them; the memo starts empty
  and fills over the batches, as in a warm fold function);
  ``calibration_mops_per_cpu_s`` a fixed pure-Python loop's speed in the same run, to compare machines. The baseline
  ``naive_events_per_s`` is a per-event loop that, for each event and each of its counters, builds the
  UpdateItem it would send (what a fold without per-batch aggregation does on the CPU side; its requests carry
  the all-time counts only, not a ``ctx:`` counter's discounted sums).
- ``writes`` / ``distinct_counters``: one batch of the Lambda batch size (1000 records, infra/template.yaml's
  fold mapping) aggregated and applied with :meth:`dco.aws.counters.CounterStore.apply` against moto in-process
  (``mock_aws``; tables from infra/template.yaml as tests/functional/conftest.py builds them).
  ``naive_writes`` is one UpdateItem per event x counter for the same batch; the naive writes of the batch's
  first 100 events are sent to the same moto tables, and ``naive_apply_ms_estimated`` extrapolates their cost
  per write to the whole batch (moto in-process costs milliseconds per request, so sending all of them would
  take minutes and add nothing). Both apply figures are moto's, not DynamoDB's: the write counts are what
  carries over to AWS.
- ``writes_per_1000_events_by_batch_size``: the same ``N`` events cut into batches of 100, 1000, 5000 and
  10000 records: writes (distinct counters per batch) per 1,000 events. Bigger batches (a busy shard filling
  its batching window) share counters between more events.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import time
from decimal import Decimal
from typing import Any

from dco_local.bench import ROOT, _progress, percentile, timed

CAMPAIGN = "retail-demo"
REGIONS = ("pnw", "northeast", "southeast", "midwest", "southwest", "california")
DEVICES = (("mobile", 0.6), ("desktop", 0.3), ("tablet", 0.1))
HEADLINES = [f"h{i:02d}" for i in range(1, 13)]
IMAGES = [f"img{i:02d}" for i in range(1, 41)]
CTAS = [f"c{i:02d}" for i in range(1, 7)]
OFFERS = [f"o{i:02d}" for i in range(1, 4)]
LAMBDA_BATCH = 1000
NAIVE_SAMPLE = 100  # events of the batch whose naive writes are sent to moto (the rest is extrapolated)
START_TS = 1_714_550_400  # 2024-05-01T00:00:00Z


def _skewed(rng: random.Random, items: list[str], s: float = 1.1) -> str:
    """A Zipf-like pick: early items are served much more (what a converging bandit does)."""
    weights = [1 / (k + 1) ** s for k in range(len(items))]
    return rng.choices(items, weights)[0]


def synthetic_images(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """``n`` Events NEW_IMAGE dicts (already deserialized: str, Decimal, list, dict, bool), in stream order."""
    rng = random.Random(seed)
    head_w = [1 / (k + 1) ** 1.1 for k in range(len(HEADLINES))]
    img_w = [1 / (k + 1) ** 0.9 for k in range(len(IMAGES))]
    cta_w = [1 / (k + 1) for k in range(len(CTAS))]
    off_w = [1 / (k + 1) for k in range(len(OFFERS))]
    products = {r: [f"SKU-{rng.randrange(1, 100_001):07d}" for _ in range(200)] for r in REGIONS}
    prod_w = [1 / (k + 1) ** 0.8 for k in range(200)]
    devices = [d for d, _ in DEVICES]
    device_w = [w for _, w in DEVICES]
    out = []
    for i in range(n):
        national = rng.random() < 0.15
        region = None if national else rng.choice(REGIONS)
        context = {"device": rng.choices(devices, device_w)[0]}
        if region:
            context["region"] = region
        u = rng.random()
        variants: list[str] = []
        if u < 0.70:
            h = rng.choices(HEADLINES, head_w)[0]
            im = rng.choices(IMAGES, img_w)[0]
            c = rng.choices(CTAS, cta_w)[0]
            o = rng.choices(OFFERS, off_w)[0]
            creative, arm = "cr-retail", f"cr-retail|{h}.{im}.{c}.{o}"
            variants = [f"headline={h}", f"image={im}", f"cta={c}", f"offer={o}"]
        elif u < 0.85:
            pid = rng.choices(products[region or "pnw"], prod_w)[0]
            creative, arm = "cr-product", f"cr-product|{pid}"
        elif u < 0.95:
            creative = arm = "cr-house"
        else:
            creative = arm = "cr-video"
        k = rng.random()
        kind = "imp" if k < 0.978 else ("click" if k < 0.998 else "conv")
        image: dict[str, Any] = {
            "pk": f"{CAMPAIGN}#{kind}#{i:012d}",
            "campaign": CAMPAIGN,
            "kind": kind,
            "arm": arm,
            "creative": creative,
            "variants": variants,
            "context": context,
            "holdout": rng.random() < 0.1,
            "ts": Decimal(START_TS + (i * 172_800) // max(1, n)),
            "expires_at": Decimal(START_TS + 30 * 86400),
        }
        if kind == "conv":
            image["value"] = Decimal(f"{rng.randint(900, 25_000) / 100:.2f}")
        out.append(image)
    return out


def parse_all(images: list[dict[str, Any]], shard: str = "shardId-000001") -> list[Any]:
    from dco.fold import parse_event

    first = 10**20
    return [
        parse_event(image, sequence=str(first + i), shard=shard, created_at=START_TS + i // 1000)
        for i, image in enumerate(images)
    ]


def _naive_request(table: str, campaign: str, key: str, kind: str, value: Decimal) -> dict[str, Any]:
    field = {"imp": "impressions", "click": "clicks", "conv": "conversions"}[kind]
    return {
        "TableName": table,
        "Key": {"pk": {"S": f"{campaign}#{key}"}},
        "UpdateExpression": "ADD #f :one, #x :v",
        "ExpressionAttributeNames": {"#f": field, "#x": "value"},
        "ExpressionAttributeValues": {":one": {"N": "1"}, ":v": {"N": str(value)}},
    }


def naive_fold(records: list[Any], table: str = "counters", send: Any = None) -> int:
    """The baseline: one UpdateItem per event x counter, in arrival order. Returns the number of writes."""
    writes = 0
    for record in records:
        for key in record.counter_keys():
            request = _naive_request(table, record.campaign, key, record.kind, record.value)
            if send is not None:
                send(**request)
            writes += 1
    return writes


CALIBRATION_OPS = 1_000_000


def _calibration_loop() -> None:
    """A fixed pure-Python loop (dict get/set): its speed says how fast this CPU ran Python during the run."""
    d: dict[int, int] = {}
    for i in range(CALIBRATION_OPS):
        d[i & 1023] = d.get(i & 1023, 0) + 1


def _cpu_timed(fn: Any, repeat: int) -> list[float]:
    """Process CPU seconds of ``repeat`` calls (garbage collection paused): robust to other processes' load."""
    out = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.process_time()
            fn()
            out.append(time.process_time() - start)
        finally:
            gc.enable()
    return out


def _moto_tables() -> tuple[Any, Any, str]:
    """Start moto in-process with infra/template.yaml's tables; returns (mock, client, counters table name)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[name] = value
    import sys

    from moto import mock_aws

    sys.path.insert(0, str(ROOT / "tests" / "functional"))
    sys.path.insert(0, str(ROOT))
    from tests.functional.conftest import _create_table, template_tables

    mock = mock_aws()
    mock.start()
    from dco.aws.counters import default_client

    client = default_client("us-east-1")
    names = {}
    for logical_id, props in template_tables().items():
        name = logical_id.lower()
        _create_table(client, name, props)
        names[logical_id] = name
    return mock, client, names["CountersTable"]


def writes_by_batch_size(records: list[Any], sizes: tuple[int, ...]) -> dict[str, int]:
    """Writes per 1,000 events when ``records`` come in batches of each size (sizes above len(records) skipped):
    one write per distinct counter per batch (what CounterStore.apply sends)."""
    from dco.fold import aggregate

    return {
        str(size): round(1000 * sum(len(aggregate(records[i:i + size]).counters)
                                    for i in range(0, len(records), size)) / len(records))
        for size in sizes if size <= len(records)
    }


def bench_fold(events: int, repeat: int | None = None) -> dict[str, Any]:
    from dco.aws.counters import CounterStore
    from dco.fold import aggregate as _aggregate
    from dco.fold import clear_key_memo

    def aggregate(records: list[Any]) -> Any:
        clear_key_memo()  # every repetition starts cold: no counter keys remembered from the previous one
        return _aggregate(records)

    def aggregate_batches(batches: list[list[Any]]) -> list[Any]:
        clear_key_memo()  # cold at the first batch, warming over the run as in a warm fold function
        return [_aggregate(b) for b in batches]

    _progress(f"generating {events:,} events ...")
    images = synthetic_images(max(events, LAMBDA_BATCH))
    t0 = time.perf_counter()
    records = parse_all(images)
    parse_s = time.perf_counter() - t0
    all_records = records
    records = records[:events]
    repeat = repeat or (9 if events <= 200_000 else 5)
    _progress(f"timing aggregate ({repeat} repetitions) ...")
    ours = timed(lambda: aggregate(records), repeat)
    cpu = _cpu_timed(lambda: aggregate(records), repeat)
    batches = [records[i:i + LAMBDA_BATCH] for i in range(0, len(records), LAMBDA_BATCH)]
    per_batch = timed(lambda: aggregate_batches(batches), repeat)
    calibration = _cpu_timed(_calibration_loop, 3)
    naive_repeat = max(3, repeat // 2)
    naive = timed(lambda: naive_fold(records), naive_repeat)
    full = aggregate(records)
    # writes per 1,000 events if Lambda delivered batches of other sizes (BatchSize, or a busy shard filling
    # its batching window): each batch writes once per distinct counter
    by_batch = writes_by_batch_size(records, (100, LAMBDA_BATCH, 5000, 10000))
    ours_s = statistics.median(ours)
    naive_s = statistics.median(naive)

    _progress(f"applying one {LAMBDA_BATCH}-record batch to moto ...")
    batch_records = all_records[:LAMBDA_BATCH]
    batch = aggregate(batch_records)
    mock, client, table = _moto_tables()
    try:
        store = CounterStore(table, client)
        gc.collect()
        t0 = time.perf_counter()
        applied = store.apply(batch)
        apply_s = time.perf_counter() - t0
        store_serial = CounterStore(table, client, max_workers=1)
        # The same batch again: every counter already holds it, so each write is a conditional skip.
        t0 = time.perf_counter()
        again = store_serial.apply(batch)
        again_s = time.perf_counter() - t0
        clean = {f"{c}#{k}": d for (c, k), d in batch.deltas().items()}
        sample = next(iter(clean))
        item = client.get_item(TableName=table, Key={"pk": {"S": sample}}, ConsistentRead=True)["Item"]
        assert int(item["impressions"]["N"]) == clean[sample].impressions, (item, clean[sample])
        naive_writes = naive_fold(batch_records)
        sample = batch_records[:NAIVE_SAMPLE]
        _progress(f"naive per-event writes of the batch's first {NAIVE_SAMPLE} events against moto ...")
        t0 = time.perf_counter()
        sample_writes = naive_fold(sample, table, client.update_item)
        naive_write_s = (time.perf_counter() - t0) / sample_writes
    finally:
        mock.stop()
    keys_per_event = sum(len(r.counter_keys()) for r in batch_records) / len(batch_records)
    return {
        "events": events,
        "events_per_s": round(events / ours_s),
        "aggregate_ms": round(ours_s * 1000, 2),
        "aggregate_p99_ms": round(percentile(ours, 99) * 1000, 2),
        "events_per_cpu_s": round(events / statistics.median(cpu)),
        "batched_events_per_s": round(events / statistics.median(per_batch)),
        "calibration_mops_per_cpu_s": round(CALIBRATION_OPS / statistics.median(calibration) / 1e6, 2),
        "naive_events_per_s": round(events / naive_s),
        "ratio_vs_naive": round(naive_s / ours_s, 1),
        "parse_events_per_s": round(len(all_records) / parse_s),
        "distinct_counters_all": len(full.counters),
        "batch_events": LAMBDA_BATCH,
        "counter_keys_per_event": round(keys_per_event, 2),
        "distinct_counters": len(batch.counters),
        "writes_per_1000_events_by_batch_size": by_batch,
        "writes": applied.writes,
        "writes_equal_counters": applied.writes == len(batch.counters),
        "naive_writes": naive_writes,
        "write_ratio": round(naive_writes / max(1, applied.writes), 1),
        "apply_ms": round(apply_s * 1000, 1),
        "apply_ms_per_write": round(apply_s * 1000 / max(1, applied.writes), 3),
        "naive_ms_per_write": round(naive_write_s * 1000, 3),
        "naive_apply_ms_estimated": round(naive_write_s * naive_writes * 1000, 1),
        "redelivery_writes": again.writes,
        "redelivery_skipped": again.skipped,
        "redelivery_apply_ms": round(again_s * 1000, 1),
        "repeat": repeat,
    }
