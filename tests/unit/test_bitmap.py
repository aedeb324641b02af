"""Tests for dco.bitmap: both backends, the portable format, byte identity and corrupt-input rejection."""

from __future__ import annotations

import random
import struct
from itertools import chain

import pytest
from dco import bitmap
from dco.errors import CorruptSnapshotError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MAX = 2**32 - 1
BACKENDS = [bitmap.pure] + ([bitmap.native] if bitmap.native is not None else [])
needs_native = pytest.mark.skipif(bitmap.native is None, reason="pyroaring not available (--pure-python)")
SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def be(request: pytest.FixtureRequest) -> bitmap.Backend:
    return request.param


def _runs(base: int, count: int, length: int, gap: int) -> list[int]:
    return list(
        chain.from_iterable(
            range(base + i * (length + gap), base + i * (length + gap) + length) for i in range(count)
        )
    )


_KEYS = st.sampled_from([0, 1, 2, 15, 65534, 65535])


def _dense(key: int, start: int, n: int) -> list[int]:
    lo = (key << 16) + start
    return list(range(lo, min(lo + n, MAX + 1)))


def _pairs(key: int, offsets: list[int], triple: bool) -> list[int]:
    # runs of two, one of them made three when triple: card == 2 * runs + 1 is CRoaring's array/run size tie
    base = key << 16
    out = [base + v for o in sorted(set(offsets)) for v in (3 * o, 3 * o + 1)]
    return out + [out[-1] + 1] if triple and out and out[-1] < MAX else out


def _strided(key: int, start: int, step: int, n: int) -> list[int]:
    lo = (key << 16) + start
    return list(range(lo, min(lo + step * n, (key + 1) << 16, MAX + 1), step))


_PIECE = st.one_of(
    st.lists(st.integers(0, MAX), max_size=40),
    st.lists(st.integers(0, 200_000), max_size=300),
    st.builds(_dense, _KEYS, st.integers(0, 65535), st.integers(0, 140_000)),
    st.builds(_pairs, _KEYS, st.lists(st.integers(0, 21_844), max_size=3000), st.booleans()),
    st.builds(_strided, _KEYS, st.integers(0, 100), st.integers(2, 5), st.integers(1, 20_000)),
)
IDS = st.lists(_PIECE, max_size=4).map(lambda ps: sorted(set(chain.from_iterable(ps))))
SMALL_IDS = st.lists(st.integers(0, 300_000), max_size=200).map(lambda xs: sorted(set(xs)))

_rng = random.Random(20240501)
FIXED_CASES = {
    "empty": [],
    "single": [42],
    "zero": [0],
    "max": [MAX],
    "near_max": [MAX - 70_000, MAX - 65_536, MAX - 1, MAX],
    "dense_100k": list(range(100_000)),
    "sparse_random": sorted(_rng.sample(range(10**6), 5_000)),
    "random_100k_of_1m": sorted(_rng.sample(range(10**6), 100_000)),
    "chunk_edges": [65_535, 65_536, 131_071, 131_072],
    "array_4096": list(range(0, 8192, 2)),
    "bitset_4097": list(range(0, 8194, 2)),
    "array_4096_dense": list(range(4096)),
    "bitset_4097_dense": list(range(4097)),
    "pairs": [0, 1, 5, 6, 10, 11],
    "tie_pairs": [0, 1, 5, 6, 10, 11, 12],
    "tie_single_run": [7, 8, 9],
    "bitset_runs_2046": _runs(0, 2046, 3, 1),
    "bitset_runs_2047": _runs(0, 2047, 3, 1),
    "bitset_runs_2048": _runs(0, 2048, 3, 1),
    "array_runs_2047": _runs(0, 2047, 2, 1)[:4095],
    "full_chunk": list(range(65_536, 131_072)),
    "top_chunk_full": list(range(MAX - 65_535, MAX + 1)),
    "many_chunks": list(range(0, 3 * 2**20, 2**16 - 1)),
}


# ---------------------------------------------------------------------------------------------------- basics


def test_backend_choice(pure_python: bool) -> None:
    if pure_python:
        assert bitmap.BACKEND == "python" and bitmap.native is None
    else:
        assert bitmap.BACKEND == "pyroaring" and bitmap.native is not None
    assert bitmap.from_sorted is (bitmap.native or bitmap.pure).from_sorted


