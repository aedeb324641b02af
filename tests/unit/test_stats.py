"""Arm statistics and the learner's model (the stats object, version 2): validation, version 1 still read, fast
gathers, merge by maximum."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from dco.stats import ArmStats, StatsTable, merge_max, validate_stats
from hypothesis import given
from hypothesis import strategies as st

MIX = [0.6, 0.1, 0.1, 0.1, 0.05, 0.03, 0.02]  # prior weights over the scale grid (dco.learning.params)


def a_model(fitted_at: int = 1_700_000_000, shift: float = 0.0) -> dict[str, Any]:
    """A valid published model (dco.learning.model) of a creative with one slot (h1, h2) and one dimension
    (region: pnw): groups base:0 (1 value), main:0 (2 variants), ctx:0:0 (1 x 2)."""
    memory = {
        "intercept": -3.0 + shift,
        "groups": {
            "base:0": {"mean": [0.01], "var": [0.02], "mix": list(MIX)},
            "main:0": {"mean": [0.1 + shift, -0.1], "var": [0.01, 0.03], "mix": list(MIX)},
            "ctx:0:0": {"mean": [0.0, 0.02], "var": [0.04, 0.04], "mix": list(MIX)},
        },
    }
    return {
        "version": 1, "fitted_at": fitted_at, "impressions": 150, "variants": [["h1", "h2"]], "dims": ["region"],
        "values": [["pnw"]], "log_weights": [-0.69, -0.70],
        "memories": [{"half_life_s": 0.0, **memory}, {"half_life_s": 86_400.0, **copy.deepcopy(memory)}],
    }


OBJ: dict[str, Any] = {
    "version": 2,
    "campaign": "c1",
    "arms": {"a": [100, 5, 1, 12.5], "b": [50, 2, 0, 0.0], "c": [3, 4, 0, 0], "cr|h1": [150, 7, 1, 12.5]},
    "splits": {"holdout": [10, 1, 0, 0.0], "optimized": [150, 7, 1, 12.5]},
    "contexts": {"cr|h1@region=pnw": [150, 7, 1, 12.5], "cr|h1@region=pnw#d2460": [9_830_400, 458_752, 65_536, 0]},
    "models": {"cr": {"click": a_model()}},
    "updated_at": 1_700_000_000,
}

# A version 1 object (before the learner of docs/learning.md): per-region arm rows and components.
V1: dict[str, Any] = {
    "version": 1,
    "campaign": "c1",
    "arms": {"a": [100, 5, 1, 12.5], "cr|h1": [150, 7, 1, 12.5], "cr|h1@region=pnw": [90, 4, 1, 42.5]},
    "components": {"cr|headline=h1": [150, 7, 1, 12.5], "cr|headline=h1@region=pnw#e20001": [90, 4, 1, 42.5]},
    "splits": {"optimized": [150, 7, 1, 12.5]},
    "updated_at": 1_600_000_000,
}


def _floats(xs: object) -> list[float]:
    return [float(x) for x in xs]  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------ reads


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
    table = StatsTable.from_object({"version": 2, "campaign": "c", "arms": arms})
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
    assert "a" in table and len(table) == 4
    assert table.campaign == "c1" and table.updated_at == 1_700_000_000
    empty = StatsTable.empty("c1")
    assert len(empty) == 0 and empty.campaign == "c1"
    assert _floats(empty.counts(["x", "y"])[1]) == [0.0, 0.0]
    assert empty.context_rows() == {} and empty.model("cr", "click") is None


def test_model_and_context_rows() -> None:
    table = StatsTable.from_object(OBJ)
    # the learner's counters, absolute and discounted rows alike
    assert table.context_rows() == OBJ["contexts"]
    # the published model per creative and objective; None before the first fit
    assert table.model("cr", "click") == a_model()
    assert table.model("cr", "conversion") is None
    assert table.model("other", "click") is None


def test_unknown_objective_rejected() -> None:
    with pytest.raises(ValueError, match="objective"):
        StatsTable.empty().counts(["a"], "revenue")


# ------------------------------------------------------------------------------------------------ version 1


def test_version_1_objects_keep_their_arms_and_splits() -> None:
    # WHEN a version 1 object is read
    out = validate_stats(V1)
    # THEN it reads as version 2: its arms (without the per-region rows) and splits; its components dropped
    assert out == {
        "version": 2,
        "campaign": "c1",
        "updated_at": 1_600_000_000,
        "arms": {"a": [100, 5, 1, 12.5], "cr|h1": [150, 7, 1, 12.5]},
        "splits": {"optimized": [150, 7, 1, 12.5]},
        "contexts": {},
        "models": {},
    }
    table = StatsTable.from_object(V1)
    assert table.get("cr|h1") == ArmStats(150, 7, 1, 12.5)
    assert "cr|h1@region=pnw" not in table and len(table) == 2
    assert table.context_rows() == {} and table.model("cr", "click") is None
    # AND it merges with a version 2 object into a version 2 object
    merged = merge_max(V1, OBJ)
    assert merged["version"] == 2 and merged["contexts"] == OBJ["contexts"] and merged["models"] == OBJ["models"]
    assert merged["arms"] == OBJ["arms"]  # OBJ's arm rows are at least V1's
    assert merged["updated_at"] == 1_700_000_000


def test_version_1_keeps_checking_its_arms() -> None:
    with pytest.raises(ValueError, match=r"stats arms\['cr\|h1@region=pnw'\]"):
        validate_stats({**V1, "arms": {**V1["arms"], "cr|h1@region=pnw": [1, -1, 0, 0.0]}})


# ------------------------------------------------------------------------------------------------ validation


BAD_ROWS = [
    ({"bad-row": [1, 2, 3]}, "bad-row"),
    ({"bad-row": [1, -2, 0, 0]}, "bad-row"),
    ({"bad-row": [1, "2", 0, 0]}, "bad-row"),
    ({"bad-row": [1, True, 0, 0]}, "bad-row"),
    ({"bad-row": [1, 1.5, 0, 0]}, "bad-row"),
    ({"bad-row": [1, 1, 0, float("nan")]}, "bad-row"),
    ({"bad-row": [1, 1, 0, float("inf")]}, "bad-row"),
    ({"bad-row": {"impressions": 1}}, "bad-row"),
    ({"cr|h1@region=x#d7": [1, -1, 0, 0]}, re.escape("cr|h1@region=x#d7")),
]


@pytest.mark.parametrize(("rows", "fragment"), BAD_ROWS)
@pytest.mark.parametrize(("version", "section"), [(2, "arms"), (2, "contexts"), (1, "arms")])
def test_malformed_rows_rejected_naming_the_key(rows: dict, fragment: str, version: int, section: str) -> None:
    # GIVEN a bad row in a small section (checked row by row)
    with pytest.raises(ValueError, match=f"stats {section}.*{fragment}"):
        StatsTable.from_object({"version": version, "campaign": "c", section: {"ok": [1, 0, 0, 0], **rows}})
    # AND the same in a big section (checked in bulk first), wherever the row sits
    many = {f"cr|h{i}@region=x": [i + 3, i % 3, i % 2, 0.5 * i] for i in range(500)}
    for bad_first in (True, False):
        section_rows = {**rows, **many} if bad_first else {**many, **rows}
        with pytest.raises(ValueError, match=f"stats {section}.*{fragment}"):
            StatsTable.from_object({"version": version, "campaign": "c", section: section_rows})


@pytest.mark.parametrize(("rows", "fragment"), BAD_ROWS[:3])
def test_malformed_split_rows_rejected_naming_the_key(rows: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=f"stats splits.*{fragment}"):
        validate_stats({"version": 2, "splits": {"optimized": [1, 0, 0, 0.0], **rows}})


def test_bulk_checked_sections_keep_every_row_as_a_copy() -> None:
    # GIVEN big sections of valid rows (lists and tuples, ints and whole floats, a huge int, fractional values)
    rows: dict = {f"cr|h{i}@region=x": [i, i // 2, 0, i / 7] for i in range(300)}
    rows["tuple"] = (4, 1.0, 0, 2.5)
    rows["cr|h1@region=x#d2460"] = [65_536 * 300, 65_536 * 9, 0, 0]
    rows["huge"] = [10**400, 0, 0, 0]  # not a float: checked row by row, still valid
    obj = {"version": 2, "campaign": "c", "arms": rows, "contexts": dict(rows)}
    # WHEN validated
    out = validate_stats(obj)
    # THEN every row comes back equal, as a new list (the input is never aliased)
    for section in ("arms", "contexts"):
        assert out[section] == {k: list(v) for k, v in rows.items()}
        assert all(out[section][k] is not rows[k] and isinstance(out[section][k], list) for k in rows)
    # AND a table over it reads the counts and the learner's rows
    table = StatsTable.from_object({**obj, "arms": {k: v for k, v in rows.items() if k != "huge"}})
    assert table.get("cr|h10@region=x") == ArmStats(10, 5, 0, 10 / 7) and table.get("tuple") == ArmStats(4, 1, 0, 2.5)
    assert table.context_rows()["cr|h1@region=x#d2460"] == [65_536 * 300, 65_536 * 9, 0, 0]


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ([], "mapping"),
        ({"version": 3}, "version"),
        ({"version": 0}, "version"),
        ({"version": "2"}, "version"),
        ({"version": True}, "version"),  # not version 1
        ({"version": 2, "campaign": 7}, "campaign"),
        ({"version": 2, "updated_at": -1}, "updated_at"),
        ({"version": 2, "updated_at": True}, "updated_at"),
        ({"version": 2, "arms": []}, "arms"),
        ({"version": 2, "contexts": []}, "contexts"),
        ({"version": 2, "splits": []}, "splits"),
        ({"version": 2, "models": []}, "models"),
        ({"version": 1, "arms": []}, "arms"),
        ({"version": 1, "updated_at": -1}, "updated_at"),
    ],
)
def test_malformed_objects_rejected(obj: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        StatsTable.from_object(obj)  # type: ignore[arg-type]


def _set(path: tuple, value: Any) -> dict:
    """OBJ with the value at ``path`` (inside its click model) replaced (``...`` deletes it)."""
    obj = copy.deepcopy(OBJ)
    node = obj["models"]["cr"]["click"]
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return obj


MODEL_PATH = "models['cr']['click']"
GROUP = ("memories", 0, "groups", "main:0")


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        # shape
        ({**OBJ, "models": {"cr": []}}, "models['cr']"),
        ({**OBJ, "models": {"cr": {"revenue": a_model()}}}, "models['cr']['revenue']"),
        ({**OBJ, "models": {"cr": {"click": [a_model()]}}}, MODEL_PATH),
        (_set(("version",), 2), f"{MODEL_PATH}.version"),
        (_set(("variants",), []), f"{MODEL_PATH}.variants"),
        (_set(("variants",), [["h1", 2]]), f"{MODEL_PATH}.variants[0]"),
        (_set(("dims",), "region"), f"{MODEL_PATH}.dims"),
        (_set(("values",), []), f"{MODEL_PATH}.values"),
        (_set(("memories",), []), f"{MODEL_PATH}.memories"),
        (_set(("memories", 1, "groups"), ...), f"{MODEL_PATH}.memories[1]"),
        (_set(("memories", 0, "groups", "pair:0:1"), {"mean": [], "var": [], "mix": MIX}),
         f"{MODEL_PATH}.memories[0].groups['pair:0:1']"),
        (_set(("fitted_at",), "soon"), f"{MODEL_PATH}.fitted_at"),
        (_set(("fitted_at",), -1), f"{MODEL_PATH}.fitted_at"),
        # sizes
        (_set(("log_weights",), [0.0]), f"{MODEL_PATH}.log_weights"),
        (_set((*GROUP, "mean"), [0.1]), f"{MODEL_PATH}.memories[0].groups['main:0'].mean"),
        (_set((*GROUP, "var"), [0.1, 0.1, 0.1]), f"{MODEL_PATH}.memories[0].groups['main:0'].var"),
        (_set(("memories", 1, "groups", "ctx:0:0", "mean"), [0.0]), f"{MODEL_PATH}.memories[1].groups['ctx:0:0'].mean"),
        # numbers
        (_set((*GROUP, "var"), [0.01, float("nan")]), f"{MODEL_PATH}.memories[0].groups['main:0'].var"),
        (_set((*GROUP, "var"), [0.01, -0.5]), f"{MODEL_PATH}.memories[0].groups['main:0'].var"),
        (_set((*GROUP, "var"), [0.01, True]), f"{MODEL_PATH}.memories[0].groups['main:0'].var"),
        (_set((*GROUP, "mean"), [float("inf"), 0.0]), f"{MODEL_PATH}.memories[0].groups['main:0'].mean"),
        (_set((*GROUP, "mix"), [-0.1, *MIX[1:]]), f"{MODEL_PATH}.memories[0].groups['main:0'].mix"),
        (_set(("memories", 1, "intercept"), float("nan")), f"{MODEL_PATH}.memories[1].intercept"),
        (_set(("log_weights",), [0.0, float("-inf")]), f"{MODEL_PATH}.log_weights"),
    ],
)
def test_malformed_models_rejected_naming_the_path(obj: dict, path: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"stats {path}")):
        validate_stats(obj)
    # AND a merge with it (what publish-stats does with a stored object) refuses too
    with pytest.raises(ValueError, match=re.escape(path)):
        merge_max(OBJ, obj)


def test_valid_models_come_back_as_given() -> None:
    out = validate_stats(OBJ)
    assert out["models"] == {"cr": {"click": a_model()}}
    assert validate_stats(_set(("fitted_at",), ...))["models"]["cr"]["click"]["version"] == 1  # fitted_at optional


# ------------------------------------------------------------------------------------------------ merge


def test_merge_max_example() -> None:
    a = {"version": 2, "campaign": "c", "updated_at": 5, "arms": {"x": [10, 1, 0, 0.0]},
         "contexts": {"cr|h1@region=pnw": [10, 1, 0, 0.0], "cr|h1@region=pnw#d7": [70, 9, 0, 0]},
         "models": {"cr": {"click": a_model(5, 0.5)}}}
    b = {"version": 2, "campaign": "c", "updated_at": 7, "arms": {"x": [8, 2, 0, 1.0], "y": [1, 0, 0, 0.0]},
         "splits": {"optimized": [9, 2, 0, 1.0]},
         "contexts": {"cr|h1@region=pnw": [8, 2, 0, 1.0], "cr|h2@region=pnw#d7": [10, 0, 0, 0]},
         "models": {"cr": {"click": a_model(7, 0.7), "conversion": a_model(3)}, "cr2": {"click": a_model(1)}}}
    want = {
        "version": 2,
        "campaign": "c",
        "updated_at": 7,
        "arms": {"x": [10, 2, 0, 1.0], "y": [1, 0, 0, 0.0]},
        "splits": {"optimized": [9, 2, 0, 1.0]},
        "contexts": {"cr|h1@region=pnw": [10, 2, 0, 1.0], "cr|h1@region=pnw#d7": [70, 9, 0, 0],
                     "cr|h2@region=pnw#d7": [10, 0, 0, 0]},
        # per creative and objective the later fit, whichever side it is on
        "models": {"cr": {"click": a_model(7, 0.7), "conversion": a_model(3)}, "cr2": {"click": a_model(1)}},
    }
    assert merge_max(a, b) == want and merge_max(b, a) == want
    older = {**b, "models": {"cr": {"click": a_model(4, 0.4)}}}
    assert merge_max(a, older)["models"] == {"cr": {"click": a_model(5, 0.5)}}
    with pytest.raises(ValueError, match="campaign"):
        merge_max(a, {**b, "campaign": "other"})


_count = st.integers(min_value=0, max_value=1000)
_row = st.tuples(_count, _count, _count, st.floats(min_value=0, max_value=1e6)).map(list)
_rows = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), _row, max_size=5)
_context_rows = st.dictionaries(
    st.sampled_from(["cr|h1@region=pnw", "cr|h2@region=pnw", "cr|h1@region=pnw#d7", "cr|h1@region=pnw#d8",
                     "cr|h2@region=pnw#d8"]),
    _row, max_size=5)
# A model is its fit: the same fitted_at, the same model (so a tie is between equal models).
_models = st.dictionaries(
    st.sampled_from(["cr", "cr2"]),
    st.dictionaries(st.sampled_from(["click", "conversion"]),
                    st.integers(0, 6).map(lambda t: a_model(t, t / 10)), min_size=1),
    max_size=2)
_stats = st.builds(
    lambda arms, splits, contexts, models, ts: {
        "version": 2, "campaign": "c", "arms": arms, "splits": splits, "contexts": contexts, "models": models,
        "updated_at": ts,
    },
    _rows, _rows, _context_rows, _models, st.integers(min_value=0, max_value=10**10),
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


@given(_stats, _stats)
def test_merge_max_keeps_the_later_model(a: dict, b: dict) -> None:
    merged = merge_max(a, b)["models"]
    fits = [(c, o, m["fitted_at"]) for x in (a, b) for c, per in x["models"].items() for o, m in per.items()]
    assert {(c, o) for c, per in merged.items() for o in per} == {(c, o) for c, o, _ in fits}
    for creative, objective, _ in fits:
        latest = max(t for c, o, t in fits if (c, o) == (creative, objective))
        assert merged[creative][objective] == a_model(latest, latest / 10)


@given(_stats, _stats)
def test_merge_max_counts_are_the_elementwise_maximum(a: dict, b: dict) -> None:
    merged = merge_max(a, b)
    for section in ("arms", "splits", "contexts"):
        assert set(merged[section]) == set(a[section]) | set(b[section])
        for key, row in merged[section].items():
            sides = [x[section][key] for x in (a, b) if key in x[section]]
            assert row == [max(column) for column in zip(*sides, strict=True)]


# ------------------------------------------------------------------------------------------------ bounds, trust


def test_precomputed_bounds_give_the_same_choice() -> None:
    from dco.bandit import thompson
    from dco.rng import make_rng

    arms = {f"arm{i}": [1000 + i, 20 + (i % 7), 0, 0.0] for i in range(50)}
    table = StatsTable.from_object({"version": 2, "campaign": "c", "arms": arms})
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
    assert trusted.get("a") == checked.get("a")
    assert trusted.context_rows() == checked.context_rows() == OBJ["contexts"]
    assert trusted.model("cr", "click") == checked.model("cr", "click") == a_model()
    assert trusted.model("cr", "conversion") is checked.model("cr", "conversion") is None
    assert (trusted.campaign, trusted.updated_at, len(trusted)) == (checked.campaign, checked.updated_at, 4)
    assert len(StatsTable.from_trusted({"version": 2, "campaign": "c", "arms": {}})) == 0


def test_only_the_trusted_constructor_skips_validation() -> None:
    bad = {"version": 2, "campaign": "c", "arms": {"a": [1, -1, 0, 0.0]}}
    with pytest.raises(ValueError, match="clicks"):
        StatsTable.from_object(bad)
    with pytest.raises(ValueError, match="clicks"):
        StatsTable(bad)
    nan_var = _set((*GROUP, "var"), [0.01, float("nan")])
    with pytest.raises(ValueError, match="var"):
        StatsTable.from_object(nan_var)
    assert StatsTable.from_trusted(nan_var).model("cr", "click") is nan_var["models"]["cr"]["click"]
