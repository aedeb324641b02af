"""Snapshots: the immutable, versioned, checksummed msgpack object that decide loads into warm memory.

Data flow::

    Campaign config (dict) + Catalog (dco.feed)
        -> build_snapshot()  -> bytes   (byte-identical for identical inputs)
        -> load_snapshot(bytes) -> Snapshot (campaign, compiled targeting, columnar catalog, bitmap indexes,
                                             per-creative static eligibility and boosts)

The object is one msgpack array ``["dco-snapshot", version, sha256, meta, data]``: ``meta`` is a msgpack-encoded
map (small: campaign, compiled targeting, column and index descriptors), ``data`` one binary blob holding every
column buffer and bitmap back to back, 8-byte aligned. Descriptors point into ``data`` with ``[offset, length]``
pairs, so loading costs one msgpack parse of a few kilobytes, one hash over the blob and zero-copy array views;
strings of high-cardinality columns (titles, URLs) stay UTF-8 in the blob and are decoded only for the products a
decision renders. The layout is specified in docs/snapshot-format.md.
"""

from __future__ import annotations

import array
import hashlib
import math
import operator
import sys
from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain, compress
from typing import Any, Literal

import msgpack

from dco import bitmap
from dco._accel import np
from dco.campaign import Campaign, ProductSelection
from dco.errors import ConfigError, CorruptSnapshotError, SnapshotError, SnapshotVersionError

MAGIC = "dco-snapshot"
FORMAT_VERSION = 1
BUILDER = "dco/0.1.0"

# A string column whose distinct values are at most this share of the rows is dictionary-encoded.
DICT_MAX_SHARE = 0.5
# Multi-valued columns: products with no value are indexed under this key ("available everywhere").
EVERYWHERE = "*"
# Columns every snapshot stores (when the feed has them): what decisions, templates and clicks read. Others are
# stored only when the campaign lists them in feed.keep or uses them in a filter or boost.
STORED_COLUMNS = frozenset(
    {"title", "link", "image_link", "price", "sale_price", "currency", "brand", "category", "availability"}
)
# Columns whose values are compared with request signals: normalised like docs/signals.md.
_UPPER_COLUMNS = frozenset({"country"})
_U32 = "I" if array.array("I").itemsize == 4 else "L"


def normalize_value(column: str, value: str) -> str:
    """Normalise an indexed value the way request signals are normalised (country upper, else casefold)."""
    value = value.strip()
    return value.upper() if column in _UPPER_COLUMNS else value.casefold()


# --------------------------------------------------------------------------------------------------- building


