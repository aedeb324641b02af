"""dco.fold.aggregate, tuned for speed (per-scope str-keyed lookups), against its plain definition.

Every counter of :func:`dco.learning.counter_keys` of every record gets that record's step, in stream order,
the sums of their deltas, and counters appear in the order they are first met (what CounterStore.apply walks).
"""

from __future__ import annotations

import random
from decimal import Decimal

from dco.fold import CounterFold, EventRecord, aggregate


def _reference(records: list[EventRecord]) -> dict[tuple[str, str, str], tuple[list, list]]:
    out: dict[tuple[str, str, str], tuple[list, list]] = {}
    for r in records:
        delta = r.delta()
        step = (r.sequence_key, r.sequence, delta)
        field = {"imp": 0, "click": 1, "conv": 2}[r.kind]
        for key in r.counter_keys():
            steps, sums = out.setdefault((r.shard, r.campaign, key), ([], [0, 0, 0, Decimal(0)]))
            steps.append(step)
            sums[field] += 1
            sums[3] += delta.value
    return out


def _records(seed: int, n: int) -> list[EventRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        creative = rng.choice(["cr-a", "cr-b", "cr-c"])
        variants = tuple(f"{slot}={slot[0]}{rng.randint(1, 3)}" for slot in ("headline", "image")
                         if creative != "cr-c" and rng.random() < 0.8)
        arm = creative if not variants and rng.random() < 0.5 else f"{creative}|{rng.randint(1, 4)}"
        context = tuple(sorted({"region": rng.choice(["pnw", "ne"]), "device": rng.choice(["mobile", "desktop"])}
                               .items())[: rng.randint(0, 2)])
        kind = rng.choice(["imp", "imp", "imp", "click", "conv"])
        out.append(EventRecord(
            campaign=rng.choice(["c1", "c2"]), kind=kind, arm=arm, creative=creative, variants=variants,
            context=context, holdout=rng.random() < 0.2,
            value=Decimal(rng.randint(0, 999)) / 100 if kind == "conv" else Decimal(0),
            sequence=str(1000 + i), shard=rng.choice(["s1", "s2"]), created_at=100 + i,
            ts=rng.choice([None, 86400 * 3 + rng.randint(0, 86400 * 2)]),
        ))
    return out


def test_aggregate_by_parts_equals_per_record_counter_keys() -> None:
    for seed in range(5):
        # GIVEN random records over two shards, campaigns, holdout, context, variants and time buckets
        records = _records(seed, 400)
        # WHEN they are aggregated
        batch = aggregate(records)
        # THEN every counter has exactly the steps and sums of the plain definition, in stream order
        expected = _reference(records)
        assert list(batch.counters) == list(expected)
        for ident, (steps, sums) in expected.items():
            fold: CounterFold = batch.counters[ident]
            assert fold.steps == steps
            assert fold.sums == sums
        assert batch.events == len(records)
        assert batch.created_at == max(r.created_at for r in records)


def test_aggregate_by_parts_handles_unhashable_and_repeated_parts() -> None:
    # GIVEN hand-built records: list variants (not memoizable), a repeated variant (a key met twice per record),
    # and records of one decision in two time buckets (same decision, different bucketed keys)
    records = [
        EventRecord(campaign="c", kind="imp", arm="cr|1", creative="cr", variants=["headline=h1"],  # type: ignore[arg-type]
                    sequence="1", shard="s", ts=86400),
        EventRecord(campaign="c", kind="click", arm="cr|1", creative="cr", variants=("headline=h1", "headline=h1"),
                    sequence="2", shard="s", ts=86400),
        EventRecord(campaign="c", kind="conv", arm="cr|1", creative="cr", variants=("headline=h1",),
                    value=Decimal("1.5"), sequence="3", shard="s", ts=86400 * 2 - 1),
        EventRecord(campaign="c", kind="imp", arm="cr|1", creative="cr", variants=("headline=h1",),
                    sequence="4", shard="s", ts=86400 * 2),
    ]
    # WHEN they are aggregated
    batch = aggregate(records)
    # THEN the counters are exactly those of the plain definition
    expected = _reference(records)
    assert list(batch.counters) == list(expected)
    for ident, (steps, sums) in expected.items():
        assert batch.counters[ident].steps == steps
        assert batch.counters[ident].sums == sums
