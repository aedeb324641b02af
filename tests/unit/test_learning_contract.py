"""The stats contract (dco.learning.contract): which counters an event increments, how context values are escaped
into keys and parsed back, the integer weights of the time-discounted sums, and the pruning of their epochs."""

from __future__ import annotations

import math

import pytest
from dco.learning.contract import (
    DECAY_FIELDS,
    DECAY_SUFFIX,
    EPOCH_S,
    KEEP_EPOCHS,
    MAX_VALUE_LENGTH,
    RECENT_HALF_LIFE_S,
    WEIGHT_SCALE,
    context_key,
    counter_keys,
    decay_attribute,
    decay_factor,
    decay_field,
    decay_stamp,
    escape_value,
    parse_context_key,
    prune_epochs,
    split_decay,
    unescape_value,
)
from dco.stats import merge_max
from hypothesis import given
from hypothesis import strategies as st

HOUR, DAY, WEEK = 3600, 86_400, 7 * 86_400
H = RECENT_HALF_LIFE_S
SAFE = set("abcdefghijklmnopqrstuvwxyz0123456789-_")
HOSTILE = ["@", "=", ".", "|", "#", "%", "%41", "a%2Eb", "a.b@c", "x=y", "cr|h1.i2", "pnw#d2551", "@region=pnw",
           "100%", "Zürich", "東京", "🙂", "PNW", "new york", "a+b", "-_", "ça@va=.|#%"]


# ------------------------------------------------------------------------------------------------ counter keys


def test_a_steered_assembled_decision_counts_in_its_sorted_escaped_context() -> None:
    # GIVEN a steered decision of an assembled creative, its context given in no particular order
    keys = counter_keys(arm="cr|h1.i2", creative="cr", variants=["headline=h1", "image=i2"],
                        context={"region": "us.ca", "device": "mobile", "context.weather": "rain@noon"})
    # THEN it counts per arm, per creative, in the optimized split and in its context: dimensions sorted by
    # name, values escaped
    assert keys == ["arm:cr|h1.i2", "arm:cr", "split:optimized",
                    "ctx:cr|h1.i2@context.weather=rain%40noon@device=mobile@region=us%2Eca"]
    # AND the same context as pairs gives the same keys
    pairs = [("region", "us.ca"), ("context.weather", "rain@noon"), ("device", "mobile")]
    assert counter_keys(arm="cr|h1.i2", creative="cr", variants=["headline=h1", "image=i2"], context=pairs) == keys


def test_holdout_traffic_never_counts_in_a_context() -> None:
    keys = counter_keys(arm="cr|h1.i2", creative="cr", variants=["headline=h1", "image=i2"],
                        context={"region": "pnw"}, holdout=True)
    assert keys == ["arm:cr|h1.i2", "arm:cr", "split:holdout"]
    assert not any(k.startswith("ctx:") for k in keys)


@pytest.mark.parametrize("holdout", [False, True])
def test_product_and_static_arms_never_count_in_a_context(holdout: bool) -> None:
    split = "split:holdout" if holdout else "split:optimized"
    # a product arm (product x creative, no variants): per arm and per creative, never in ctx:
    assert counter_keys(arm="cr-product|SKU-1", creative="cr-product", context={"region": "pnw"},
                        holdout=holdout) == ["arm:cr-product|SKU-1", "arm:cr-product", split]
    # a static creative is its own arm: counted once, never in ctx: (even with variants on its token)
    assert counter_keys(arm="cr-house", creative="cr-house", variants=["headline=h1"], context={"region": "pnw"},
                        holdout=holdout) == ["arm:cr-house", split]


def test_a_context_without_values_is_the_bare_combination() -> None:
    for context in (None, {}, {"region": ""}):
        assert counter_keys(arm="cr|h1", creative="cr", variants=["headline=h1"], context=context)[-1] == "ctx:cr|h1"