@pytest.mark.parametrize("name", sorted(FIXED_CASES))
def test_round_trip_fixed(be: bitmap.Backend, name: str) -> None:
    ids = FIXED_CASES[name]
    bm = be.from_sorted(ids)
    assert be.to_list(bm) == ids
    assert be.cardinality(bm) == len(ids)
    data = be.serialize(bm)
    back = be.deserialize(data)
    assert be.to_list(back) == ids
    assert be.serialize(back) == data
    assert be.to_list(be.deserialize(memoryview(data))) == ids
    assert be.to_list(be.deserialize(bytearray(data))) == ids


def test_empty_and_range(be: bitmap.Backend) -> None:
    assert be.to_list(be.empty()) == []
    assert be.serialize(be.empty()) == struct.pack("<II", 12346, 0)
    for n in (0, 1, 2, 65_535, 65_536, 65_537, 100_000):
        assert be.to_list(be.from_range(n)) == list(range(n))
        assert be.cardinality(be.from_range(n)) == n
    # a whole chunk is one run: cookie 12347, 1 container, run flag, key 0, card-1, 1 run (0, 65535)
    assert be.serialize(be.from_range(65_536)) == bytes.fromhex("3b300000010000ffff01000000ffff")


def test_from_sorted_accepts_unsorted_and_duplicates(be: bitmap.Backend) -> None:
    assert be.to_list(be.from_sorted([5, 1, 5, 70_000, 1])) == [1, 5, 70_000]
    assert be.to_list(be.from_sorted(iter([3, 2]))) == [2, 3]


@pytest.mark.parametrize("bad", [[-1], [MAX + 1], [0, 2**40]])
def test_from_sorted_rejects_non_uint32(be: bitmap.Backend, bad: list[int]) -> None:
    with pytest.raises(ValueError):
        be.from_sorted(bad)


def test_contains(be: bitmap.Backend) -> None:
    ids = [0, 7, 65_535, 65_536, 1_000_000, MAX]
    bm = be.from_sorted(ids)
    for i in ids:
        assert be.contains(bm, i)
    for i in (1, 6, 8, 65_534, 65_537, 999_999, MAX - 1, -1, MAX + 1, 2**40):
        assert not be.contains(bm, i)
    assert not be.contains(be.empty(), 0)


def test_intersect_many_and_union_many_edges(be: bitmap.Backend) -> None:
    with pytest.raises(ValueError):
        be.intersect_many([])
    assert be.to_list(be.union_many([])) == []
    one = be.from_sorted([1, 2])
    assert be.to_list(be.intersect_many([one])) == [1, 2]
    assert be.to_list(be.union_many([one])) == [1, 2]
    assert be.to_list(be.intersect_many([one, be.empty(), be.from_range(10)])) == []


def test_pure_bitmap_dunder_methods() -> None:
    p = bitmap.pure
    a, b = p.from_sorted([1, 2, 70_000]), p.from_sorted([2, 3])
    assert list(a & b) == [2] and list(a | b) == [1, 2, 3, 70_000] and list(a - b) == [1, 70_000]
    assert len(a) == 3 and 70_000 in a and 4 not in a and "x" not in a
    assert a == p.from_sorted([70_000, 2, 1]) and hash(a) == hash(p.from_sorted([1, 2, 70_000]))
    assert bool(a) and not bool(p.empty())
    assert repr(a) == "PureBitmap([1, 2, 70000])"


# ---------------------------------------------------------------------------------------------------- properties


@SETTINGS
@given(ids=IDS)
def test_round_trip_property(ids: list[int]) -> None:
    for be in BACKENDS:
        bm = be.from_sorted(ids)
        assert be.to_list(bm) == ids
        assert be.to_list(be.deserialize(be.serialize(bm))) == ids


@SETTINGS
@given(a=SMALL_IDS, b=SMALL_IDS, c=IDS)
def test_set_operations_match_python_sets(a: list[int], b: list[int], c: list[int]) -> None:
    sa, sb, sc = set(a), set(b), set(c)
    for be in BACKENDS:
        ba, bb, bc = be.from_sorted(a), be.from_sorted(b), be.from_sorted(c)
        assert be.to_list(be.intersect(ba, bb)) == sorted(sa & sb)
        assert be.to_list(be.union(ba, bc)) == sorted(sa | sc)
        assert be.to_list(be.difference(bc, ba)) == sorted(sc - sa)
        assert be.to_list(be.difference(ba, bb)) == sorted(sa - sb)
        assert be.to_list(be.intersect_many([bc, ba, bb])) == sorted(sa & sb & sc)
        assert be.to_list(be.union_many([ba, bb, bc])) == sorted(sa | sb | sc)
        assert be.cardinality(be.union(ba, bb)) == len(sa | sb)
        for i in a[:20] + c[:20]:
            assert be.contains(bc, i) == (i in sc)


