"""dco.fold.aggregate, tuned for speed (decisions resolved once, counts from step lists), against its plain
definition.

Every counter of :func:`dco.learning.contract.counter_keys` of every record gets that record's step
``(sequence key, sequence, delta, stamp)``, in stream order, where ``stamp`` is
:func:`dco.learning.contract.decay_stamp` of the event's time (None without one); its sums are the sums of the
steps' deltas; counters appear in the order they are first met (what CounterStore.apply walks). A ``ctx:`` counter
also sums, per epoch, each timed step's weight into the field of its kind (impressions, clicks, conversions):
its discounted sums, which :meth:`CounterFold.after` splits at any watermark like the totals.
"""

from __future__ import annotations

import dataclasses
import random
from decimal import Decimal

import dco.fold as fold_module
from dco.fold import CounterFold, Delta, EventRecord, Past, aggregate, decision_segment, parse_event
from dco.learning.contract import DECAY_SUFFIX, EPOCH_S, counter_keys, decay_stamp

BOUNDARY = 2551 * EPOCH_S  # the first second of epoch 2551
FIELD = {"imp": 0, "click": 1, "conv": 2}

Reference = dict[tuple[str, str, str], tuple[list, list, dict[int, list[int]]]]


def _reference(records: list[EventRecord]) -> Reference:
    """Per counter, one record at a time: its steps, sums and discounted sums per epoch."""
    out: Reference = {}
    for r in records:
        delta = r.delta()
        stamp = None if r.ts is None else decay_stamp(r.ts)
        for key in r.counter_keys():
            steps, sums, decayed = out.setdefault((r.shard, r.campaign, key), ([], [0, 0, 0, Decimal(0)], {}))
            steps.append((r.sequence_key, r.sequence, delta, stamp))
            sums[FIELD[r.kind]] += 1
            sums[3] += delta.value
            if key.startswith("ctx:") and stamp is not None:
                epoch, weight = stamp
                decayed.setdefault(epoch, [0, 0, 0])[FIELD[r.kind]] += weight
    return out


def _past(steps: list, watermark: str, discounted: bool) -> Past | None:
    """The plain :meth:`CounterFold.after`: the steps past ``watermark`` summed, their weights per epoch."""
    past = [step for step in steps if step[0] > watermark]
    if not past:
        return None
    decayed: dict[int, Delta] = {}
    for _, _, delta, stamp in past:
        if discounted and stamp is not None:
            epoch, weight = stamp
            part = Delta(delta.impressions * weight, delta.clicks * weight, delta.conversions * weight)
            decayed[epoch] = decayed.get(epoch, Delta()) + part
    return Past(sum((d for _, _, d, _ in past), start=Delta()), decayed, past[-1][0], past[0][1])


def _assert_plain(records: list[EventRecord]) -> None:
    """``aggregate(records)`` is exactly the plain definition: same counters in first-met order, same sums and
    discounted sums, first and last sequence keys (read before the steps), steps, ``after()`` of watermarks before,
    inside and past the batch, and the batch's deltas."""
    batch = aggregate(records)
    expected = _reference(records)
    assert list(batch.counters) == list(expected)
    deltas: dict[tuple[str, str], Delta] = {}
    for ident, (steps, sums, decayed) in expected.items():
        fold: CounterFold = batch.counters[ident]
        discounted = ident[2].startswith("ctx:")
        assert fold.discounted == discounted
        assert fold.sums == sums
        assert fold.decay_sums == (decayed if discounted else None)
        assert (fold.first, fold.last) == (steps[0][0], steps[-1][0])
        assert fold.steps == steps
        for watermark in ("", steps[0][0], steps[len(steps) // 3][0], steps[len(steps) // 2][0], steps[-1][0]):
            assert fold.after(watermark) == _past(steps, watermark, discounted)
        key = ident[1:]
        deltas[key] = deltas.get(key, Delta()) + Delta(*sums)
        for epoch, part in decayed.items():
            key = (ident[1], f"{ident[2]}{DECAY_SUFFIX}{epoch}")
            deltas[key] = deltas.get(key, Delta()) + Delta(*part)
    assert batch.deltas() == deltas
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
            ts=rng.choice([None, BOUNDARY + rng.randint(-2 * 86400, 2 * 86400)]),
        ))
    return out


def test_aggregate_by_parts_equals_per_record_counter_keys() -> None:
    for seed in range(5):
        # GIVEN random records over two shards, campaigns, holdout, context, variants and two epochs, some
        # without a time
        records = _records(seed, 400)
        assert {decay_stamp(r.ts)[0] for r in records if r.ts is not None} == {2550, 2551}
        # WHEN they are aggregated, THEN every counter has exactly the steps, sums and discounted sums of the
        # plain definition
        _assert_plain(records)