class _Blob:
    """Appends buffers 8-byte aligned and hands back ``[offset, length]`` descriptors."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> list[int]:
        pad = (-self.size) % 8
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        offset = self.size
        self.parts.append(data)
        self.size += len(data)
        return [offset, len(data)]

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


def _uint_code(max_value: int) -> str:
    if max_value < 1 << 8:
        return "B"
    if max_value < 1 << 16:
        return "H"
    return "I"


def _pack_array(typecode: str, values: Iterable[Any]) -> bytes:
    arr = array.array(typecode, values)
    if sys.byteorder != "little":  # pragma: no cover - the format is little-endian
        arr.byteswap()
    return arr.tobytes()


def _encode_text(values: Sequence[str]) -> tuple[bytes, bytes, str]:
    """UTF-8 blob and end offsets (``offsets[i]`` is where string i ends).

    One join and one encode for the whole column; when it is ASCII (the usual case) the byte lengths are the
    string lengths, so no per-value bytes object is made."""
    joined = "".join(values)
    if joined.isascii():
        data = joined.encode("ascii")
        lengths: Iterable[int] = map(len, values)
    else:
        encoded = list(map(str.encode, values))  # strict UTF-8, as before: lone surrogates raise
        data = b"".join(encoded)
        lengths = map(len, encoded)
    code = "I" if len(data) < 1 << 32 else "Q"
    return data, _pack_array(code, accumulate(lengths)), code


class _Coded:
    """A column as distinct ``keys`` and per-row ``codes`` (``column[row] == keys[codes[row]]``); ``codes`` is an
    intp numpy array when numpy is present, else a list.

    Everything the builder derives from a column's values (normalised index terms, filter hits, boost
    multipliers) is computed once per distinct value and spread to the rows with C-level ``map`` calls or numpy
    fancy indexing, never with a Python loop over the rows."""

    __slots__ = ("keys", "codes", "_groups")

    def __init__(self, keys: list[Any], codes: Any) -> None:
        self.keys = keys
        self.codes = codes
        self._groups: list[Any] | None = None

    @classmethod
    def of(cls, values: Sequence[Hashable], *, ordered: bool = False, limit: int | None = None) -> _Coded | None:
        """Code ``values`` (``keys`` sorted when ``ordered``, else in first-seen order), or None as soon as there
        are more than ``limit`` distinct values (a mostly-unique column is given up on after about ``limit`` rows).

        One hashing pass over the rows: ``first.setdefault(value, row)`` yields, per row, the row where its value
        first occurs (the same int object for equal values); renumbering those into codes is a pass over ints."""
        n = len(values)
        step = max(n, 1) if limit is None else 1 << 16
        if limit is not None and _more_distinct_than(values, limit, step):
            return None
        first: dict[Any, int] = {}
        firsts: Any = [] if np is None else np.empty(n, dtype=np.intp)
        for start in range(0, n, step):
            stop = min(n, start + step)
            found = map(first.setdefault, values[start:stop], range(start, stop))
            if np is None:
                firsts.extend(found)
            else:
                firsts[start:stop] = np.fromiter(found, dtype=np.intp, count=stop - start)
            if limit is not None and len(first) > limit:
                return None
        keys = sorted(first) if ordered else list(first)
        first_rows = list(map(first.__getitem__, keys))
        if np is not None:
            lookup = np.zeros(max(n, 1), dtype=np.intp)
            lookup[np.array(first_rows, dtype=np.intp)] = np.arange(len(keys), dtype=np.intp)
            return cls(keys, lookup[firsts])
        rank = dict(zip(first_rows, range(len(keys)), strict=True))
        return cls(keys, list(map(rank.__getitem__, firsts)))

    def spread(self, per_key: Sequence[Any], dtype: Any = None) -> Any:
        """``[per_key[code] for code in codes]``: a numpy array of ``dtype`` (numpy present) or a list."""
        if np is not None:
            return np.asarray(per_key, dtype=dtype)[self.codes]
        return list(map(per_key.__getitem__, self.codes))

    def packed(self, typecode: str) -> bytes:
        """The codes as a little-endian array of ``typecode`` ("B", "H" or "I")."""
        if np is not None:
            return self.codes.astype({"B": "<u1", "H": "<u2", "I": "<u4"}[typecode]).tobytes()
        return _pack_array(typecode, self.codes)

    def rows(self, codes: Sequence[int]) -> array.array:
        """The rows (ascending) whose code is one of ``codes``, as a uint32 array."""
        groups = self._grouped()
        if np is not None:
            picked = groups[codes[0]] if len(codes) == 1 else np.sort(np.concatenate([groups[c] for c in codes]))
            return array.array(_U32, picked.astype(np.uint32).tobytes())
        if len(codes) == 1:
            return array.array(_U32, groups[codes[0]])
        return array.array(_U32, sorted(chain.from_iterable(map(groups.__getitem__, codes))))

    def _grouped(self) -> list[Any]:
        """The rows of each key, ascending: slices of a stable argsort (numpy), else one C-level pass of
        ``groups[codes[row]].append(row)``."""
        if self._groups is None:
            k = len(self.keys)
            if np is not None:
                small = np.uint8 if k <= 1 << 8 else np.uint16 if k <= 1 << 16 else np.intp
                order = np.argsort(self.codes.astype(small), kind="stable")  # a radix sort for small codes
                ends = np.cumsum(np.bincount(self.codes, minlength=k)).tolist()
                self._groups = [order[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]
            else:
                groups: list[list[int]] = [[] for _ in range(k)]
                deque(map(list.append, map(groups.__getitem__, self.codes), range(len(self.codes))), maxlen=0)
                self._groups = groups
        return self._groups


def _more_distinct_than(values: Sequence[Hashable], limit: int, step: int) -> bool:
    """True when ``values`` certainly has more than ``limit`` distinct values, found cheaply: a column whose first
    ``step`` rows are (nearly) all distinct (URLs, ids) is counted with a plain set, which stops as soon as the
    limit is passed; any other column answers False here and is counted while it is coded."""
    seen = set(values[:step])
    if len(seen) < 0.95 * min(step, len(values)):
        return False
    for start in range(step, len(values), step):
        if len(seen) > limit:
            return True
        seen.update(values[start : start + step])
    return len(seen) > limit


def _index_terms(column: str, coded: _Coded, multi: bool) -> list[tuple[str, ...]]:
    """The normalised index terms of each distinct value of an indexed column (what a product is indexed
    under): a multi-valued column's sorted unique values or ``("*",)`` when empty, a text column's value or
    nothing when blank."""
    if multi:
        return [tuple(sorted({normalize_value(column, v) for v in values})) or (EVERYWHERE,) for values in coded.keys]
    return [(normalize_value(column, v),) if v.strip() else () for v in coded.keys]


def _inverted_index(coded: _Coded, terms: Sequence[tuple[str, ...]], blob: _Blob) -> dict[str, Any]:
    codes_of: dict[str, list[int]] = {}
    for code, key_terms in enumerate(terms):
        for term in key_terms:
            codes_of.setdefault(term, []).append(code)
    keys = sorted(codes_of)
    return {
        "values": keys,
        "bitmaps": [blob.add(bitmap.serialize(bitmap.from_sorted(coded.rows(codes_of[k])))) for k in keys],
    }


class _Rows:
    """Per-row booleans and float64 products over the catalog: numpy arrays when numpy is present, else lists.

    Both paths do the same IEEE operations in the same order (one multiplication per boost and row), so the
    float32 boosts they pack are byte-identical."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.keep: Any = np.ones(n, dtype=bool) if np is not None else [True] * n
        self.boosts: Any = np.ones(n, dtype=np.float64) if np is not None else [1.0] * n

    def drop_unless(self, hit: Any, exclude: bool) -> None:
        """Keep a row only when its ``hit`` differs from ``exclude`` (``hit == exclude`` drops it)."""
        if np is not None:
            self.keep &= np.asarray(hit, dtype=bool) != exclude
        elif exclude:
            self.keep = list(map(operator.and_, self.keep, map(operator.not_, hit)))
        else:
            self.keep = list(map(operator.and_, self.keep, map(bool, hit)))

    def multiply(self, factors: Any) -> None:
        """``boosts[row] *= factors[row]`` (a factor of 1.0 leaves a row unchanged, bit for bit)."""
        if np is not None:
            self.boosts *= np.asarray(factors, dtype=np.float64)
        else:
            self.boosts = list(map(operator.mul, self.boosts, factors))

    def multiply_where(self, mask: Any, factor: float) -> None:
        if np is not None:
            self.boosts[np.asarray(mask, dtype=bool)] *= factor
        else:
            self.boosts = [b * factor if m else b for b, m in zip(self.boosts, mask, strict=True)]

    def inside(self, values: Sequence[float], lo: float, hi: float) -> Any:
        """``lo <= value <= hi`` per row (False for NaN)."""
        if np is not None:
            arr = np.asarray(values, dtype=np.float64)
            return (lo <= arr) & (arr <= hi)
        return [lo <= v <= hi for v in values]

    def eligible(self) -> array.array:
        if np is not None:
            return array.array(_U32, np.flatnonzero(self.keep).astype(np.uint32).tobytes())
        return array.array(_U32, compress(range(self.n), self.keep))

    def packed_boosts(self) -> bytes:
        if np is not None:
            return np.asarray(self.boosts, dtype="<f4").tobytes()
        return _pack_array("f", self.boosts)