# ---------------------------------------------------------------------------------------------------- cross-backend


@needs_native
@pytest.mark.parametrize("name", sorted(FIXED_CASES))
def test_byte_identity_fixed(name: str) -> None:
    ids = FIXED_CASES[name]
    pure, native = bitmap.pure, bitmap.native
    assert native is not None
    data = native.serialize(native.from_sorted(ids))
    assert pure.serialize(pure.from_sorted(ids)) == data
    assert pure.to_list(pure.deserialize(data)) == ids
    assert native.to_list(native.deserialize(pure.serialize(pure.from_sorted(ids)))) == ids


@needs_native
@SETTINGS
@given(ids=IDS, other=IDS)
def test_byte_identity_property(ids: list[int], other: list[int]) -> None:
    pure, native = bitmap.pure, bitmap.native
    assert native is not None
    n1, n2 = native.from_sorted(ids), native.from_sorted(other)
    p1, p2 = pure.from_sorted(ids), pure.from_sorted(other)
    data = native.serialize(n1)
    assert pure.serialize(p1) == data
    assert pure.to_list(pure.deserialize(data)) == ids
    assert native.to_list(native.deserialize(pure.serialize(p1))) == ids
    # results of operations (pyroaring may hold run containers there) still serialize canonically
    for op in ("intersect", "union", "difference"):
        assert getattr(pure, op)(p1, p2) == pure.deserialize(native.serialize(getattr(native, op)(n1, n2)))
        assert pure.serialize(getattr(pure, op)(p1, p2)) == native.serialize(getattr(native, op)(n1, n2))
    # deserialized native bitmaps (run containers) re-serialize identically
    assert native.serialize(native.deserialize(data)) == data
    if ids:
        n = min(ids[-1], 5_000_000)
        assert native.serialize(native.from_range(n)) == pure.serialize(pure.from_range(n))


# ---------------------------------------------------------------------------------------------------- corrupt input


def _sample_bytes(be: bitmap.Backend, with_runs: bool) -> bytes:
    ids = (
        [1, 5, 9]
        + list(range(70_000, 70_000 + 5_000, 1 if with_runs else 2))
        + list(range(131_072, 131_072 + 9_000, 2))
        + [MAX]
    )
    return be.serialize(be.from_sorted(ids))


@pytest.mark.parametrize("with_runs", [True, False])
def test_truncation_at_every_prefix(be: bitmap.Backend, with_runs: bool) -> None:
    data = _sample_bytes(be, with_runs)
    assert (data[:2] == b"\x3b\x30") is with_runs
    # all short prefixes, then a stride through the big bitset container, then the tail
    cuts = set(range(0, 200)) | set(range(200, len(data), 97)) | set(range(len(data) - 50, len(data)))
    for n in sorted(cuts):
        with pytest.raises(CorruptSnapshotError):
            be.deserialize(data[:n])
    assert be.cardinality(be.deserialize(data)) == 3 + (5000 if with_runs else 2500) + 4500 + 1


def test_bad_cookie_and_trailing_bytes(be: bitmap.Backend) -> None:
    data = be.serialize(be.from_sorted([1, 2, 3]))
    with pytest.raises(CorruptSnapshotError, match="cookie"):
        be.deserialize(b"\x00\x00\x00\x00" + data[4:])
    with pytest.raises(CorruptSnapshotError, match="cookie"):
        be.deserialize(b"not a bitmap at all")
    with pytest.raises(CorruptSnapshotError, match="trailing"):
        be.deserialize(data + b"\x00")
    with pytest.raises(CorruptSnapshotError):
        be.deserialize(struct.pack("<II", 12346, 70_000))


def _array_bitmap(keys_cards: list[tuple[int, list[int]]]) -> bytes:
    """Hand-built no-run portable bytes with array containers."""
    n = len(keys_cards)
    head = struct.pack("<II", 12346, n) + b"".join(struct.pack("<HH", k, len(v) - 1) for k, v in keys_cards)
    pos = len(head) + 4 * n
    offs, bodies = [], []
    for _, values in keys_cards:
        offs.append(struct.pack("<I", pos))
        body = b"".join(struct.pack("<H", v) for v in values)
        bodies.append(body)
        pos += len(body)
    return head + b"".join(offs) + b"".join(bodies)


