"""Arm statistics and the learner's model: the input of Thompson sampling.

publish-stats writes one stats object per campaign (msgpack or JSON, decoded to plain dicts); its shape and
version are declared in :mod:`dco.learning.contract`::

    {"version": 2, "campaign": "c1", "updated_at": 1700000000,
     "arms": {"<arm key>": [impressions, clicks, conversions, value], ...},
     "splits": {"holdout": [...], "optimized": [...]},                  # lift totals
     "contexts": {"<combination>@<dim>=<value>...": [...], "...#d<epoch>": [...]},    # the learner's counters
     "models": {"<creative>": {"click": <model>, ...}}}                   # dco.learning.model, fitted on publish

:meth:`StatsTable.from_object` validates it (a ``ValueError`` names the bad key; :meth:`StatsTable.from_trusted`
skips that for an object the process built itself, as ``dco simulate`` does) and lays the counts out as
columns (numpy arrays when numpy is present, lists otherwise) with a key -> row index, so
:meth:`StatsTable.counts` for a few hundred eligible arms is a list comprehension of dict lookups plus one
gather. Unknown arms read as zeros (the bandit then uses its prior). Successes are capped at impressions when
read: counters are eventually consistent and a click may be folded before its impression.

Counts are absolute and only grow, so two stats objects merge by element-wise maximum (:func:`merge_max`):
idempotent, commutative and associative, which lets publish-stats merge in any order and any number of times.
``models`` are derived from the counts (publish-stats refits them after the merge); a merge keeps the newer.
Version 1 objects (``components``, before the learner of docs/learning.md) are read: their arms and splits.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dco._accel import np
from dco.bandit import bounds
from dco.learning.contract import READ_VERSIONS, STATS_VERSION
from dco.learning.model import validate_models

__all__ = ["ArmStats", "StatsTable", "merge_max", "validate_stats", "STATS_VERSION", "OBJECTIVES"]

OBJECTIVES = ("click", "conversion")
_FIELDS = ("impressions", "clicks", "conversions", "value")


@dataclass(frozen=True)
class ArmStats:
    """The counters of one arm (or component variant)."""

    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    value: float = 0.0


_ZERO = ArmStats()


def _check_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x >= 0 and x != float("inf")


def _check_counters(section: str, key: Any, row: Any) -> list[Any]:
    if not isinstance(key, str):
        raise ValueError(f"stats {section} key {key!r} is not a string")
    if not isinstance(row, list | tuple) or len(row) != 4:
        raise ValueError(
            f"stats {section}[{key!r}] must be [impressions, clicks, conversions, value], got {row!r}"
        )
    for name, x in zip(_FIELDS, row, strict=True):
        if not _check_number(x):  # also rejects NaN (NaN >= 0 is false)
            raise ValueError(f"stats {section}[{key!r}].{name} must be a non-negative number, got {x!r}")
        if name != "value" and isinstance(x, float) and not x.is_integer():
            raise ValueError(f"stats {section}[{key!r}].{name} must be a whole count, got {x!r}")
    return list(row)


_NUMBER_TYPES = frozenset({int, float})
_ROW_TYPES = frozenset({list, tuple})


def _checked_rows(section: str, rows: Mapping[Any, Any]) -> dict[str, list[Any]]:
    """``{key: list(row)}`` once every row passes :func:`_check_counters`.

    With numpy, a section of well-formed rows is checked in bulk (types with C-level passes, values as one
    array: about 0.3 us a row instead of 3 us); anything the bulk check does not accept goes through the
    row-by-row check, which names the first offending key."""
    if np is not None and len(rows) > 64:  # small sections: the plain loop is as fast
        values = rows.values()
        if (
            set(map(type, rows)) == {str}
            and set(map(type, values)) <= _ROW_TYPES
            and set(map(len, values)) == {4}
            and set(map(type, itertools.chain.from_iterable(values))) <= _NUMBER_TYPES
        ):
            try:
                grid = np.fromiter(itertools.chain.from_iterable(values), dtype=float, count=4 * len(rows))
            except OverflowError:
                grid = None
            if grid is not None:
                grid = grid.reshape(-1, 4)
                counts = grid[:, :3]
                if (
                    bool((grid >= 0).all())  # NaN fails too
                    and bool(np.isfinite(grid).all())
                    and bool((counts == np.floor(counts)).all())
                ):
                    return dict(zip(rows, map(list, values), strict=True))
    return {key: _check_counters(section, key, row) for key, row in rows.items()}


def validate_stats(obj: Any) -> dict[str, Any]:
    """Check the shape of a stats object and return a normalized copy (missing sections become empty).

    Raises ``ValueError`` naming the offending section and key.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"stats object must be a mapping, got {type(obj).__name__}")
    version = obj.get("version", STATS_VERSION)
    if type(version) is not int or version not in READ_VERSIONS:  # True == 1 is not version 1
        raise ValueError(f"stats version {version!r} is not supported (expected one of {READ_VERSIONS})")
    campaign = obj.get("campaign")
    if campaign is not None and not isinstance(campaign, str):
        raise ValueError(f"stats campaign must be a string, got {campaign!r}")
    updated_at = obj.get("updated_at", 0)
    if not isinstance(updated_at, int) or isinstance(updated_at, bool) or updated_at < 0:
        raise ValueError(f"stats updated_at must be a non-negative int, got {updated_at!r}")
    out: dict[str, Any] = {"version": STATS_VERSION, "campaign": campaign, "updated_at": updated_at}
    sections = ("arms", "contexts") if version == STATS_VERSION else ("arms",)
    for section in sections:
        rows = obj.get(section, {})
        if not isinstance(rows, Mapping):
            raise ValueError(f"stats {section} must be a mapping, got {type(rows).__name__}")
        out[section] = _checked_rows(section, rows)
    if version != STATS_VERSION:  # version 1: per-region arm rows and components belong to the old learner
        out["arms"] = {k: v for k, v in out["arms"].items() if "@" not in k}
        out["contexts"] = {}
    if "splits" in obj:  # optional: holdout/optimized totals for lift (written by publish-stats)
        rows = obj["splits"]
        if not isinstance(rows, Mapping):
            raise ValueError(f"stats splits must be a mapping, got {type(rows).__name__}")
        out["splits"] = {key: _check_counters("splits", key, row) for key, row in rows.items()}
    out["models"] = _checked_models(obj.get("models", {})) if version == STATS_VERSION else {}
    return out


