"""dco.fold.aggregate, tuned for speed (per-scope str-keyed lookups), against its plain definition.

Every counter of :func:`dco.learning.counter_keys` of every record gets that record's step, in stream order,
the sums of their deltas, and counters appear in the order they are first met (what CounterStore.apply walks);
a time-bucketed key ``<key>#e<bucket>`` is not a counter of its own but bucket ``<bucket>`` of counter ``<key>``,
and a device cell (``learning.cell_host``) is not a counter either: its steps and sums are kept in its host counter
(``cells``, ``cell_sums``), in no particular order.
"""

from __future__ import annotations

import random
from decimal import Decimal

import dco.fold as fold_module
from dco.fold import CounterFold, EventRecord, aggregate
from dco.learning import BUCKET_SUFFIX, cell_host

Reference = dict[tuple[str, str, str], tuple[list, list, dict[int, list], set]]


def _reference(records: list[EventRecord]) -> Reference:
    """Per counter: its steps, sums, sums per time bucket, and the steps that went to a time bucket."""
    out: Reference = {}
    for r in records:
        delta = r.delta()
        bucket = None if r.ts is None else r.ts // fold_module._BUCKET_S
        step = (r.sequence_key, r.sequence, delta, bucket)
        field = {"imp": 0, "click": 1, "conv": 2}[r.kind]
        for key in r.counter_keys():
            base, sep, tail = key.rpartition(BUCKET_SUFFIX)
            if sep and tail.isdigit():  # bucket ``tail`` of counter ``base``, which this record also increments
                _, _, buckets, timed = out[(r.shard, r.campaign, base)]
                assert int(tail) == bucket
                sums = buckets.setdefault(bucket, [0, 0, 0, Decimal(0)])
                timed.add(step[0])
            else:
                steps, sums, _, _ = out.setdefault((r.shard, r.campaign, key), ([], [0, 0, 0, Decimal(0)], {}, set()))
                steps.append(step)
            sums[field] += 1
            sums[3] += delta.value
    return out


