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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dco import bitmap
from dco._accel import np
from dco.campaign import ProductSelection
from dco.snapshot import EVERYWHERE, DictColumn, NumericColumn, Snapshot


@dataclass(frozen=True)
class ProductPick:
    """The products a creative may show for one request.

    ``rows`` and ``scores`` are parallel, best first; ``candidates`` counts the products that passed every filter
    (before top N); ``applied`` names the request-dependent filters and boosts that took effect (explain trace).
    """

    rows: tuple[int, ...]
    scores: tuple[float, ...]
    candidates: int
    applied: tuple[str, ...]


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
        return np.asarray(bitmap.to_list(bm) if not hasattr(bm, "to_array") else bm.to_array(), dtype=np.int64)
    return bitmap.to_list(bm)


def select_products(
    snapshot: Snapshot, creative_id: str, selection: ProductSelection, signals: Mapping[str, str]
) -> ProductPick:
    """Filter, score and rank the catalog for one creative and one request (see the module docstring)."""
    static = snapshot.creative_products.get(creative_id)
    if static is None or static.eligible_count == 0:
        return EMPTY_PICK
    applied: list[str] = []
    keep: list[Any] = [static.eligible]
    drop: list[Any] = []
    for flt in selection.filters:
        if flt.source is None:
            continue
        value = signals.get(flt.source)
        if value is None:
            if flt.required:
                return ProductPick((), (), 0, (f"{flt.column}: {flt.source} missing (required)",))
            continue
        bm = snapshot.index(flt.column, value)
        everywhere = snapshot.index(flt.column, EVERYWHERE)
        if everywhere is not None:
            bm = everywhere if bm is None else bitmap.union(bm, everywhere)
        applied.append(f"{flt.column}{'!=' if flt.exclude else '='}{value}")
        if bm is None:
            if flt.exclude:
                continue
            return ProductPick((), (), 0, tuple(applied))
        (drop if flt.exclude else keep).append(bm)
    candidates = bitmap.intersect_many(keep)
    for bm in drop:
        candidates = bitmap.difference(candidates, bm)
    count = bitmap.cardinality(candidates)
    if count == 0:
        return ProductPick((), (), 0, tuple(applied))

    rows = _rows_array(candidates)
    boosts = static.boosts
    if np is not None:
        scores = boosts[rows].astype(np.float64)
    else:
        scores = [float(boosts[r]) for r in rows]
    for boost in selection.boosts:
        if boost.source is None:
            continue
        value = signals.get(boost.source)
        if value is None:
            continue
        mask = _boost_mask(snapshot, boost.column, value, boost.min is not None or boost.max is not None, rows, candidates)
        if mask is None:
            continue
        applied.append(f"boost {boost.column}~{boost.source}={value} x{boost.factor:g}")
        if np is not None:
            scores[mask] *= boost.factor
        else:
            for i in mask:
                scores[i] *= boost.factor
    return _top_n(rows, scores, selection.top_n, count, tuple(applied))


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
            prices = column.values[rows]
            return (prices >= lo) & (prices <= hi)
        return [i for i, r in enumerate(rows) if lo <= column.values[r] <= hi]
    if isinstance(column, DictColumn):
        code = column.code_of(value)
        if code is None:
            return None
        if np is not None:
            return column.codes[rows] == code
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
    """The best ``n`` rows by score, keeping every row tied with the n-th; ordered (score desc, row asc)."""
    if np is not None:
        if count > n:
            threshold = np.partition(scores, count - n)[count - n]
            keep = scores >= threshold
            rows, scores = rows[keep], scores[keep]
        order = np.lexsort((rows, -scores))
        return ProductPick(tuple(rows[order].tolist()), tuple(scores[order].tolist()), count, applied)
    pairs = sorted(zip(scores, rows, strict=True), key=lambda p: (-p[0], p[1]))
    if count > n:
        threshold = pairs[n - 1][0]
        pairs = [p for p in pairs if p[0] >= threshold]
    return ProductPick(tuple(p[1] for p in pairs), tuple(p[0] for p in pairs), count, applied)