def test_values_longer_than_the_limit_once_escaped_are_left_out() -> None:
    at_limit, over = "a" * MAX_VALUE_LENGTH, "a" * (MAX_VALUE_LENGTH + 1)
    wide = "é" * (MAX_VALUE_LENGTH // 6 + 1)  # short as text, over the limit escaped (%C3%A9 per character)
    assert len(wide) < MAX_VALUE_LENGTH < len(escape_value(wide))
    key = counter_keys(arm="cr|h1", creative="cr", variants=["headline=h1"],
                       context={"region": at_limit, "device": over, "country": wide, "daypart": "night"})[-1]
    # the over-long dimensions are dropped; the others stay, sorted
    assert key == f"ctx:cr|h1@daypart=night@region={at_limit}"
    assert parse_context_key(key[len("ctx:"):]).context == (("daypart", "night"), ("region", at_limit))


# ------------------------------------------------------------------------------------------------ escaping


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_round_trip_and_cannot_change_how_a_key_parses(value: str) -> None:
    escaped = escape_value(value)
    # only safe characters and %XX escapes: no separator of a key survives
    assert set(escaped) <= SAFE | set("%0123456789ABCDEF")
    assert not set(escaped) & set("@=.|#")
    assert unescape_value(escaped) == value
    # AND a key holding it parses back to the same combination and context
    key = context_key("cr|h1.i2", [("region", value), ("device", "mobile")])
    parsed = parse_context_key(key)
    assert parsed is not None
    assert (parsed.creative, parsed.variants) == ("cr", ("h1", "i2"))
    assert parsed.context == (("device", "mobile"), ("region", escaped))
    assert unescape_value(dict(parsed.context)["region"]) == value
    # also with an epoch suffix
    assert parse_context_key(f"{key}{DECAY_SUFFIX}2551") == parsed


def test_safe_values_are_kept_as_they_are() -> None:
    for value in ("pnw", "us-ca", "snake_case", "0123"):
        assert escape_value(value) == value and unescape_value(value) == value


@given(st.text(max_size=40))
def test_escape_round_trips_any_text(value: str) -> None:
    escaped = escape_value(value)
    assert unescape_value(escaped) == value
    assert not set(escaped) & set("@=.|#")


# ------------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("key", "want"),
    [
        ("cr|h1", ("cr", ("h1",), ())),
        ("cr|h1.i2", ("cr", ("h1", "i2"), ())),
        ("cr|h1.i2@device=mobile@region=pnw", ("cr", ("h1", "i2"), (("device", "mobile"), ("region", "pnw")))),
        ("cr|h1.i2@region=us%2Eca#d2551", ("cr", ("h1", "i2"), (("region", "us%2Eca"),))),
        ("cr|h1@context.weather=rain@daypart=night@country=us",
         ("cr", ("h1",), (("context.weather", "rain"), ("daypart", "night"), ("country", "us")))),
    ],
)
def test_parse_context_key(key: str, want: tuple) -> None:
    parsed = parse_context_key(key)
    assert parsed is not None and tuple(parsed) == want
    assert (parsed.creative, parsed.variants, parsed.context) == want


@pytest.mark.parametrize(
    "key",
    [
        "cr",  # no '|'
        "cr-house",
        "|h1.i2",  # no creative
        "cr|",  # no combination
        "cr|@region=pnw",
        "cr|h1@region",  # a dimension without '='
        "cr|h1@region=",  # without a value
        "cr|h1@=pnw",  # without a name
        "cr|h1@@region=pnw",  # an empty dimension
        "cr|h1@city=x",  # not a learning dimension
        "cr|h1@Region=pnw",
        "cr|h1@context.=x",
        "cr|h1@region=pnw@geo.region=pnw",
        "#d2551",
        "",
    ],
)
def test_malformed_context_keys_parse_to_none(key: str) -> None:
    assert parse_context_key(key) is None


@pytest.mark.parametrize(
    ("key", "want"),
    [
        ("cr|a.b@region=x#d2551", ("cr|a.b@region=x", 2551)),
        ("cr|a.b#d0", ("cr|a.b", 0)),
        ("cr|a.b", ("cr|a.b", None)),
        ("cr|a.b#d", ("cr|a.b#d", None)),  # no epoch
        ("cr|a.b#dx1", ("cr|a.b#dx1", None)),
        ("cr|a.b#d١٢", ("cr|a.b#d١٢", None)),  # digits, but not ASCII ones
        ("#d12", ("#d12", None)),  # no key
        ("cr|a.b#e20001", ("cr|a.b#e20001", None)),  # a version 1 time bucket is not an epoch
    ],
)
def test_split_decay(key: str, want: tuple) -> None:
    assert split_decay(key) == want