def _assert_plain(records: list[EventRecord]) -> None:
    """``aggregate(records)`` is exactly the plain definition: same counters in first-met order, same sums and
    per-bucket sums, first and last sequence keys (read before the steps), steps, and ``after()`` of a mid-batch
    watermark."""
    batch = aggregate(records)
    expected = _reference(records)
    assert list(batch.counters) == [ident for ident in expected if cell_host(ident[2]) is None]
    for ident, (steps, sums, buckets, timed) in expected.items():
        found = cell_host(ident[2])
        if found is None:
            fold: CounterFold = batch.counters[ident]
            cells = {k[2][len(fold.key):]: v for k, v in expected.items()
                     if k[:2] == ident[:2] and (cell_host(k[2]) or ("",))[0] == fold.key}
            assert set(fold.cells or {}) == set(cells)
        else:  # a device cell: steps (in no particular order) and sums in its host's item
            host = batch.counters[(*ident[:2], found[0])]
            assert sorted(host.cells[found[1]]) == steps  # type: ignore[index]
            assert host.cell_sums[found[1]] == sums  # type: ignore[index]
            assert not buckets
            continue
        assert fold.sums == sums
        assert (fold.bucket_sums or {}) == buckets
        assert (fold.first, fold.last) == (steps[0][0], steps[-1][0])
        assert fold.steps == steps
        middle = steps[len(steps) // 2][0]
        past = [step for step in steps if step[0] > middle]
        want_buckets: dict[int, fold_module.Delta] = {}
        for key, _, delta, bucket in past:
            if key in timed:
                want_buckets[bucket] = want_buckets.get(bucket, fold_module.Delta()) + delta
        want_cells = {}
        for suffix, (cell_steps, *_) in cells.items():
            part = [d for k, _, d, _ in cell_steps if k > middle]
            if part:
                want_cells[suffix] = sum(part, start=fold_module.Delta())
        assert fold.after(middle) == (
            (sum((d for _, _, d, _ in past), start=fold_module.Delta()), want_buckets, past[-1][0], past[0][1],
             want_cells)
            if past else None)
    assert batch.events == len(records)
    assert batch.created_at == max(r.created_at for r in records)


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
        # WHEN they are aggregated, THEN every counter has exactly the steps and sums of the plain definition
        _assert_plain(records)


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
    # WHEN they are aggregated, THEN the counters are exactly those of the plain definition
    _assert_plain(records)


def test_decision_segments_chain_to_counter_keys() -> None:

    from dco.fold import clear_key_memo, decision_segments
    from dco.learning import counter_keys

    rng = random.Random(7)
    clear_key_memo()
    for _ in range(300):
        # GIVEN a decision with any context order (hand-built records may not sort it), holdout and bucket
        record = _records(rng.randint(0, 10**6), 1)[0]
        context = list(record.context)
        rng.shuffle(context)
        ts = record.ts if record.ts is not None else 86400 * 5
        # WHEN its counter keys come from the memoized segments (twice: built, then remembered)
        for _ in range(2):
            segments = decision_segments(record.arm, record.creative, record.variants, tuple(context),
                                         record.holdout)
            # THEN chained, each key followed by its device cells, they are exactly learning.counter_keys without
            # a time, same order
            keys = [k for s in segments for key in s.keys for k in (key, *(h + x for h, x in s.cells if h == key))]
            assert keys == counter_keys(
                arm=record.arm, creative=record.creative, variants=record.variants, context=dict(context),
                holdout=record.holdout)
            # AND with a time, counter_keys follows each bucketed key (only those) by its #e<bucket> copy
            timed = []
            for segment in segments:
                for key, bucketed in zip(segment.keys, segment.bucketed, strict=True):
                    timed += [key, f"{key}#e{ts // 86400}"] if bucketed else [key]
                    timed += [host + suffix for host, suffix in segment.cells if host == key]
                assert all(cell_host(host + suffix) == (host, suffix) for host, suffix in segment.cells)
            assert timed == counter_keys(
                arm=record.arm, creative=record.creative, variants=record.variants, context=dict(context),
                holdout=record.holdout, now_s=ts)


def test_aggregate_stays_exact_when_the_key_memo_overflows_mid_batch(monkeypatch) -> None:
    import dco.fold as fold

    # GIVEN a key memo of 8 entries (emptied whenever full) and a batch with far more distinct decisions
    monkeypatch.setattr(fold, "KEY_MEMO_SIZE", 8)
    fold.clear_key_memo()
    records = _records(11, 500)
    # WHEN the batch is aggregated (twice, the second time with whatever the memo kept)
    for _ in range(2):
        # THEN the result is still exactly the plain definition
        _assert_plain(records)
    assert len(fold._decision_segments) <= 8 and len(fold._variant_segments) <= 8


def test_hand_built_records_with_dict_or_unsorted_context_fold_like_parsed_ones() -> None:
    import dataclasses

    from dco.fold import parse_event

    # GIVEN the same event parsed (sorted context, sequence key filled in), hand-built with a dict context,
    # and hand-built with its context pairs unsorted
    parsed = parse_event({"campaign": "c", "kind": "imp", "arm": "cr|1", "creative": "cr",
                          "variants": ["headline=h1"], "context": {"region": "pnw", "device": "mobile"},
                          "ts": 86400}, sequence="5", shard="s")
    as_dict = dataclasses.replace(parsed, context={"region": "pnw", "device": "mobile"})  # type: ignore[arg-type]
    unsorted = dataclasses.replace(parsed, context=(("region", "pnw"), ("device", "mobile")))
    # THEN the replaced records recompute their sequence key, and each folds into the same counters
    assert parsed.seq_key == as_dict.sequence_key == "5".zfill(40)
    keys = [list(aggregate([r]).counters) for r in (parsed, as_dict, unsorted)]
    assert sorted(keys[0]) == sorted(keys[1]) == sorted(keys[2])
    assert [k for _, _, k in keys[0]] == [k for k in parsed.counter_keys() if "#e" not in k and not cell_host(k)]
    assert set(aggregate([parsed]).counters[("s", "c", "arm:cr|1@region=pnw")].cells or ()) == {"@device=mobile"}
    assert {k for r in (parsed, as_dict, unsorted) for (_, k) in aggregate([r]).deltas()} == set(parsed.counter_keys())


def test_time_buckets_in_runs_or_step_by_step_match_the_plain_definition(monkeypatch) -> None:
    import dataclasses

    import dco.fold as fold

    rng = random.Random(5)
    base = _records(21, 600)
    # GIVEN event times in stream order over four days with a few untimed events (runs: one bucket change per
    # midnight), and the same events with times flapping between the buckets
    times = sorted(rng.randint(86400 * 3, 86400 * 7) for _ in base)
    ordered = [dataclasses.replace(r, ts=None if rng.random() < 0.05 else t) for r, t in zip(base, times, strict=True)]
    flapping = [dataclasses.replace(r, ts=rng.choice([86400 * 3 + 7, 86400 * 4 + 7])) for r in base]
    midnight = [dataclasses.replace(r, ts=86400 * 4 - 300 + i) for i, r in enumerate(base)]  # one change of day
    for max_runs in (0, 1, 3, 16, 10**6):
        # WHEN aggregated with any budget of runs (past it, the steps are summed one by one)
        monkeypatch.setattr(fold, "_MAX_RUNS", max_runs)
        # THEN every counter's sums per bucket are exactly the plain definition's
        _assert_plain(ordered)
        _assert_plain(flapping)
        _assert_plain(midnight)
