"""Roaring bitmaps for the inverted indexes: pyroaring when present, a pure-Python fallback otherwise.

Bitmaps hold uint32 ordinals (product or theme numbers). The module-level functions are the whole API and
dispatch to the backend chosen once at import (:data:`BACKEND` is ``"pyroaring"`` or ``"python"``)::

    from_sorted(ids) -> Bitmap          from_range(n) -> Bitmap (0..n-1)      empty() -> Bitmap
    intersect(a, b)   union(a, b)   difference(a, b)   intersect_many(bms)   union_many(bms)
    cardinality(bm) -> int   to_list(bm) -> list[int] (sorted)   contains(bm, i) -> bool
    serialize(bm) -> bytes   deserialize(data) -> Bitmap

Serialization is the portable Roaring format (https://github.com/RoaringBitmap/RoaringFormatSpec), always
*run-optimized* with CRoaring's container choice, so both backends write byte-identical output for the same
set. :func:`deserialize` checks the structure (cookie, lengths, offsets, container contents, cardinalities)
and raises :class:`~dco.errors.CorruptSnapshotError` on anything malformed.

The pure backend (:data:`pure`, usable even when pyroaring is installed) stores a bitmap as a dict
``{high 16 bits: int}`` where each value is a Python int used as a 65536-bit bitset, so ``& | & ~`` run in C
and memory stays bounded for ids near 2**32. :data:`native` is the pyroaring backend (``None`` without it).
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, compress, repeat
from operator import add, lt, sub
from struct import pack, pack_into, unpack_from
from typing import Any, TypeAlias

from dco._accel import pyroaring
from dco.errors import CorruptSnapshotError

__all__ = [
    "BACKEND",
    "Backend",
    "Bitmap",
    "PureBitmap",
    "cardinality",
    "contains",
    "deserialize",
    "difference",
    "empty",
    "from_range",
    "from_sorted",
    "intersect",
    "intersect_many",
    "native",
    "pure",
    "serialize",
    "to_list",
    "union",
    "union_many",
]

Bitmap: TypeAlias = Any
"""A bitmap of the active backend: ``pyroaring.FrozenBitMap`` or :class:`PureBitmap`. Treat it as opaque."""

MAX_ID = 0xFFFFFFFF
COOKIE_NO_RUNS = 12346
COOKIE_RUNS = 12347
NO_OFFSET_THRESHOLD = 4  # with runs, the offset header is written only from this many containers on
ARRAY_MAX = 4096  # an array container holds at most this many values; more make a bitset container
BITSET_BYTES = 8192
_ARRAY, _BITSET, _RUN = 0, 1, 2
_BIG_ENDIAN = sys.byteorder == "big"
_CHUNK_BITS = 1 << 16
_FULL_CHUNK = (1 << _CHUNK_BITS) - 1
_ZERO_CHARS = b"0" * _CHUNK_BITS
_ONE_CHARS = b"1" * _CHUNK_BITS
_POSITIONS = tuple(range(_CHUNK_BITS))
_BIN01 = bytes.maketrans(b"01", b"\x00\x01")
_U32 = "I" if array("I").itemsize == 4 else "L"


def _corrupt(message: str) -> CorruptSnapshotError:
    return CorruptSnapshotError(f"corrupt roaring bitmap: {message}")


def _u16(buf: bytes | memoryview) -> array:
    a = array("H")
    a.frombytes(buf)
    if _BIG_ENDIAN:  # pragma: no cover - the format is little-endian
        a.byteswap()
    return a


def _u16_bytes(values: Iterable[int]) -> bytes:
    a = array("H", values)
    if _BIG_ENDIAN:  # pragma: no cover
        a.byteswap()
    return a.tobytes()


# --------------------------------------------------------------------------------------------------------------
# Portable-format layout, shared by both backends' deserialize (structure checks in Python, O(containers)).


@dataclass(frozen=True, slots=True)
class _Container:
    key: int
    card: int
    kind: int  # _ARRAY, _BITSET or _RUN
    start: int  # byte offset of the container payload
    end: int  # byte offset just past it


def _layout(data: memoryview) -> list[_Container]:
    """Parse and check the headers of a portable-format bitmap; the payloads must tile the rest exactly."""
    size_total = len(data)
    if size_total < 4:
        raise _corrupt(f"truncated: {size_total} bytes, the cookie alone needs 4")
    (cookie,) = unpack_from("<I", data, 0)
    if cookie & 0xFFFF == COOKIE_RUNS:
        size = (cookie >> 16) + 1
        flags_len = (size + 7) // 8
        pos = 4 + flags_len
        if size_total < pos:
            raise _corrupt("truncated in the run-container flags")
        run_flags = bytes(data[4:pos])
        has_offsets = size >= NO_OFFSET_THRESHOLD
    elif cookie == COOKIE_NO_RUNS:
        if size_total < 8:
            raise _corrupt("truncated in the container count")
        (size,) = unpack_from("<I", data, 4)
        if size > _CHUNK_BITS:
            raise _corrupt(f"container count {size} exceeds 65536")
        pos = 8
        run_flags = b""
        has_offsets = True
    else:
        raise _corrupt(f"bad cookie {cookie & 0xFFFF} (expected {COOKIE_NO_RUNS} or {COOKIE_RUNS})")
    if size_total < pos + 4 * size:
        raise _corrupt(f"truncated in the header of {size} containers")
    header = _u16(data[pos : pos + 4 * size])
    pos += 4 * size
    keys = header[0::2]
    if size > 1 and not all(map(lt, keys, keys[1:])):
        raise _corrupt("container keys are not strictly increasing")
    offsets: Sequence[int] | None = None
    if has_offsets:
        if size_total < pos + 4 * size:
            raise _corrupt("truncated in the offset header")
        offsets = array(_U32)
        offsets.frombytes(data[pos : pos + 4 * size])
        if _BIG_ENDIAN:  # pragma: no cover
            offsets.byteswap()
        pos += 4 * size
    out: list[_Container] = []
    for i in range(size):
        key = keys[i]
        card = header[2 * i + 1] + 1
        if offsets is not None and offsets[i] != pos:
            raise _corrupt(f"container {i} offset {offsets[i]} out of range (expected {pos})")
        if run_flags and run_flags[i >> 3] >> (i & 7) & 1:
            if size_total < pos + 2:
                raise _corrupt(f"truncated in run container {i}")
            (n_runs,) = unpack_from("<H", data, pos)
            end = pos + 2 + 4 * n_runs
            kind = _RUN
        elif card <= ARRAY_MAX:
            end = pos + 2 * card
            kind = _ARRAY
        else:
            end = pos + BITSET_BYTES
            kind = _BITSET
        if end > size_total:
            raise _corrupt(f"truncated in container {i} (needs {end} bytes, have {size_total})")
        out.append(_Container(key, card, kind, pos, end))
        pos = end
    if pos != size_total:
        raise _corrupt(f"{size_total - pos} trailing bytes after the last container")
    return out


def _as_memoryview(data: bytes | bytearray | memoryview) -> memoryview:
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


# --------------------------------------------------------------------------------------------------------------
# Pure-Python backend: {key: 65536-bit int}, keys ascending, no zero values.


class PureBitmap:
    """An immutable set of uint32 ids: ``{high 16 bits: 65536-bit int}`` with ascending keys, no empty chunk.

    It supports the operators pyroaring's bitmaps do (``& | -``, ``len``, ``in``, iteration, ``==``), so code
    written against either backend reads the same; the module-level functions are the supported API.
    """

    __slots__ = ("_chunks",)

    def __init__(self, chunks: dict[int, int] | None = None) -> None:
        self._chunks: dict[int, int] = chunks if chunks is not None else {}

    def __len__(self) -> int:
        return _py_cardinality(self)

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def __iter__(self):  # noqa: ANN204
        return iter(_py_to_list(self))

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and _py_contains(self, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PureBitmap) and self._chunks == other._chunks

    def __hash__(self) -> int:
        return hash(tuple(self._chunks.items()))

    def __and__(self, other: PureBitmap) -> PureBitmap:
        return _py_intersect(self, other)

    def __or__(self, other: PureBitmap) -> PureBitmap:
        return _py_union(self, other)

    def __sub__(self, other: PureBitmap) -> PureBitmap:
        return _py_difference(self, other)

    def __repr__(self) -> str:
        ids = _py_to_list(self)
        shown = ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")
        return f"PureBitmap([{shown}])"


def _chunk_from_positions(pos: Sequence[int]) -> int:
    """A 65536-bit int with the given bit positions (0..65535) set; duplicates and any order are fine."""
    n = len(pos)
    if n <= 16:
        v = 0
        for p in pos:
            v |= 1 << p
        return v
    if n <= 2500:
        buf = bytearray(BITSET_BYTES)
        for p in pos:
            buf[p >> 3] |= 1 << (p & 7)
        return int.from_bytes(buf, "little")
    chars = bytearray(_ZERO_CHARS)
    deque(map(chars.__setitem__, pos, repeat(49)), maxlen=0)  # 49 == ord("1"), a C-level loop
    chars.reverse()
    return int(chars, 2)


def _chunk_from_runs(starts: Sequence[int], lengths: Sequence[int]) -> int:
    """A 65536-bit int with runs ``[start, start + length)`` set."""
    if len(starts) <= 24:
        v = 0
        for s, n in zip(starts, lengths, strict=True):
            v |= ((1 << n) - 1) << s
        return v
    chars = bytearray(_ZERO_CHARS)
    for s, n in zip(starts, lengths, strict=True):
        chars[s : s + n] = _ONE_CHARS[:n]
    chars.reverse()
    return int(chars, 2)


def _sparse_positions(v: int, base: int) -> list[int]:
    """Set-bit positions of ``v`` plus ``base``, ascending: split the binary digits at each one (C loops)."""
    s = format(v, "b")
    gaps = s.split("1")  # gaps[k] = zeros above the k-th one counted from the top; the last piece is ""
    gaps.pop()
    out = list(accumulate(map(add, map(len, gaps), repeat(1)), sub, initial=base + len(s)))
    out.pop(0)
    out.reverse()
    return out


def _chunk_positions(v: int, base: int) -> list[int]:
    """Set-bit positions of a chunk int plus ``base``, ascending; picks the fastest decoder for the shape."""
    card = v.bit_count()
    starts_bits = v & ~(v << 1)
    if starts_bits.bit_count() * 8 <= card:  # long runs: expand ranges
        starts = _sparse_positions(starts_bits, base)
        ends = _sparse_positions(v & ~(v >> 1), base + 1)
        return list(chain.from_iterable(map(range, starts, ends)))
    if card <= 12000:
        return _sparse_positions(v, base)
    digits = format(v, "b").encode("ascii")[::-1].translate(_BIN01)
    out = list(compress(_POSITIONS, digits))
    return list(map(base.__add__, out)) if base else out


def _check_ids(lo: int, hi: int) -> None:
    if lo < 0 or hi > MAX_ID:
        raise ValueError(f"bitmap ids must be uint32 (0..{MAX_ID}), got {lo if lo < 0 else hi}")


_SPAN_LIMIT = 1 << 24  # ids spanning at most this many values are set in one flat digit buffer


def _py_from_sorted(ids: Iterable[int]) -> PureBitmap:
    if isinstance(ids, PureBitmap):
        return ids
    vals = ids if isinstance(ids, list | tuple | array) else list(ids)
    if not vals:
        return PureBitmap()
    lo, hi = min(vals), max(vals)
    _check_ids(lo, hi)
    chunks: dict[int, int] = {}
    first = lo >> 16
    if hi - (first << 16) < _SPAN_LIMIT:
        # One flat buffer of "0"/"1" digits: C-level stores in any order, then one int() per 65536 digits.
        base = first << 16
        digits = bytearray(b"0") * ((hi >> 16) + 1 - first << 16)
        targets = vals if base == 0 else map(sub, vals, repeat(base))
        deque(map(digits.__setitem__, targets, repeat(49)), maxlen=0)  # 49 == ord("1")
        for k in range(first, (hi >> 16) + 1):
            piece = digits[(k - first) << 16 : (k - first + 1) << 16]
            piece.reverse()
            if v := int(piece, 2):
                chunks[k] = v
        return PureBitmap(chunks)
    srt = sorted(vals)  # sparse over a wide span: group the sorted ids by chunk
    i, n = 0, len(srt)
    while i < n:
        key = srt[i] >> 16
        base = key << 16
        j = bisect_left(srt, base + _CHUNK_BITS, i)
        lows = srt[i:j] if base == 0 else list(map(sub, srt[i:j], repeat(base)))
        chunks[key] = _chunk_from_positions(lows)
        i = j
    return PureBitmap(chunks)


def _py_from_range(n: int) -> PureBitmap:
    if n <= 0:
        return PureBitmap()
    _check_ids(0, n - 1)
    chunks = dict.fromkeys(range(n >> 16), _FULL_CHUNK)
    if n & 0xFFFF:
        chunks[n >> 16] = (1 << (n & 0xFFFF)) - 1
    return PureBitmap(chunks)


def _py_empty() -> PureBitmap:
    return PureBitmap()


def _py_intersect(a: PureBitmap, b: PureBitmap) -> PureBitmap:
    ca, cb = a._chunks, b._chunks
    if len(ca) > len(cb):
        ca, cb = cb, ca
    out: dict[int, int] = {}
    for k, v in ca.items():
        w = cb.get(k)
        if w is not None and (x := v & w):
            out[k] = x
    return PureBitmap(out)


def _py_union(a: PureBitmap, b: PureBitmap) -> PureBitmap:
    ca, cb = a._chunks, b._chunks
    if not cb:
        return a
    if not ca:
        return b
    return PureBitmap({k: ca.get(k, 0) | cb.get(k, 0) for k in sorted(ca.keys() | cb.keys())})


def _py_difference(a: PureBitmap, b: PureBitmap) -> PureBitmap:
    cb = b._chunks
    if not cb:
        return a
    out: dict[int, int] = {}
    for k, v in a._chunks.items():
        w = cb.get(k)
        if w is None:
            out[k] = v
        elif x := v & ~w:
            out[k] = x
    return PureBitmap(out)


def _py_intersect_many(bitmaps: Iterable[PureBitmap]) -> PureBitmap:
    bms = sorted(bitmaps, key=_py_cardinality)
    if not bms:
        raise ValueError("intersect_many needs at least one bitmap")
    acc = bms[0]
    for bm in bms[1:]:
        if not acc._chunks:
            break
        acc = _py_intersect(acc, bm)
    return acc


def _py_union_many(bitmaps: Iterable[PureBitmap]) -> PureBitmap:
    acc: dict[int, int] = {}
    get = acc.get
    for bm in bitmaps:
        for k, v in bm._chunks.items():
            acc[k] = get(k, 0) | v
    return PureBitmap({k: acc[k] for k in sorted(acc)})


def _py_cardinality(bm: PureBitmap) -> int:
    return sum(v.bit_count() for v in bm._chunks.values())


def _py_to_list(bm: PureBitmap) -> list[int]:
    out: list[int] = []
    for k, v in bm._chunks.items():
        out += _chunk_positions(v, k << 16)
    return out


def _py_contains(bm: PureBitmap, i: int) -> bool:
    v = bm._chunks.get(i >> 16) if 0 <= i <= MAX_ID else None
    return v is not None and (v >> (i & 0xFFFF)) & 1 == 1


def _py_serialize(bm: PureBitmap) -> bytes:
    chunks = bm._chunks
    size = len(chunks)
    kinds: list[int] = []
    cards: list[int] = []
    payloads: list[bytes] = []
    for v in chunks.values():
        card = v.bit_count()
        starts_bits = v & ~(v << 1)
        n_runs = starts_bits.bit_count()
        # CRoaring's run_optimize of array/bitset containers: a run container only if strictly smaller, where
        # CRoaring sizes a run container 2 + 4 * runs, an array 2 * card (no count field) and a bitset 8192.
        run_size = 2 + 4 * n_runs
        if card <= ARRAY_MAX:
            kind = _RUN if run_size < 2 * card else _ARRAY
        else:
            kind = _RUN if run_size < BITSET_BYTES else _BITSET
        if kind == _ARRAY:
            payloads.append(_u16_bytes(_chunk_positions(v, 0)))
        elif kind == _BITSET:
            payloads.append(v.to_bytes(BITSET_BYTES, "little"))
        else:
            starts = _sparse_positions(starts_bits, 0)
            lasts = _sparse_positions(v & ~(v >> 1), 0)
            pairs = array("H", bytes(4 * n_runs))
            pairs[0::2] = array("H", starts)
            pairs[1::2] = array("H", map(sub, lasts, starts))
            if _BIG_ENDIAN:  # pragma: no cover
                pairs.byteswap()
            payloads.append(pack("<H", n_runs) + pairs.tobytes())
        kinds.append(kind)
        cards.append(card)
    has_runs = _RUN in kinds
    if has_runs:
        flags = bytearray((size + 7) // 8)
        for i, kind in enumerate(kinds):
            if kind == _RUN:
                flags[i >> 3] |= 1 << (i & 7)
        head = pack("<I", COOKIE_RUNS | ((size - 1) << 16)) + bytes(flags)
        with_offsets = size >= NO_OFFSET_THRESHOLD
    else:
        head = pack("<II", COOKIE_NO_RUNS, size)
        with_offsets = True
    desc = array("H", bytes(4 * size))
    desc[0::2] = array("H", chunks.keys())
    desc[1::2] = array("H", [c - 1 for c in cards])
    if _BIG_ENDIAN:  # pragma: no cover
        desc.byteswap()
    parts = [head, desc.tobytes()]
    if with_offsets:
        offs = bytearray(4 * size)
        pos = len(head) + 8 * size
        for i, payload in enumerate(payloads):
            pack_into("<I", offs, 4 * i, pos)
            pos += len(payload)
        parts.append(bytes(offs))
    parts.extend(payloads)
    return b"".join(parts)


def _py_deserialize(data: bytes | bytearray | memoryview) -> PureBitmap:
    mv = _as_memoryview(data)
    chunks: dict[int, int] = {}
    for c in _layout(mv):
        if c.kind == _BITSET:
            v = int.from_bytes(mv[c.start : c.end], "little")
        elif c.kind == _ARRAY:
            values = _u16(mv[c.start : c.end])
            if c.card > 1 and not all(map(lt, values, values[1:])):
                raise _corrupt(f"array container {c.key} is not strictly increasing")
            v = _chunk_from_positions(values)
        else:
            runs = _u16(mv[c.start + 2 : c.end])
            starts = runs[0::2]
            _check_runs(c.key, starts, runs[1::2])
            v = _chunk_from_runs(starts, list(map(add, runs[1::2], repeat(1))))
        if v.bit_count() != c.card:
            raise _corrupt(f"container {c.key} holds {v.bit_count()} values, its header says {c.card}")
        chunks[c.key] = v
    return PureBitmap(chunks)


def _check_runs(key: int, starts: Sequence[int], length_minus_one: Sequence[int]) -> None:
    if not starts:
        raise _corrupt(f"run container {key} has no runs")
    last_end = -1  # exclusive end of the previous run
    for s, m in zip(starts, length_minus_one, strict=True):
        if s <= last_end:
            raise _corrupt(f"run container {key}: runs overlap, touch or are unsorted")
        last_end = s + m + 1
        if last_end > _CHUNK_BITS:
            raise _corrupt(f"run container {key}: a run passes the end of its 65536-value chunk")


# --------------------------------------------------------------------------------------------------------------
# pyroaring backend.


def _pr_from_sorted(ids: Iterable[int]) -> Any:
    frozen = pyroaring.FrozenBitMap  # type: ignore[union-attr]
    if isinstance(ids, frozen):
        return ids
    if isinstance(ids, pyroaring.AbstractBitMap):  # type: ignore[union-attr]
        return frozen(ids)
    if isinstance(ids, range):
        if ids:
            _check_ids(min(ids), max(ids))
        return frozen(ids)
    if not (isinstance(ids, array) and ids.typecode == _U32):
        try:
            ids = array(_U32, ids)  # C-level conversion with a range check; then roaring_bitmap_of_ptr
        except OverflowError as exc:
            raise ValueError(f"bitmap ids must be uint32 (0..{MAX_ID})") from exc
    return frozen(ids)


def _pr_from_range(n: int) -> Any:
    if n <= 0:
        return pyroaring.FrozenBitMap()  # type: ignore[union-attr]
    _check_ids(0, n - 1)
    return pyroaring.FrozenBitMap(range(n))  # type: ignore[union-attr]


def _pr_empty() -> Any:
    return pyroaring.FrozenBitMap()  # type: ignore[union-attr]


def _pr_intersect(a: Any, b: Any) -> Any:
    return a & b


def _pr_union(a: Any, b: Any) -> Any:
    return a | b


def _pr_difference(a: Any, b: Any) -> Any:
    return a - b


def _pr_intersect_many(bitmaps: Iterable[Any]) -> Any:
    bms = sorted(bitmaps, key=len)
    if not bms:
        raise ValueError("intersect_many needs at least one bitmap")
    acc = bms[0]
    for bm in bms[1:]:
        if not acc:
            break
        acc = acc & bm
    return acc


def _pr_union_many(bitmaps: Iterable[Any]) -> Any:
    bms = list(bitmaps)
    if not bms:
        return _pr_empty()
    if len(bms) == 1:
        return bms[0]
    return pyroaring.FrozenBitMap.union(*bms)  # type: ignore[union-attr]


def _pr_cardinality(bm: Any) -> int:
    return len(bm)


def _pr_to_list(bm: Any) -> list[int]:
    return bm.to_array().tolist()


def _pr_contains(bm: Any, i: int) -> bool:
    return 0 <= i <= MAX_ID and i in bm


def _pr_serialize(bm: Any) -> bytes:
    # run_optimize gives CRoaring's canonical choice for array and bitset containers. A container that is
    # already a run container (from_range, operations, deserialize) stays one on a tie with its array size
    # (2 + 4 * runs == 2 * card), where the canonical policy (and _py_serialize) says array: re-encode those
    # rare bitmaps through the pure serializer, which needs memory per container, not per value.
    work = pyroaring.BitMap(bm)  # type: ignore[union-attr]
    work.run_optimize()
    data = work.serialize()
    if data[:2] == b"\x3b\x30":  # cookie 12347: has run containers
        mv = memoryview(data)
        for c in _layout(mv):
            if c.kind == _RUN and c.card == 2 * ((c.end - c.start - 2) // 4) + 1:
                return _py_serialize(_py_deserialize(mv))
    return data


def _pr_deserialize(data: bytes | bytearray | memoryview) -> Any:
    mv = _as_memoryview(data)
    expected = sum(c.card for c in _layout(mv))
    try:
        bm = pyroaring.FrozenBitMap.deserialize(mv.tobytes())  # type: ignore[union-attr]
    except (ValueError, IndexError, OverflowError, MemoryError) as exc:
        raise _corrupt(str(exc)) from exc
    if len(bm) != expected:
        raise _corrupt(f"holds {len(bm)} values, the headers say {expected}")
    return bm


# --------------------------------------------------------------------------------------------------------------
# Backends and the module-level API.


@dataclass(frozen=True)
class Backend:
    """One implementation of the API; :data:`pure` and :data:`native` are the two instances."""

    name: str
    from_sorted: Callable[[Iterable[int]], Any]
    from_range: Callable[[int], Any]
    empty: Callable[[], Any]
    intersect: Callable[[Any, Any], Any]
    union: Callable[[Any, Any], Any]
    difference: Callable[[Any, Any], Any]
    intersect_many: Callable[[Iterable[Any]], Any]
    union_many: Callable[[Iterable[Any]], Any]
    cardinality: Callable[[Any], int]
    to_list: Callable[[Any], list[int]]
    contains: Callable[[Any, int], bool]
    serialize: Callable[[Any], bytes]
    deserialize: Callable[[bytes | bytearray | memoryview], Any]


pure = Backend(
    "python",
    _py_from_sorted,
    _py_from_range,
    _py_empty,
    _py_intersect,
    _py_union,
    _py_difference,
    _py_intersect_many,
    _py_union_many,
    _py_cardinality,
    _py_to_list,
    _py_contains,
    _py_serialize,
    _py_deserialize,
)

native: Backend | None = (
    Backend(
        "pyroaring",
        _pr_from_sorted,
        _pr_from_range,
        _pr_empty,
        _pr_intersect,
        _pr_union,
        _pr_difference,
        _pr_intersect_many,
        _pr_union_many,
        _pr_cardinality,
        _pr_to_list,
        _pr_contains,
        _pr_serialize,
        _pr_deserialize,
    )
    if pyroaring is not None
    else None
)

_active: Backend = native if native is not None else pure
BACKEND: str = _active.name

from_sorted = _active.from_sorted
"""Bitmap of the given uint32 ids (sorted input is fastest; any order and duplicates are accepted)."""
from_range = _active.from_range
"""Bitmap of ``0..n-1``."""
empty = _active.empty
"""The empty bitmap."""
intersect = _active.intersect
"""``a & b``."""
union = _active.union
"""``a | b``."""
difference = _active.difference
"""``a - b``."""
intersect_many = _active.intersect_many
"""Intersection of one or more bitmaps, smallest first, stopping early once empty (ValueError if none)."""
union_many = _active.union_many
"""Union of any number of bitmaps (empty for none)."""
cardinality = _active.cardinality
"""Number of ids in the bitmap."""
to_list = _active.to_list
"""The ids as a sorted list."""
contains = _active.contains
"""Whether id ``i`` is in the bitmap (False for ints outside uint32)."""
serialize = _active.serialize
"""Portable Roaring bytes, run-optimized; byte-identical across backends."""
deserialize = _active.deserialize
"""Bitmap from portable Roaring bytes; :class:`~dco.errors.CorruptSnapshotError` if malformed."""
