"""Product selection for dynamic (and product-fed assembled) creatives.

Data flow per request::

    creative's static eligibility bitmap (precomputed at build)
      ∩ index bitmaps of the request-dependent filters (country from geo.country, category from t1, ...)
      -> candidate rows
      -> score = static boost (precomputed) × request boosts (brand affinity from ut1, price band from t2, ...)
      -> top N by score, every tie at the cutoff kept, ordered by (score desc, row asc)

The numpy path and the pure-Python path compute the same candidates, the same float64 scores (the static boosts
are float32 in the snapshot and widened identically) and the same order.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dco import bitmap
from dco._accel import np
from dco.campaign import ProductSelection
from dco.snapshot import DictColumn, NumericColumn, Snapshot


@dataclass(frozen=True)
class ProductPick:
    """The products a creative may show for one request.

    ``rows`` (ascending) and ``scores`` are parallel: the top N by score with every tie at the cutoff kept, in
    row order, which is the deterministic arm order the rotation sees; :meth:`ranked` orders them best first.
    ``candidates`` counts the products that passed every filter (before top N); ``applied`` names the
    request-dependent filters and boosts that took effect (explain trace).
    """

    rows: Any
    scores: Any
    candidates: int
    applied: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def ranked(self) -> list[tuple[int, float]]:
        """``(row, score)`` best first; ties by ascending row."""
        pairs = zip((int(r) for r in self.rows), (float(x) for x in self.scores), strict=True)
        return sorted(pairs, key=lambda p: (-p[1], p[0]))

    def best(self) -> int | None:
        """The best-scored row (lowest row among ties), or None when empty."""
        if not len(self.rows):
            return None
        if np is not None and hasattr(self.scores, "argmax"):
            return int(self.rows[int(self.scores.argmax())])
        return self.ranked()[0][0]


EMPTY_PICK = ProductPick((), (), 0, ())


def _parse_band(value: str) -> tuple[float, float] | None:
    """A price band signal ``"lo-hi"`` (either side may be empty: ``"-50"``, ``"100-"``)."""
    lo_text, sep, hi_text = value.partition("-")
    if not sep:
        return None
    try:
        lo = float(lo_text) if lo_text.strip() else -math.inf
        hi = float(hi_text) if hi_text.strip() else math.inf
    except ValueError:
        return None
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        return None
    return lo, hi


def _rows_array(bm: Any) -> Any:
    if np is not None:
        if hasattr(bm, "to_array"):
            return np.frombuffer(bm.to_array(), dtype=np.uint32).astype(np.intp)
        return np.asarray(bitmap.to_list(bm), dtype=np.intp)
    return bitmap.to_list(bm)


def _request_filters(
    snapshot: Snapshot, selection: ProductSelection, signals: Mapping[str, str]
) -> tuple[list[Any], list[Any], list[str]] | None:
    """Index bitmaps of the request-dependent filters: (keep, drop, applied); None when nothing can match."""
    keep: list[Any] = []
    drop: list[Any] = []
    applied: list[str] = []
    for flt in selection.filters:
        if flt.source is None:
            continue
        value = signals.get(flt.source)
        if value is None:
            if flt.required:
                applied.append(f"{flt.column}: {flt.source} missing (required)")
                return None
            continue
        bm = snapshot.filter_bitmap(flt.column, value)
        applied.append(f"{flt.column}{'!=' if flt.exclude else '='}{value}")
        if bm is None:
            if flt.exclude:
                continue
            return None
        (drop if flt.exclude else keep).append(bm)
    return keep, drop, applied


def select_products(
    snapshot: Snapshot,
    creative_id: str,
    selection: ProductSelection,
    signals: Mapping[str, str],
    cache: dict[Any, Any] | None = None,
    derived: dict[Any, Any] | None = None,
) -> ProductPick:
    """Filter, score and rank the catalog for one creative and one request (see the module docstring).

    ``cache`` (a dict living for one decision) shares the request-dependent filter bitmaps between creatives
    of a group that filter on the same signals; ``derived`` (a dict living as long as the snapshot, see
    :class:`PickCache`) keeps per-creative arrays derived from the snapshot, such as the static boosts widened
    to float64 once instead of per request.
    """
    static = snapshot.creative_products.get(creative_id)
    if static is None or static.eligible_count == 0:
        return EMPTY_PICK
    filters = _filter_key(selection)
    if cache is not None and filters in cache:
        found = cache[filters]
    else:
        found = _request_filters(snapshot, selection, signals)
        if found is not None:
            keep, drop, applied = found
            combined = bitmap.intersect_many(keep) if keep else None
            for bm in drop:
                combined = bitmap.difference(combined, bm) if combined is not None else None
            found = (combined, drop if combined is None else [], applied)
        if cache is not None:
            cache[filters] = found
    if found is None:
        return ProductPick((), (), 0, ())
    combined, drop, applied_list = found
    # Creatives with the same static eligibility (a shared bitmap object, see snapshot loading) and the same
    # request filters have the same candidates: computed once per decision.
    rows_key = (filters, id(static.eligible))
    shared = cache.get(rows_key) if cache is not None else None
    if shared is None:
        candidates = static.eligible if combined is None else bitmap.intersect(static.eligible, combined)
        for bm in drop:
            candidates = bitmap.difference(candidates, bm)
        count = bitmap.cardinality(candidates)
        rows = _rows_array(candidates) if count else None
        shared = (candidates, count, rows)
        if cache is not None:
            cache[rows_key] = shared
    candidates, count, rows = shared
    applied = list(applied_list)
    if count == 0:
        return ProductPick((), (), 0, tuple(applied))

    boosts = static.boosts
    assert rows is not None
    if np is None:
        scores = [float(boosts[r]) for r in rows]
    elif derived is not None and cache is not None:
        # Creatives with the same static eligibility see the same candidate rows: their static boosts are kept
        # side by side (one row per product), so one gather serves all of them. On a large catalog the gather
        # is bound by memory latency (one cache line per candidate), not arithmetic.
        stacked = derived.get(id(static.eligible))
        if stacked is None:
            stacked = derived[id(static.eligible)] = _stack_boosts(snapshot, static.eligible)
        columns, matrix = stacked
        gathered_key = (rows_key, "boosts")
        gathered = cache.get(gathered_key)
        if gathered is None:
            gathered = cache[gathered_key] = matrix.take(rows, axis=0).astype(np.float64)
        scores = gathered[:, columns[creative_id]].copy()
    else:
        scores = boosts.take(rows).astype(np.float64)
    for boost in selection.boosts:
        if boost.source is None:
            continue
        value = signals.get(boost.source)
        if value is None:
            continue
        numeric = boost.min is not None or boost.max is not None
        mask_key = (rows_key, boost.column, value, numeric)
        if cache is not None and mask_key in cache:
            mask = cache[mask_key]
        else:
            mask = _boost_mask(snapshot, boost.column, value, numeric, rows, candidates)
            if np is not None and mask is not None:
                mask = mask.nonzero()[0]  # positions, shared by the creatives of this decision
            if cache is not None:
                cache[mask_key] = mask
        if mask is None:
            continue
        applied.append(f"boost {boost.column}~{boost.source}={value} x{boost.factor:g}")
        if np is not None:
            scores[mask] *= boost.factor  # the same multiplication as the pure path, element by element
        else:
            for i in mask:
                scores[i] *= boost.factor
    return _top_n(rows, scores, selection.top_n, count, tuple(applied))


def _stack_boosts(snapshot: Snapshot, eligible: Any) -> tuple[dict[str, int], Any]:
    """``(creative -> column, rows x creatives float32 matrix)`` of the creatives sharing ``eligible``."""
    assert np is not None
    ids = sorted(cid for cid, cp in snapshot.creative_products.items() if cp.eligible is eligible)
    matrix = np.empty((snapshot.rows, len(ids)), dtype=np.float32)
    for j, cid in enumerate(ids):
        matrix[:, j] = snapshot.creative_products[cid].boosts
    return {cid: j for j, cid in enumerate(ids)}, matrix


_FILTER_KEYS: dict[int, tuple[ProductSelection, tuple[Any, ...]]] = {}


def _filter_key(selection: ProductSelection) -> tuple[Any, ...]:
    """The request-dependent filters of ``selection`` as a hashable key (memoized per selection object)."""
    found = _FILTER_KEYS.get(id(selection))
    if found is not None and found[0] is selection:
        return found[1]
    key = tuple((f.column, f.source, f.exclude, f.required) for f in selection.filters if f.source is not None)
    if len(_FILTER_KEYS) > 4096:
        _FILTER_KEYS.clear()
    _FILTER_KEYS[id(selection)] = (selection, key)
    return key


class PickCache:
    """A bounded LRU of :class:`ProductPick` per (creative, values of the signals its selection reads).

    A pick is a pure function of the snapshot, the creative and the request signals named by its filters and
    boosts, so requests from the same context (country, category, region, ...) share one: most requests of a
    warm decide never touch the catalog. Build one per snapshot (the :class:`dco.engine.Engine` does);
    ``maxsize=0`` disables it. Picks are read-only (their arrays are flagged non-writeable).
    """

    __slots__ = ("snapshot", "maxsize", "hits", "misses", "_picks", "_sources", "_derived")

    def __init__(self, snapshot: Snapshot, maxsize: int = 4096) -> None:
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0, got {maxsize!r}")
        self.snapshot = snapshot
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._picks: OrderedDict[tuple[Any, ...], ProductPick] = OrderedDict()
        self._sources: dict[str, tuple[str, ...]] = {}
        self._derived: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self._picks)

    def select(
        self,
        creative_id: str,
        selection: ProductSelection,
        signals: Mapping[str, str],
        cache: dict[Any, Any] | None = None,
    ) -> ProductPick:
        """:func:`select_products` through the cache (``cache`` is the per-decision scratch dict)."""
        if not self.maxsize:
            return select_products(self.snapshot, creative_id, selection, signals, cache, self._derived)
        sources = self._sources.get(creative_id)
        if sources is None:
            names = [f.source for f in selection.filters] + [b.source for b in selection.boosts]
            sources = self._sources[creative_id] = tuple(sorted({n for n in names if n is not None}))
        key = (creative_id, *(signals.get(name) for name in sources))
        picks = self._picks
        pick = picks.get(key)
        if pick is not None:
            picks.move_to_end(key)
            self.hits += 1
            return pick
        self.misses += 1
        pick = select_products(self.snapshot, creative_id, selection, signals, cache, self._derived)
        picks[key] = pick
        if len(picks) > self.maxsize:
            picks.popitem(last=False)
        return pick


def _boost_mask(
    snapshot: Snapshot, column_name: str, value: str, numeric: bool, rows: Any, candidates: Any
) -> Any | None:
    """Positions in ``rows`` whose product matches a request-dependent boost (a numpy bool mask, or a list)."""
    column = snapshot.columns.get(column_name)
    if numeric or isinstance(column, NumericColumn):
        band = _parse_band(value)
        if band is None or not isinstance(column, NumericColumn):
            return None
        lo, hi = band
        if np is not None:
            prices = column.values.take(rows)
            return (prices >= lo) & (prices <= hi)
        return [i for i, r in enumerate(rows) if lo <= column.values[r] <= hi]
    if isinstance(column, DictColumn):
        code = column.code_of(value)
        if code is None:
            return None
        if np is not None:
            return column.codes.take(rows) == code
        codes = column.codes
        return [i for i, r in enumerate(rows) if codes[r] == code]
    if snapshot.has_index(column_name):
        bm = snapshot.index(column_name, value)
        if bm is None:
            return None
        matched = _rows_array(bitmap.intersect(candidates, bm))
        if np is not None:
            mask = np.zeros(len(rows), dtype=bool)
            mask[np.searchsorted(rows, matched)] = True
            return mask
        wanted = set(matched)
        return [i for i, r in enumerate(rows) if r in wanted]
    return None


def _top_n(rows: Any, scores: Any, n: int, count: int, applied: tuple[str, ...]) -> ProductPick:
    """The rows whose score is at least the n-th best (ties at the cutoff kept), in ascending row order."""
    if np is not None:
        if count > n:
            threshold = np.partition(scores, count - n)[count - n]
            keep = (scores >= threshold).nonzero()[0]
            rows, scores = rows.take(keep), scores.take(keep)
        else:
            rows = rows.copy()  # the shared candidate rows stay private to this decision's cache
        rows.flags.writeable = False
        scores.flags.writeable = False
        return ProductPick(rows, scores, count, applied)
    if count > n:
        threshold = sorted(scores, reverse=True)[n - 1]
        kept = [(r, x) for r, x in zip(rows, scores, strict=True) if x >= threshold]
        rows = [r for r, _ in kept]
        scores = [x for _, x in kept]
    return ProductPick(list(rows), list(scores), count, applied)
