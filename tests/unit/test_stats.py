"""Arm statistics: validation, fast gathers, merge by maximum."""

from __future__ import annotations

import pytest
from dco.stats import ArmStats, StatsTable, merge_max, validate_stats
from hypothesis import given
from hypothesis import strategies as st

OBJ = {
    "version": 1,
    "campaign": "c1",
    "arms": {"a": [100, 5, 1, 12.5], "b": [50, 2, 0, 0.0], "c": [3, 4, 0, 0]},
    "components": {"headline:1": [150, 7, 1, 12.5]},
    "updated_at": 1_700_000_000,
}


def _floats(xs: object) -> list[float]:
    return [float(x) for x in xs]  # type: ignore[attr-defined]


def test_counts_in_order_with_unknown_arms_as_zeros() -> None:
    table = StatsTable.from_object(OBJ)
    succ, trials = table.counts(["b", "nope", "a"], "click")
    assert _floats(succ) == [2.0, 0.0, 5.0]
    assert _floats(trials) == [50.0, 0.0, 100.0]
    succ, trials = table.counts(["a", "zz"], "conversion")
    assert _floats(succ) == [1.0, 0.0]
    assert _floats(trials) == [100.0, 0.0]


def test_successes_capped_at_impressions() -> None:
    succ, trials = StatsTable.from_object(OBJ).counts(["c"])
    assert _floats(succ) == [3.0]


def test_counts_for_600_keys_and_indices_reuse() -> None:
    arms = {f"arm{i}": [i * 10, i, 0, 0.0] for i in range(600)}
    table = StatsTable.from_object({"version": 1, "campaign": "c", "arms": arms})
    keys = [f"arm{i}" for i in range(599, -1, -1)]
    succ, trials = table.counts(keys)
    assert _floats(succ) == [float(i) for i in range(599, -1, -1)]
    idx = table.indices(keys)
    s2, t2 = table.counts_at(idx, "click")
    assert _floats(s2) == _floats(succ) and _floats(t2) == _floats(trials)


def test_get_and_empty() -> None:
    table = StatsTable.from_object(OBJ)
    assert table.get("a") == ArmStats(100, 5, 1, 12.5)
    assert table.get("missing") == ArmStats()
    assert table.component("headline:1") == ArmStats(150, 7, 1, 12.5)
    assert "a" in table and len(table) == 3
    assert table.campaign == "c1" and table.updated_at == 1_700_000_000
    empty = StatsTable.empty("c1")
    assert len(empty) == 0
    assert _floats(empty.counts(["x", "y"])[1]) == [0.0, 0.0]


def test_unknown_objective_rejected() -> None:
    with pytest.raises(ValueError, match="objective"):
        StatsTable.empty().counts(["a"], "revenue")