def _static_selection(
    selection: ProductSelection, catalog: Any, coded: _CodedColumns, indexed: Iterable[str], path: str
) -> tuple[array.array, bytes]:
    """Products passing the request-independent filters, and the product of request-independent boosts (packed
    float32)."""
    n = len(catalog)
    rows = _Rows(n)
    for i, flt in enumerate(selection.filters):
        if flt.source is not None:
            continue
        where = f"{path}.filters[{i}]"
        if flt.min is not None or flt.max is not None:
            column = catalog.numeric.get(flt.column)
            if column is None:
                raise ConfigError(f"{where}.column", f'"{flt.column}" is not a numeric feed column')
            lo = -math.inf if flt.min is None else flt.min
            hi = math.inf if flt.max is None else flt.max
            rows.drop_unless(rows.inside(column, lo, hi), flt.exclude)
            continue
        index = coded.index(flt.column) if flt.column in indexed else None
        if index is None:
            raise ConfigError(f"{where}.column", f'"{flt.column}" is not an indexed feed column')
        values, terms = index
        accepted = {normalize_value(flt.column, v) for v in flt.values}
        if flt.column in catalog.multi:
            accepted.add(EVERYWHERE)
        hit_of_key = [any(v in accepted for v in key_terms) for key_terms in terms]
        rows.drop_unless(values.spread(hit_of_key, bool), flt.exclude)
    for i, boost in enumerate(selection.boosts):
        if not boost.is_static:
            continue
        where = f"{path}.boosts[{i}]"
        if boost.scale:
            rows.multiply(_scale_factors(catalog, coded, boost.column, boost.factor, where))
            continue
        if boost.min is not None or boost.max is not None:
            column = catalog.numeric.get(boost.column)
            if column is None:
                raise ConfigError(f"{where}.column", f'"{boost.column}" is not a numeric feed column')
            lo = -math.inf if boost.min is None else boost.min
            hi = math.inf if boost.max is None else boost.max
            rows.multiply_where(rows.inside(column, lo, hi), boost.factor)
            continue
        texts = coded.text(boost.column)
        if texts is None:
            raise ConfigError(f"{where}.column", f'"{boost.column}" is not a feed column')
        accepted = {normalize_value(boost.column, v) for v in boost.values}
        factor_of_key = [boost.factor if normalize_value(boost.column, v) in accepted else 1.0 for v in texts.keys]
        rows.multiply(texts.spread(factor_of_key, float))
    return rows.eligible(), rows.packed_boosts()