def _checked_models(models: Any) -> dict[str, dict[str, Any]]:
    """:func:`dco.learning.model.validate_models`, and each model's ``fitted_at`` (absent: 0), which
    :func:`merge_max` compares: a non-negative int."""
    out = validate_models(models)
    for creative, per_objective in out.items():
        for objective, model in per_objective.items():
            fitted_at = model.get("fitted_at", 0)
            if type(fitted_at) is not int or fitted_at < 0:
                raise ValueError(
                    f"stats models[{creative!r}][{objective!r}].fitted_at must be a non-negative int, got {fitted_at!r}"
                )
    return out


def _trusted(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """:func:`validate_stats`' output shape without the checks (:meth:`StatsTable.from_trusted`)."""
    return {
        "campaign": obj.get("campaign"),
        "updated_at": obj.get("updated_at", 0),
        "arms": obj.get("arms", {}),
        "contexts": obj.get("contexts", {}),
        "models": obj.get("models", {}),
    }


class StatsTable:
    """In-memory, read-only arm statistics with fast gathers for the bandit."""

    __slots__ = ("campaign", "updated_at", "_keys", "_index", "_rows", "_contexts", "_models", "_cols", "_bounds",
                 "memo")

    def __init__(self, obj: Mapping[str, Any], *, trusted: bool = False) -> None:
        """``obj`` is validated (:func:`validate_stats`) unless ``trusted`` (see :meth:`from_trusted`)."""
        norm = _trusted(obj) if trusted else validate_stats(obj)
        self.campaign: str | None = norm["campaign"]
        self.updated_at: int = norm["updated_at"]
        arms: dict[str, list[Any]] = norm["arms"]
        self._keys: list[str] = list(arms)
        self._index: dict[str, int] = {k: i for i, k in enumerate(self._keys)}
        self._rows = arms
        self._contexts: dict[str, list[Any]] = norm["contexts"]
        self._models: dict[str, dict[str, Any]] = norm["models"]
        cols: dict[str, Any]
        if np is not None:
            n = len(arms)
            flat = np.fromiter(itertools.chain.from_iterable(r[:3] for r in arms.values()), dtype=float, count=3 * n)
            grid = np.zeros((n + 1, 3))  # last row: the unknown arm
            grid[:n] = flat.reshape(n, 3)
            trials = grid[:, 0].copy()
            cols = {
                "trials": trials,
                "click": np.minimum(grid[:, 1], trials),
                "conversion": np.minimum(grid[:, 2], trials),
            }
        else:
            impressions = [float(r[0]) for r in arms.values()] + [0.0]  # last row: the unknown arm
            clicks = [min(float(r[1]), float(r[0])) for r in arms.values()] + [0.0]
            conversions = [min(float(r[2]), float(r[0])) for r in arms.values()] + [0.0]
            cols = {"trials": impressions, "click": clicks, "conversion": conversions}
        self._cols = cols
        self._bounds: dict[tuple[str, float, float], tuple[Any, Any]] = {}
        # Derived data other modules compute once per table (dco.learning's model views and decision tables).
        self.memo: dict[Any, Any] = {}

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> StatsTable:
        """Build from a decoded stats object (validated; ``ValueError`` names the bad key)."""
        return cls(obj)

    @classmethod
    def from_trusted(cls, obj: Mapping[str, Any]) -> StatsTable:
        """Build from a stats object this process built itself (``dco.learning.stats_object`` over its own
        counters, as ``dco simulate`` publishes them): no validation (about 4 us a key), and the sections are
        kept as they are, not copied, so the caller must not change them afterwards. Anything read from outside
        (S3, a file, a request) goes through :meth:`from_object`.
        """
        return cls(obj, trusted=True)

    @classmethod
    def empty(cls, campaign: str | None = None) -> StatsTable:
        """No statistics yet: every arm reads 0/0."""
        return cls({"version": STATS_VERSION, "campaign": campaign, "arms": {}, "contexts": {}, "models": {}})

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, arm_key: object) -> bool:
        return arm_key in self._index

    def items_with_separator(self, separator: str) -> list[tuple[str, int]]:
        """``(arm key, row)`` of every arm whose key contains ``separator`` (product x creative arms use ``|``)."""
        return [(k, i) for i, k in enumerate(self._keys) if separator in k]

    def get(self, arm_key: str) -> ArmStats:
        """The counters of one arm; zeros for an arm never seen."""
        row = self._rows.get(arm_key)
        return _ZERO if row is None else ArmStats(int(row[0]), int(row[1]), int(row[2]), row[3])

    def context_rows(self) -> Mapping[str, list[Any]]:
        """The learner's counters (``contexts`` section: absolute and ``#d<epoch>`` rows; read-only by convention)."""
        return self._contexts

    def model(self, creative: str, objective: str) -> Mapping[str, Any] | None:
        """The published model of ``creative`` for ``objective`` (dco.learning.model), None before the first."""
        found = self._models.get(creative)
        return None if found is None else found.get(objective)

    def indices(self, arm_keys: Sequence[str]) -> Any:
        """Row numbers of ``arm_keys`` (unknown arms map to a zero row); reusable with :meth:`counts_at`."""
        get = self._index.get
        unknown = len(self._keys)
        idx = [get(k, unknown) for k in arm_keys]
        if np is not None:
            return np.array(idx, dtype=np.intp)
        return idx

    def counts_at(self, indices: Any, objective: str = "click") -> tuple[Any, Any]:
        """``(successes, trials)`` for row numbers from :meth:`indices`."""
        try:
            succ = self._cols[objective]
        except KeyError:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}") from None
        trials = self._cols["trials"]
        if np is not None:
            return succ[indices], trials[indices]
        return [succ[i] for i in indices], [trials[i] for i in indices]

    def bounds_at(
        self, indices: Any, objective: str = "click", prior: tuple[float, float] = (1.0, 1.0)
    ) -> tuple[Any, Any]:
        """The Thompson pruning bounds ``(lower, upper)`` (:func:`dco.bandit.bounds`) for row numbers.

        Computed once per (objective, prior) for the whole table and then only gathered, so a warm decide
        pays for them once per stats refresh: ``thompson(*t.counts_at(i), rng, bounds=t.bounds_at(i))``.
        """
        key = (objective, float(prior[0]), float(prior[1]))
        full = self._bounds.get(key)
        if full is None:
            if objective not in OBJECTIVES:
                raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
            full = self._bounds[key] = bounds(self._cols[objective], self._cols["trials"], prior=prior)
        lower, upper = full
        if np is not None:
            return lower[indices], upper[indices]
        return [lower[i] for i in indices], [upper[i] for i in indices]

    def counts(self, arm_keys: Sequence[str], objective: str = "click") -> tuple[Any, Any]:
        """``(successes, trials)`` of ``arm_keys`` in order, as float arrays (lists without numpy).

        >>> t = StatsTable.from_object({"version": 1, "campaign": "c", "arms": {"a": [10, 2, 1, 0.0]}})
        >>> [list(map(float, x)) for x in t.counts(["a", "zz"])]
        [[2.0, 0.0], [10.0, 0.0]]
        """
        return self.counts_at(self.indices(arm_keys), objective)