def test_aggregate_by_parts_handles_unhashable_and_repeated_parts() -> None:
    # GIVEN hand-built records: list variants (not memoizable), a repeated variant, and records of one decision
    # on both sides of an epoch boundary (same counters, two epochs of discounted sums)
    records = [
        EventRecord(campaign="c", kind="imp", arm="cr|1", creative="cr", variants=["headline=h1"],  # type: ignore[arg-type]
                    sequence="1", shard="s", ts=BOUNDARY - 2),
        EventRecord(campaign="c", kind="click", arm="cr|1", creative="cr", variants=("headline=h1", "headline=h1"),
                    sequence="2", shard="s", ts=BOUNDARY - 2),
        EventRecord(campaign="c", kind="conv", arm="cr|1", creative="cr", variants=("headline=h1",),
                    value=Decimal("1.5"), sequence="3", shard="s", ts=BOUNDARY - 1),
        EventRecord(campaign="c", kind="imp", arm="cr|1", creative="cr", variants=("headline=h1",),
                    sequence="4", shard="s", ts=BOUNDARY),
    ]
    # WHEN they are aggregated, THEN the counters are exactly those of the plain definition
    _assert_plain(records)
    assert aggregate(records).counters[("s", "c", "ctx:cr|1")].decay_sums.keys() == {2550, 2551}


def test_decision_segment_is_counter_keys() -> None:
    from dco.fold import clear_key_memo

    rng = random.Random(7)
    clear_key_memo()
    for _ in range(300):
        # GIVEN a decision with any context order (hand-built records may not sort it) and holdout
        record = _records(rng.randint(0, 10**6), 1)[0]
        context = list(record.context)
        rng.shuffle(context)
        want = counter_keys(arm=record.arm, creative=record.creative, variants=record.variants,
                            context=dict(context), holdout=record.holdout)
        # WHEN its counter keys come from the memoized segment (twice: built, then remembered)
        first = decision_segment(record.arm, record.creative, record.variants, tuple(context), record.holdout)
        again = decision_segment(record.arm, record.creative, record.variants, tuple(context), record.holdout)
        # THEN they are exactly contract.counter_keys, same order, and only the ctx: key keeps discounted sums
        assert again is first
        assert list(first.keys) == want
        assert first.discounted == tuple(key.startswith("ctx:") for key in want)
        assert sum(first.discounted) == (1 if record.variants and not record.holdout and record.arm != record.creative
                                         else 0)


def test_aggregate_stays_exact_when_the_key_memo_overflows_mid_batch(monkeypatch) -> None:
    # GIVEN a key memo of 8 entries (emptied whenever full) and a batch with far more distinct decisions
    monkeypatch.setattr(fold_module, "KEY_MEMO_SIZE", 8)
    fold_module.clear_key_memo()
    records = _records(11, 500)
    # WHEN the batch is aggregated (twice, the second time with whatever the memo kept)
    for _ in range(2):
        # THEN the result is still exactly the plain definition
        _assert_plain(records)
    assert len(fold_module._decision_segments) <= 8


def test_hand_built_records_with_dict_or_unsorted_context_fold_like_parsed_ones() -> None:
    # GIVEN the same event parsed (sorted context, sequence key filled in), hand-built with a dict context,
    # and hand-built with its context pairs unsorted
    parsed = parse_event({"campaign": "c", "kind": "imp", "arm": "cr|1", "creative": "cr",
                          "variants": ["headline=h1"], "context": {"region": "pnw", "device": "mobile"},
                          "ts": BOUNDARY + 5}, sequence="5", shard="s")
    as_dict = dataclasses.replace(parsed, context={"region": "pnw", "device": "mobile"})  # type: ignore[arg-type]
    unsorted = dataclasses.replace(parsed, context=(("region", "pnw"), ("device", "mobile")))
    # THEN the replaced records recompute their sequence key, and each folds into the same counters and sums
    assert parsed.seq_key == as_dict.sequence_key == "5".zfill(40)
    batches = [aggregate([r]) for r in (parsed, as_dict, unsorted)]
    assert [list(b.counters) for b in batches] == [list(batches[0].counters)] * 3
    assert [k for _, _, k in batches[0].counters] == parsed.counter_keys()
    ctx = "ctx:cr|1@device=mobile@region=pnw"
    assert [b.deltas() for b in batches] == [batches[0].deltas()] * 3
    assert {k for _, k in batches[0].deltas()} == {*parsed.counter_keys(), f"{ctx}#d2551"}
    assert batches[0].counters[("s", "c", ctx)].decayed == {2551: Delta(decay_stamp(BOUNDARY + 5)[1])}


def test_event_times_in_order_flapping_or_at_a_boundary_match_the_plain_definition() -> None:
    rng = random.Random(5)
    base = _records(21, 600)
    # GIVEN event times in stream order over two epochs with a few untimed events, the same events with times
    # flapping between two epochs, all at one time (one stamp for the batch), and one change of epoch mid-batch
    times = sorted(rng.randint(BOUNDARY - 3 * 86400, BOUNDARY + 3 * 86400) for _ in base)
    batches = {
        "ordered": [dataclasses.replace(r, ts=None if rng.random() < 0.05 else t)
                    for r, t in zip(base, times, strict=True)],
        "flapping": [dataclasses.replace(r, ts=rng.choice([BOUNDARY - 7, BOUNDARY + 7])) for r in base],
        "one time": [dataclasses.replace(r, ts=BOUNDARY + 60) for r in base],
        "boundary": [dataclasses.replace(r, ts=BOUNDARY - 300 + i) for i, r in enumerate(base)],
        "untimed": [dataclasses.replace(r, ts=None) for r in base],
    }
    for name, records in batches.items():
        # WHEN aggregated, THEN every counter's discounted sums per epoch are exactly the plain definition's
        _assert_plain(records)
        epochs = {e for f in aggregate(records).counters.values() for e in (f.decay_sums or {})}
        assert epochs == {"one time": {2551}, "untimed": set()}.get(name, {2550, 2551}), name