def _scale_multiplier(value: Any) -> float:
    """A ``scale`` boost's multiplier for one value: anything not a finite non-negative number counts as 1."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 1.0
    return number if math.isfinite(number) and number >= 0 else 1.0


def _scale_factors(catalog: Any, coded: _CodedColumns, column: str, factor: float, where: str) -> Any:
    """Per-product ``multiplier ** factor`` of a ``scale`` boost (1.0 where the multiplier is 1). The power is
    taken in Python (per distinct value for a text column), never by numpy, so both paths agree to the bit."""

    def power(value: Any) -> float:
        multiplier = _scale_multiplier(value)
        return multiplier**factor if multiplier != 1.0 else 1.0

    if column in catalog.numeric:
        return list(map(power, catalog.numeric[column]))
    texts = coded.text(column)
    if texts is None:
        raise ConfigError(f"{where}.column", f'"{column}" is not a column of the feed')
    return texts.spread(list(map(power, texts.keys)), float)


class _CodedColumns:
    """Lazily coded catalog columns, shared by the stored columns, the indexes and the selections."""

    def __init__(self, catalog: Any) -> None:
        self.catalog = catalog
        self._text: dict[str, _Coded] = {}
        self._index: dict[str, tuple[_Coded, list[tuple[str, ...]]]] = {}

    def dictionary(self, column: str, limit: int) -> _Coded | None:
        """A text column coded with sorted keys (its dictionary encoding), or None when it has more than
        ``limit`` distinct values."""
        coded = _Coded.of(self.catalog.text[column], ordered=True, limit=limit)
        if coded is not None:
            self._text[column] = coded
        return coded

    def text(self, column: str) -> _Coded | None:
        """A text column coded, or None if the catalog has no such text column."""
        coded = self._text.get(column)
        if coded is None:
            values = self.catalog.text.get(column)
            if values is None:
                return None
            coded = self._text[column] = _all_coded(values)
        return coded

    def index(self, column: str) -> tuple[_Coded, list[tuple[str, ...]]] | None:
        """An indexed column's coding and the normalised terms of each of its keys, or None if the catalog has no
        such column (a multi-valued column wins over a text column of the same name)."""
        found = self._index.get(column)
        if found is not None:
            return found
        multi = column in self.catalog.multi
        coded = _all_coded(self.catalog.multi[column]) if multi else self.text(column)
        if coded is None:
            return None
        found = self._index[column] = (coded, _index_terms(column, coded, multi=multi))
        return found


def _all_coded(values: Sequence[Hashable]) -> _Coded:
    coded = _Coded.of(values)
    assert coded is not None  # no limit: always coded
    return coded


def _check_selection_columns(selection: ProductSelection, catalog: Any, indexed: Iterable[str], path: str) -> None:
    indexed = set(indexed)
    for i, flt in enumerate(selection.filters):
        if flt.source is not None and flt.column not in indexed:
            raise ConfigError(
                f"{path}.filters[{i}].column",
                f'"{flt.column}" must be listed in feed.indexes to filter on a request signal',
            )
    for i, boost in enumerate(selection.boosts):
        if boost.source is not None and boost.min is None and boost.max is None and boost.column not in catalog.text:
            raise ConfigError(f"{path}.boosts[{i}].column", f'"{boost.column}" is not a feed column')


def to_plain(value: Any) -> Any:
    """Config data as msgpack-safe plain values (YAML may yield dates; tuples become lists)."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def build_snapshot(
    campaign_data: Mapping[str, Any],
    catalog: Any,
    *,
    campaign: Campaign | None = None,
    feed_sha256: str | None = None,
    built_at: int | None = None,
) -> bytes:
    """Compile a campaign config and a parsed catalog into snapshot bytes.

    ``campaign_data`` is the config as loaded from JSON/YAML (kept in the snapshot and re-validated on load);
    ``catalog`` is a :class:`dco.feed.Catalog`. Nothing here reads a clock: ``built_at`` (unix seconds) is
    recorded only when given, so the same inputs always give the same bytes (with or without numpy).

    Work per row is C-level (``map``, ``join``, numpy when present); anything that needs Python code per value
    (normalising, parsing, matching) runs once per distinct value of a column.
    """
    from dco.config import campaign_from_dict
    from dco.targeting import compile_targeting

    campaign_data = to_plain(campaign_data)
    if campaign is None:
        campaign = campaign_from_dict(campaign_data)
    blob = _Blob()
    n = len(catalog)
    coded = _CodedColumns(catalog)

    # Columns: the ones decisions and templates read, the campaign's feed.keep and the columns its product
    # selections use (precomputed into bitmaps and boosts, but kept for inspection and request boosts).
    wanted = set(STORED_COLUMNS) | set(campaign.feed.keep)
    for creative in campaign.creatives.values():
        if creative.products is not None:
            wanted.update(f.column for f in creative.products.filters)
            wanted.update(b.column for b in creative.products.boosts)
    columns: dict[str, Any] = {}
    data, ends, code = _encode_text(catalog.ids)
    columns["id"] = {"kind": "text", "data": blob.add(data), "ends": blob.add(ends), "type": code}
    for name in sorted(catalog.text):
        if name not in wanted:
            continue
        values = catalog.text[name]
        encoded = coded.dictionary(name, max(1, int(n * DICT_MAX_SHARE))) if n else None
        if encoded is not None:
            tc = _uint_code(max(len(encoded.keys) - 1, 0))
            columns[name] = {"kind": "dict", "values": encoded.keys, "codes": blob.add(encoded.packed(tc)), "type": tc}
        else:
            data, ends, code = _encode_text(values)
            columns[name] = {"kind": "text", "data": blob.add(data), "ends": blob.add(ends), "type": code}
    for name in sorted(catalog.numeric):
        if name not in wanted:
            continue
        columns[name] = {"kind": "f8", "data": blob.add(_pack_array("d", catalog.numeric[name]))}
    for name in sorted(catalog.multi):
        if name in columns or name not in wanted:
            continue
        data, ends, code = _encode_text(list(map(" ".join, catalog.multi[name])))
        columns[name] = {"kind": "list", "data": blob.add(data), "ends": blob.add(ends), "type": code}

    # Inverted indexes.
    for i, column in enumerate(campaign.feed.indexes):
        if coded.index(column) is None:
            raise ConfigError(f"feed.indexes[{i}]", f'"{column}" is not a column of the feed')
    indexes = {}
    for column in sorted(set(campaign.feed.indexes)):
        index_coded, terms = coded.index(column)  # type: ignore[misc]
        indexes[column] = _inverted_index(index_coded, terms, blob)

    # Per-creative precomputation: static eligibility and static boosts.
    creatives: dict[str, Any] = {}
    position = {c.get("id"): i for i, c in enumerate(campaign_data.get("creatives", []))}
    for cid in sorted(campaign.creatives):
        creative = campaign.creatives[cid]
        if creative.products is None:
            continue
        path = f"creatives[{position.get(cid, cid)}].products"
        _check_selection_columns(creative.products, catalog, campaign.feed.indexes, path)
        eligible, boosts = _static_selection(creative.products, catalog, coded, campaign.feed.indexes, path)
        creatives[cid] = {
            "eligible": blob.add(bitmap.serialize(bitmap.from_sorted(eligible))),
            "boosts": blob.add(boosts),
            "eligible_count": len(eligible),
        }

    meta = {
        "build": {
            "builder": BUILDER,
            "campaign_id": campaign.id,
            "campaign_sha256": hashlib.sha256(msgpack.packb(dict(campaign_data))).hexdigest(),
            "feed_sha256": feed_sha256,
            "products": n,
            "built_at": built_at,
        },
        "campaign": dict(campaign_data),
        "targeting": compile_targeting(campaign),
        "catalog": {"rows": n, "columns": columns, "indexes": indexes, "creatives": creatives},
    }
    meta_bytes = msgpack.packb(meta, use_bin_type=True)
    digest = hashlib.sha256(meta_bytes)
    for part in blob.parts:
        digest.update(part)
    # The envelope msgpack would write for [MAGIC, FORMAT_VERSION, digest, meta, data], assembled around the
    # blob's parts so the (large) data is copied once, into the result.
    head = b"\x95" + msgpack.packb(MAGIC) + msgpack.packb(FORMAT_VERSION)
    head += msgpack.packb(digest.digest(), use_bin_type=True) + msgpack.packb(meta_bytes, use_bin_type=True)
    return b"".join([head, _bin_header(blob.size), *blob.parts])