def _max_rows(a: Mapping[str, list[Any]], b: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key), b.get(key)
        if ra is None:
            out[key] = list(rb)  # type: ignore[arg-type]
        elif rb is None:
            out[key] = list(ra)
        else:
            out[key] = [max(x, y) for x, y in zip(ra, rb, strict=True)]
    return out


def merge_max(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two stats objects of one campaign by element-wise maximum of the absolute counters.

    Idempotent (``merge_max(a, a) == a``), commutative and associative on the counts, so replays and reordering are
    harmless; ``models`` keep the later fit.
    Both objects are validated; different campaigns raise ``ValueError``. A missing campaign takes the other's.
    """
    na, nb = validate_stats(a), validate_stats(b)
    ca, cb = na["campaign"], nb["campaign"]
    if ca is not None and cb is not None and ca != cb:
        raise ValueError(f"cannot merge stats of campaign {ca!r} with stats of campaign {cb!r}")
    out = {
        "version": STATS_VERSION,
        "campaign": ca if ca is not None else cb,
        "updated_at": max(na["updated_at"], nb["updated_at"]),
        "arms": _max_rows(na["arms"], nb["arms"]),
        "contexts": _max_rows(na["contexts"], nb["contexts"]),
        "models": _newer_models(na["models"], nb["models"]),
    }
    if "splits" in na or "splits" in nb:
        out["splits"] = _max_rows(na.get("splits", {}), nb.get("splits", {}))
    return out


def _newer_models(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Per creative and objective, the model fitted later (ties: ``b``'s)."""
    out: dict[str, Any] = {}
    for creative in sorted(set(a) | set(b)):
        ma, mb = a.get(creative, {}), b.get(creative, {})
        merged = {}
        for objective in sorted(set(ma) | set(mb)):
            x, y = ma.get(objective), mb.get(objective)
            if x is None or (y is not None and y.get("fitted_at", 0) >= x.get("fitted_at", 0)):
                merged[objective] = y
            else:
                merged[objective] = x
        out[creative] = merged
    return out