@pytest.mark.parametrize(
    ("arms", "fragment"),
    [
        ({"bad-arm": [1, 2, 3]}, "bad-arm"),
        ({"bad-arm": [1, -2, 0, 0]}, "bad-arm"),
        ({"bad-arm": [1, "2", 0, 0]}, "bad-arm"),
        ({"bad-arm": [1, True, 0, 0]}, "bad-arm"),
        ({"bad-arm": [1, 1.5, 0, 0]}, "bad-arm"),
        ({"bad-arm": [1, 1, 0, float("nan")]}, "bad-arm"),
        ({"bad-arm": {"impressions": 1}}, "bad-arm"),
    ],
)
def test_malformed_rows_rejected_naming_the_key(arms: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        StatsTable.from_object({"version": 1, "campaign": "c", "arms": {"ok": [1, 0, 0, 0], **arms}})
    # AND the same in a big section (checked in bulk first), in either section, wherever the row sits
    many = {f"arm-{i}": [i + 3, i % 3, i % 2, 0.5 * i] for i in range(500)}
    for section in ("arms", "components"):
        for bad_first in (True, False):
            rows = {**arms, **many} if bad_first else {**many, **arms}
            with pytest.raises(ValueError, match=f"stats {section}.*{fragment}"):
                StatsTable.from_object({"version": 1, "campaign": "c", section: rows})


def test_bulk_checked_sections_keep_every_row_as_a_copy() -> None:
    # GIVEN a big section of valid rows (lists and tuples, ints and whole floats, a huge int, fractional values)
    rows: dict = {f"k{i}": [i, i // 2, 0, i / 7] for i in range(300)}
    rows["tuple"] = (4, 1.0, 0, 2.5)
    rows["huge"] = [10**400, 0, 0, 0]  # not a float: checked row by row, still valid
    obj = {"version": 1, "campaign": "c", "arms": rows, "components": dict(rows)}
    # WHEN validated
    out = validate_stats(obj)
    # THEN every row comes back equal, as a new list (the input is never aliased)
    for section in ("arms", "components"):
        assert out[section] == {k: list(v) for k, v in rows.items()}
        assert all(out[section][k] is not rows[k] and isinstance(out[section][k], list) for k in rows)
    # AND a table over it reads the counts
    table = StatsTable.from_object({**obj, "arms": {k: v for k, v in rows.items() if k != "huge"}})
    assert table.get("k10") == ArmStats(10, 5, 0, 10 / 7) and table.get("tuple") == ArmStats(4, 1, 0, 2.5)


@pytest.mark.parametrize(
    "obj",
    [[], {"version": 2, "arms": {}}, {"version": 1, "arms": []}, {"version": 1, "updated_at": -1}],
)
def test_malformed_objects_rejected(obj: object) -> None:
    with pytest.raises(ValueError):
        StatsTable.from_object(obj)  # type: ignore[arg-type]


def test_merge_max_example() -> None:
    a = {"version": 1, "campaign": "c", "arms": {"x": [10, 1, 0, 0.0]}, "updated_at": 5}
    b = {"version": 1, "campaign": "c", "arms": {"x": [8, 2, 0, 1.0], "y": [1, 0, 0, 0.0]}, "updated_at": 7}
    assert merge_max(a, b) == {
        "version": 1,
        "campaign": "c",
        "updated_at": 7,
        "arms": {"x": [10, 2, 0, 1.0], "y": [1, 0, 0, 0.0]},
        "components": {},
    }
    with pytest.raises(ValueError, match="campaign"):
        merge_max(a, {**b, "campaign": "other"})


_count = st.integers(min_value=0, max_value=1000)
_row = st.tuples(_count, _count, _count, st.floats(min_value=0, max_value=1e6)).map(list)
_rows = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), _row, max_size=5)
_stats = st.builds(
    lambda arms, comps, ts: {
        "version": 1,
        "campaign": "c",
        "arms": arms,
        "components": comps,
        "updated_at": ts,
    },
    _rows,
    _rows,
    st.integers(min_value=0, max_value=10**10),
)


@given(_stats)
def test_merge_max_idempotent(a: dict) -> None:
    assert merge_max(a, a) == validate_stats(a)


@given(_stats, _stats)
def test_merge_max_commutative(a: dict, b: dict) -> None:
    assert merge_max(a, b) == merge_max(b, a)


@given(_stats, _stats, _stats)
def test_merge_max_associative(a: dict, b: dict, c: dict) -> None:
    assert merge_max(merge_max(a, b), c) == merge_max(a, merge_max(b, c))


def test_precomputed_bounds_give_the_same_choice() -> None:
    from dco.bandit import thompson
    from dco.rng import make_rng

    arms = {f"arm{i}": [1000 + i, 20 + (i % 7), 0, 0.0] for i in range(50)}
    table = StatsTable.from_object({"version": 1, "campaign": "c", "arms": arms})
    idx = table.indices([f"arm{i}" for i in range(0, 50, 3)] + ["unseen"])
    succ, trials = table.counts_at(idx)
    for seed in range(20):
        plain = thompson(succ, trials, make_rng(seed))
        cached = thompson(succ, trials, make_rng(seed), bounds=table.bounds_at(idx))
        assert plain == cached


def test_trusted_table_reads_like_a_validated_one() -> None:
    # GIVEN an object this process built itself, and the same object validated
    checked, trusted = StatsTable.from_object(OBJ), StatsTable.from_trusted(OBJ)
    keys = ["c", "a", "nope", "b"]
    # THEN every read is the same (successes capped at impressions, unknown arms as zeros)
    for objective in ("click", "conversion"):
        assert [_floats(x) for x in trusted.counts(keys, objective)] == [_floats(x) for x in checked.counts(keys, objective)]
    assert trusted.get("a") == checked.get("a") and trusted.component("headline:1") == checked.component("headline:1")
    assert (trusted.campaign, trusted.updated_at, len(trusted)) == (checked.campaign, checked.updated_at, 3)
    assert len(StatsTable.from_trusted({"version": 1, "campaign": "c", "arms": {}})) == 0


def test_only_the_trusted_constructor_skips_validation() -> None:
    bad = {"version": 1, "campaign": "c", "arms": {"a": [1, -1, 0, 0.0]}}
    with pytest.raises(ValueError, match="clicks"):
        StatsTable.from_object(bad)
    with pytest.raises(ValueError, match="clicks"):
        StatsTable(bad)