def _bin_header(size: int) -> bytes:
    """The msgpack header of a bin object of ``size`` bytes (bin 8, 16 or 32, the shortest that fits)."""
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


# ---------------------------------------------------------------------------------------------------- loading


# The array typecodes stored columns use (unsigned ends and codes, float64 values, float32 boosts).
_Typecode = Literal["B", "H", "I", "Q", "d", "f"]


def _view(data: Any, desc: Sequence[int], typecode: _Typecode) -> Any:
    """A read-only array over ``data[offset:offset+length]``: numpy without a copy, else a memoryview cast."""
    offset, length = desc
    if np is not None:
        dtype = {"B": "<u1", "H": "<u2", "I": "<u4", "Q": "<u8", "d": "<f8", "f": "<f4"}[typecode]
        return np.frombuffer(data, dtype=dtype, count=length // np.dtype(dtype).itemsize, offset=offset)
    view = memoryview(data)[offset : offset + length]
    if sys.byteorder != "little":  # pragma: no cover
        arr = array.array(typecode)
        arr.frombytes(view)
        arr.byteswap()
        return arr
    return view.cast(typecode)


class TextColumn:
    """UTF-8 strings stored back to back; decoded one at a time."""

    __slots__ = ("_data", "_ends")

    def __init__(self, data: Any, desc: Mapping[str, Any]) -> None:
        offset, length = desc["data"]
        self._data = memoryview(data)[offset : offset + length]
        self._ends = _view(data, desc["ends"], desc["type"])

    def __len__(self) -> int:
        return len(self._ends)

    def get(self, row: int) -> str:
        start = int(self._ends[row - 1]) if row else 0
        return str(self._data[start : int(self._ends[row])], "utf-8")


class DictColumn:
    """Dictionary-encoded strings: ``values[codes[row]]``."""

    __slots__ = ("values", "codes", "_position")

    def __init__(self, data: bytes | bytearray | memoryview, desc: Mapping[str, Any]) -> None:
        self.values: list[str] = list(desc["values"])
        self.codes = _view(data, desc["codes"], desc["type"])
        self._position: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.codes)

    def get(self, row: int) -> str:
        return self.values[self.codes[row]]

    def code_of(self, value: str) -> int | None:
        """The code of ``value`` compared case-insensitively (casefold), or None if no product has it."""
        if self._position is None:
            position: dict[str, int] = {}
            for i, v in enumerate(self.values):
                position.setdefault(v.strip().casefold(), i)
            self._position = position
        return self._position.get(value.casefold())