def test_decay_attributes_round_trip_and_nothing_else_parses() -> None:
    for epoch in (0, 7, 2551, 10**11):
        for index, field in enumerate(DECAY_FIELDS):
            name = decay_attribute(epoch, index)
            assert name == f"d{epoch}{field}" and decay_field(name) == (epoch, index)
    for name in ("d2551v", "e20001c", "d", "dc", "d12", "impressions", "d-1c", "d2551cc", "seq_shard", "D1c"):
        assert decay_field(name) is None, name


# ------------------------------------------------------------------------------------------------ time decay


def _evidence(ts: int, now: int) -> float:
    """The weight an event at ``ts`` has in the discounted sums at ``now``."""
    epoch, weight = decay_stamp(ts)
    return decay_factor(epoch, now) * weight


@pytest.mark.parametrize("age", [HOUR, DAY, WEEK])
@pytest.mark.parametrize("offset", [0, 1, HOUR, H, 3 * H, 5 * H + 1234, EPOCH_S - 1])
def test_an_event_weighs_half_per_half_life_of_age(age: int, offset: int) -> None:
    # GIVEN an event at some second of an epoch (a realistic one: May 2024)
    ts = (1_714_551_000 // EPOCH_S) * EPOCH_S + offset
    epoch, weight = decay_stamp(ts)
    want = 0.5 ** (age / H)
    got = _evidence(ts, ts + age)
    # THEN its evidence an hour, a day, a week later is 0.5 ** (age / half-life), but for the rounding of its
    # integer weight (half a unit: 0.5 / WEIGHT_SCALE relative at most, well under 1e-5)
    assert abs(got - want) <= 0.5 * decay_factor(epoch, ts + age) * (1 + 1e-12)
    assert math.isclose(got, want, rel_tol=0.5 / WEIGHT_SCALE)
    # AND to 1e-6 once the weight is large enough for its rounding (events past the first half-lives of an
    # epoch), exactly where the weight is a power of two (a whole number of half-lives into the epoch)
    if weight >= 0.5e6:
        assert math.isclose(got, want, rel_tol=1e-6)
    if offset % H == 0:
        assert math.isclose(got, want, rel_tol=1e-12)


def test_weights_are_integers_under_2_to_the_24() -> None:
    base = (1_714_551_000 // EPOCH_S) * EPOCH_S
    for ts in (0, 1, base, base + 1, base + EPOCH_S // 2, base + EPOCH_S - 1, base + EPOCH_S, 2**33 - 1):
        epoch, weight = decay_stamp(ts)
        assert type(weight) is int and type(epoch) is int
        assert WEIGHT_SCALE <= weight < 2**24, ts
        assert epoch * EPOCH_S <= ts < (epoch + 1) * EPOCH_S


@given(st.integers(min_value=0, max_value=2**34))
def test_any_time_gets_an_integer_weight_under_2_to_the_24(ts: int) -> None:
    epoch, weight = decay_stamp(ts)
    assert type(weight) is int and WEIGHT_SCALE <= weight < 2**24
    assert epoch == ts // EPOCH_S


def test_epoch_boundaries() -> None:
    boundary = (1_714_551_000 // EPOCH_S + 1) * EPOCH_S
    last, first = decay_stamp(boundary - 1), decay_stamp(boundary)
    # an epoch starts at weight WEIGHT_SCALE and ends just under WEIGHT_SCALE * 2 ** (EPOCH_S / half-life)
    assert first == (boundary // EPOCH_S, WEIGHT_SCALE)
    assert last[0] == first[0] - 1
    assert last[1] == round(WEIGHT_SCALE * 2 ** ((EPOCH_S - 1) / H))
    # AND the evidence is continuous across the boundary: a second apart, weights a second of decay apart
    now = boundary + DAY
    assert math.isclose(_evidence(boundary - 1, now), 0.5 ** ((DAY + 1) / H), rel_tol=1e-6)
    assert math.isclose(_evidence(boundary, now), 0.5, rel_tol=1e-12)
    # AND an epoch's factor is 1 / WEIGHT_SCALE at its start and halves every half-life
    assert decay_factor(first[0], boundary) * WEIGHT_SCALE == 1.0
    assert math.isclose(decay_factor(first[0], boundary + H) / decay_factor(first[0], boundary), 0.5, rel_tol=1e-12)


def test_sums_across_epochs_give_the_discounted_evidence() -> None:
    # GIVEN events every 7 minutes over three days straddling an epoch boundary, summed per epoch like the fold
    boundary = (1_714_551_000 // EPOCH_S + 1) * EPOCH_S
    times = range(boundary - DAY - 5, boundary + 2 * DAY, 420)
    sums: dict[int, int] = {}
    for ts in times:
        epoch, weight = decay_stamp(ts)
        sums[epoch] = sums.get(epoch, 0) + weight
    assert len(sums) == 2 and all(type(s) is int for s in sums.values())
    # THEN at any later time the epochs' sums times their factors are the events' discounted weights
    for now in (boundary + 2 * DAY, boundary + 5 * DAY):
        got = sum(decay_factor(epoch, now) * total for epoch, total in sums.items())
        want = sum(0.5 ** ((now - ts) / H) for ts in times)
        assert math.isclose(got, want, rel_tol=0.5 / WEIGHT_SCALE)


# ------------------------------------------------------------------------------------------------ pruning


def _contexts(rows: dict[str, list]) -> dict:
    return {"version": 2, "campaign": "c", "contexts": rows}


def test_prune_keeps_the_newest_epochs_of_the_object() -> None:
    rows = {
        "cr|a.b@region=x": [9, 1, 0, 0.0],
        "cr|a.b@region=x#d10": [5, 0, 0, 0],
        "cr|a.b@region=x#d11": [6, 1, 0, 0],
        "cr|a.c#d12": [7, 0, 0, 0],
        "cr|a.c": [3, 0, 0, 0.0],
        "cr|a.c#dx": [1, 0, 0, 0.0],  # not an epoch suffix: kept
    }
    obj = _contexts(dict(rows))
    # the newest epoch of the object is 12: keeping two keeps 11 and 12, whichever key they belong to
    assert prune_epochs(obj, keep=2) is obj
    assert obj["contexts"] == {k: v for k, v in rows.items() if k != "cr|a.b@region=x#d10"}
    # a wider window keeps more; the default is KEEP_EPOCHS
    assert prune_epochs(_contexts(dict(rows)), keep=3)["contexts"] == rows
    assert prune_epochs(_contexts(dict(rows))) == prune_epochs(_contexts(dict(rows)), keep=KEEP_EPOCHS)
    # an object without epochs or without contexts is left alone
    assert prune_epochs(_contexts({"cr|a.c": [3, 0, 0, 0.0]}))["contexts"] == {"cr|a.c": [3, 0, 0, 0.0]}
    assert prune_epochs({"version": 2, "arms": {"a": [1, 0, 0, 0.0]}}) == {"version": 2, "arms": {"a": [1, 0, 0, 0.0]}}


_epoch_rows = st.dictionaries(
    st.builds(lambda k, e: f"cr|h{k}@region=x{DECAY_SUFFIX}{e}", st.integers(0, 2), st.integers(100, 106)),
    st.lists(st.integers(0, 50), min_size=4, max_size=4).map(lambda r: [*r[:3], 0]),
    max_size=8,
)
_objects = st.builds(
    lambda rows, plain: _contexts({**rows, **{f"cr|h{k}@region=x": [k + 1, 0, 0, 0.0] for k in plain}}),
    _epoch_rows, st.sets(st.integers(0, 2)),
)


def _publish(a: dict, b: dict) -> dict:
    """What every publication does: merge by maximum, then prune."""
    return prune_epochs(merge_max(a, b))


@given(_objects)
def test_prune_is_idempotent(a: dict) -> None:
    once = prune_epochs(merge_max(a, a))
    assert prune_epochs(merge_max(once, once)) == once


@given(_objects, _objects, _objects)
def test_pruning_after_every_merge_is_order_free(a: dict, b: dict, c: dict) -> None:
    # whatever the order and grouping of publications, pruning after each merge gives the same rows as one
    # merge of everything pruned once
    want = prune_epochs(merge_max(merge_max(a, b), c))["contexts"]
    assert _publish(_publish(a, b), c)["contexts"] == want
    assert _publish(a, _publish(b, c))["contexts"] == want
    assert _publish(_publish(c, a), b)["contexts"] == want
    assert _publish(_publish(_publish(b, b), a), _publish(c, a))["contexts"] == want