def _run_bitmap(runs: list[tuple[int, int]], card: int) -> bytes:
    body = struct.pack("<H", len(runs)) + b"".join(struct.pack("<HH", s, n) for s, n in runs)
    return struct.pack("<IBHH", 12347, 1, 0, card - 1) + body


def test_structural_corruption(be: bitmap.Backend) -> None:
    assert be.to_list(be.deserialize(_array_bitmap([(0, [1, 2]), (3, [5])]))) == [1, 2, 3 * 65_536 + 5]
    assert be.to_list(be.deserialize(_run_bitmap([(0, 1), (3, 1)], 4))) == [0, 1, 3, 4]
    bad = {
        "unsorted keys": _array_bitmap([(3, [1]), (0, [5])]),
        "duplicate keys": _array_bitmap([(3, [1]), (3, [5])]),
        "unsorted array": _array_bitmap([(0, [2, 1])]),
        "duplicate array values": _array_bitmap([(0, [2, 2])]),
        "touching runs": _run_bitmap([(0, 1), (2, 1)], 4),
        "overlapping runs": _run_bitmap([(0, 1), (1, 1)], 3),
        "unsorted runs": _run_bitmap([(3, 1), (0, 1)], 4),
        "run past chunk end": _run_bitmap([(65_535, 1)], 2),
        "no runs": _run_bitmap([], 1),
        "run cardinality mismatch": _run_bitmap([(0, 1)], 5),
    }
    good = bytearray(_array_bitmap([(0, [1, 2]), (3, [5])]))
    struct.pack_into("<I", good, 16, 10_000)  # first offset out of range
    bad["offset out of range"] = bytes(good)
    bitset = bytearray(be.serialize(be.from_sorted(range(0, 10_000, 2))))
    bitset[-1] = 0xFF  # 8 extra values beyond the header's cardinality
    bad["bitset cardinality mismatch"] = bytes(bitset)
    for name, data in bad.items():
        with pytest.raises(CorruptSnapshotError):
            be.deserialize(data)
            pytest.fail(name)


def test_run_container_tie_reserializes_as_array(be: bitmap.Backend) -> None:
    # {0, 1, 2, 5, 6} as 2 runs (2 + 4 * 2 bytes) ties with an array (CRoaring counts 2 * 5): the array wins
    tie = _run_bitmap([(0, 2), (5, 1)], 5)
    canonical = be.serialize(be.from_sorted([0, 1, 2, 5, 6]))
    assert canonical == _array_bitmap([(0, [0, 1, 2, 5, 6])])
    assert be.serialize(be.deserialize(tie)) == canonical
    assert be.serialize(be.from_range(3)) == _array_bitmap([(0, [0, 1, 2])])
    assert be.serialize(be.union(be.from_range(3), be.from_sorted([5, 6]))) == canonical
    big = _runs(0, 2000, 2, 2) + [7998]
    big_tie = _run_bitmap([(4 * i, 1) for i in range(1999)] + [(7996, 2)], 4001)
    assert be.serialize(be.deserialize(big_tie)) == be.serialize(be.from_sorted(big))
    # one value more and the run container is strictly smaller
    assert be.serialize(be.from_sorted([0, 1, 2, 3, 6, 7]))[:2] == b"\x3b\x30"


@settings(deadline=None, max_examples=300)
@given(data=st.binary(max_size=120))
def test_random_bytes_never_crash(data: bytes) -> None:
    for be in BACKENDS:
        try:
            bm = be.deserialize(data)
        except CorruptSnapshotError:
            continue
        assert be.to_list(bm) == sorted(set(be.to_list(bm)))


@settings(deadline=None, max_examples=300)
@given(ids=SMALL_IDS, pos=st.integers(0, 10_000), byte=st.integers(0, 255), cut=st.integers(0, 10_000))
def test_mutated_bytes_never_crash(ids: list[int], pos: int, byte: int, cut: int) -> None:
    for be in BACKENDS:
        data = bytearray(be.serialize(be.from_sorted(ids)))
        data[pos % len(data)] = byte
        for candidate in (bytes(data), bytes(data[: cut % (len(data) + 1)])):
            try:
                bm = be.deserialize(candidate)
            except CorruptSnapshotError:
                continue
            out = be.to_list(bm)
            assert out == sorted(set(out))
            # whatever is accepted is accepted the same way by the other backend
            for other in BACKENDS:
                assert other.to_list(other.deserialize(candidate)) == out