class NumericColumn:
    __slots__ = ("values",)

    def __init__(self, data: bytes | bytearray | memoryview, desc: Mapping[str, Any]) -> None:
        self.values = _view(data, desc["data"], "d")

    def __len__(self) -> int:
        return len(self.values)

    def get(self, row: int) -> float:
        return float(self.values[row])


class ListColumn(TextColumn):
    """A multi-valued column stored space-joined."""

    def get_list(self, row: int) -> tuple[str, ...]:
        text = self.get(row)
        return tuple(text.split(" ")) if text else ()


Column = TextColumn | DictColumn | NumericColumn | ListColumn


@dataclass
class CreativeProducts:
    """Request-independent part of a creative's product selection, computed at build time."""

    eligible: Any  # bitmap of products passing the static filters
    boosts: Any  # float32 per product: product of the static boosts
    eligible_count: int


@dataclass
class Snapshot:
    """A loaded snapshot. Immutable by convention: decide shares one instance across requests."""

    version: str  # "sha256:<hex>" of the content: the snapshot's identity
    format_version: int
    build: dict[str, Any]
    campaign: Campaign
    campaign_data: dict[str, Any]
    targeting_data: dict[str, Any]
    rows: int
    columns: dict[str, Column]
    index_values: dict[str, list[str]]
    creative_products: dict[str, CreativeProducts]
    nbytes: int
    _index_raw: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    _index_cache: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)
    _index_pos: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)
    _targeting: Any = field(default=None, repr=False)

    @property
    def targeting(self) -> Any:
        """The Tier-1 evaluator (``dco.targeting.Targeting``), built on first use."""
        if self._targeting is None:
            from dco.targeting import Targeting

            self._targeting = Targeting.from_compiled(self.targeting_data, self.campaign.timezone)
        return self._targeting

    def index(self, column: str, value: str) -> Any | None:
        """The bitmap of products whose indexed ``column`` has ``value`` (normalised), or None."""
        key = (column, value)
        hit = self._index_cache.get(key)
        if hit is not None:
            return hit
        positions = self._index_pos.get(column)
        if positions is None:
            return None
        i = positions.get(normalize_value(column, value))
        if i is None:
            return None
        bm = bitmap.deserialize(self._index_raw[column][i])
        self._index_cache[key] = bm
        return bm

    def filter_bitmap(self, column: str, value: str) -> Any | None:
        """Products a filter ``column = value`` keeps: ``index[value]``, plus ``index["*"]`` (available
        everywhere) for multi-valued columns; cached. None when no product matches."""
        key = ("filter", column, value)
        if key in self._index_cache:
            return self._index_cache[key]
        bm = self.index(column, value)
        everywhere = self.index(column, EVERYWHERE) if value != EVERYWHERE else None
        if everywhere is not None:
            bm = everywhere if bm is None else bitmap.union(bm, everywhere)
        self._index_cache[key] = bm
        return bm

    def has_index(self, column: str) -> bool:
        return column in self._index_pos

    def index_cardinalities(self) -> dict[str, dict[str, int]]:
        return {
            column: {v: bitmap.cardinality(self.index(column, v)) for v in values}
            for column, values in self.index_values.items()
        }

    def product(self, row: int, fields: Iterable[str] | None = None) -> dict[str, Any]:
        """The product at ``row`` as a dict of its column values (decoded on demand)."""
        names = self.columns if fields is None else fields
        out: dict[str, Any] = {}
        for name in names:
            column = self.columns.get(name)
            if column is None:
                continue
            out[name] = column.get_list(row) if isinstance(column, ListColumn) else column.get(row)
        return out


def _fail(message: str) -> CorruptSnapshotError:
    return CorruptSnapshotError(f"corrupt snapshot: {message}")


def _envelope(blob: bytes | bytearray | memoryview) -> tuple[int, bytes, memoryview, memoryview]:
    """Parse the 5-element msgpack envelope without copying the blob.

    Returns ``(format_version, sha256, meta, data)`` with ``meta`` and ``data`` as memoryviews into ``blob``.
    Only the exact shapes :func:`build_snapshot` writes are accepted; anything else is corrupt.
    """
    buf = memoryview(blob).cast("B") if not isinstance(blob, memoryview) else blob.cast("B")
    size = len(buf)
    pos = 0

    def need(n: int) -> None:
        if pos + n > size:
            raise _fail("truncated envelope")

    def read_bin() -> memoryview:
        nonlocal pos
        need(1)
        tag = buf[pos]
        widths = {0xC4: 1, 0xC5: 2, 0xC6: 4}
        if tag not in widths:
            raise _fail("expected a binary field in the envelope")
        width = widths[tag]
        need(1 + width)
        length = int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")
        pos += 1 + width
        need(length)
        out = buf[pos : pos + length]
        pos += length
        return out

    need(1)
    if buf[0] != 0x95:  # fixarray of 5
        raise _fail("not a dco snapshot (bad magic)")
    pos = 1
    need(1)
    tag = buf[pos]
    if not 0xA0 <= tag <= 0xBF:
        raise _fail("not a dco snapshot (bad magic)")
    length = tag & 0x1F
    need(1 + length)
    if bytes(buf[pos + 1 : pos + 1 + length]) != MAGIC.encode():
        raise _fail("not a dco snapshot (bad magic)")
    pos += 1 + length
    need(1)
    tag = buf[pos]
    if tag <= 0x7F:
        fmt = tag
        pos += 1
    elif tag in (0xCC, 0xCD, 0xCE):
        width = {0xCC: 1, 0xCD: 2, 0xCE: 4}[tag]
        need(1 + width)
        fmt = int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")
        pos += 1 + width
    else:
        raise _fail("bad format version field")
    digest = bytes(read_bin())
    meta = read_bin()
    data = read_bin()
    if pos != size:
        raise _fail("trailing bytes after the envelope")
    if fmt < 1:
        raise _fail("bad format version field")
    if len(digest) != 32:
        raise _fail("bad hash field")
    return fmt, digest, meta, data


def read_header(blob: bytes) -> tuple[int, str]:
    """``(format_version, version)`` of a snapshot object without verifying it (for listings)."""
    fmt, digest, _, _ = _envelope(blob)
    return fmt, "sha256:" + digest.hex()


def load_snapshot(blob: bytes | bytearray | memoryview) -> Snapshot:
    """Verify and load snapshot bytes (zero-copy: columns are views into ``blob``, which must stay alive).

    Raises :class:`CorruptSnapshotError` when the object is truncated, altered or not a snapshot, and
    :class:`SnapshotVersionError` when it was written by a newer format version.
    """
    fmt, expected, meta_bytes, data = _envelope(blob)
    if fmt > FORMAT_VERSION:
        raise SnapshotVersionError(
            f"snapshot format version {fmt} is newer than this code reads (<= {FORMAT_VERSION}); upgrade the layer"
        )
    digest = hashlib.sha256(meta_bytes)
    digest.update(data)
    if digest.digest() != expected:
        raise _fail("checksum mismatch (the object was altered or truncated)")
    try:
        meta = msgpack.unpackb(meta_bytes, raw=False, strict_map_key=False)
        return _materialize(meta, data, expected, fmt, len(blob))
    except SnapshotError:
        raise
    except ConfigError as exc:
        raise _fail(f"embedded campaign is invalid: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, msgpack.UnpackException) as exc:
        raise _fail(f"bad structure ({exc.__class__.__name__}: {exc})") from None


def _materialize(meta: dict[str, Any], data: memoryview, digest: bytes, fmt: int, nbytes: int) -> Snapshot:
    from dco.config import campaign_from_dict

    catalog = meta["catalog"]
    rows = int(catalog["rows"])
    size = len(data)

    def check(desc: Sequence[int]) -> None:
        if len(desc) != 2 or desc[0] < 0 or desc[1] < 0 or desc[0] + desc[1] > size:
            raise _fail("a descriptor points outside the data blob")

    columns: dict[str, Column] = {}
    for name, desc in catalog["columns"].items():
        kind = desc["kind"]
        for key in ("data", "ends", "codes"):
            if key in desc:
                check(desc[key])
        column: Column
        if kind == "text":
            column = TextColumn(data, desc)
        elif kind == "list":
            column = ListColumn(data, desc)
        elif kind == "dict":
            column = DictColumn(data, desc)
        elif kind == "f8":
            column = NumericColumn(data, desc)
        else:
            raise _fail(f"unknown column kind {kind!r}")
        if len(column) != rows:
            raise _fail(f"column {name!r} has {len(column)} rows, expected {rows}")
        columns[name] = column

    index_values: dict[str, list[str]] = {}
    index_raw: dict[str, list[Any]] = {}
    index_pos: dict[str, dict[str, int]] = {}
    view = data
    for column_name, idx in catalog["indexes"].items():
        values = list(idx["values"])
        raws = []
        for desc in idx["bitmaps"]:
            check(desc)
            raws.append(view[desc[0] : desc[0] + desc[1]])
        index_values[column_name] = values
        index_raw[column_name] = raws
        index_pos[column_name] = {v: i for i, v in enumerate(values)}

    creative_products: dict[str, CreativeProducts] = {}
    eligible_by_bytes: dict[bytes, Any] = {}  # creatives with the same static filters share one bitmap object
    for cid, desc in catalog["creatives"].items():
        check(desc["eligible"])
        check(desc["boosts"])
        off, length = desc["eligible"]
        raw = bytes(view[off : off + length])
        eligible = eligible_by_bytes.get(raw)
        if eligible is None:
            eligible = eligible_by_bytes[raw] = bitmap.deserialize(raw)
        creative_products[cid] = CreativeProducts(
            eligible=eligible,
            boosts=_view(data, desc["boosts"], "f"),
            eligible_count=int(desc["eligible_count"]),
        )

    campaign_data = meta["campaign"]
    return Snapshot(
        version="sha256:" + digest.hex(),
        format_version=fmt,
        build=meta["build"],
        campaign=campaign_from_dict(campaign_data),
        campaign_data=campaign_data,
        targeting_data=meta["targeting"],
        rows=rows,
        columns=columns,
        index_values=index_values,
        creative_products=creative_products,
        nbytes=nbytes,
        _index_raw=index_raw,
        _index_pos=index_pos,
    )


def describe(snapshot: Snapshot) -> dict[str, Any]:
    """A JSON-ready summary for ``dco snapshot inspect``: version, hash, counts, index cardinalities, bytes."""
    campaign = snapshot.campaign
    return {
        "format_version": snapshot.format_version,
        "version": snapshot.version,
        "bytes": snapshot.nbytes,
        "build": snapshot.build,
        "campaign": campaign.id,
        "products": snapshot.rows,
        "counts": {
            "experiences": len(campaign.experiences),
            "themes": len(campaign.themes),
            "groups": len(campaign.groups),
            "creatives": len(campaign.creatives),
        },
        "columns": {name: type(col).__name__.replace("Column", "").lower() for name, col in snapshot.columns.items()},
        "indexes": snapshot.index_cardinalities(),
        "creative_products": {cid: cp.eligible_count for cid, cp in snapshot.creative_products.items()},
    }
