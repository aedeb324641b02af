"""Feed robustness through the ingest handler on moto (issue 8, item 8).

tests/unit/test_feed.py covers the parser (every error class, arbitrary bytes under hypothesis). Here the same
classes go through the ingest function as a drop would: one file per error class, a binary file, and a single
100 MB line (written to a temporary file and streamed to S3). Whole-file errors publish nothing (pointer and
snapshots unchanged, a report naming the fatal code); row-level errors publish the rest with the row reported.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

import pytest
from _stack import (
    BUCKET,
    CAMPAIGN,
    EXAMPLE,
    FixedClock,
    load_app,
    load_event,
    put_retail,
    read_json,
    record_of,
)

FEED_KEY = f"feeds/{CAMPAIGN}/products.tsv"
LINES = (EXAMPLE / "feed.tsv").read_bytes().splitlines(keepends=True)
HEADER = LINES[0]
COLUMNS = HEADER.decode().rstrip("\n").split("\t")
GOOD = LINES[1:100]  # 99 products
BIG = 100 * 1024 * 1024


@pytest.fixture
def ingest(aws: Any, settings: Any, lambda_context: Any) -> Any:
    app = load_app("ingest")
    app.clock = FixedClock()
    put_retail(aws.s3)
    [first] = app.handler(load_event("ingest", "feed_drop"), lambda_context)["results"]
    assert first["outcome"] == "published"
    return app


def _drop(ingest: Any, context: Any, minute: int = 30) -> dict[str, Any]:
    event = record_of(load_event("ingest", "feed_drop"), event_time=f"2026-01-01T00:{minute:02d}:00.000Z",
                      sequencer=f"0065A1B2C3D4E5F8{minute:02X}")
    [result] = ingest.handler(event, context)["results"]
    return result


def _snapshots(aws: Any) -> set[str]:
    return {o["Key"] for o in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="snapshots/").get("Contents", [])}


def _row(line: bytes, **changes: str | bytes) -> bytes:
    fields = line.rstrip(b"\n").split(b"\t")
    for name, value in changes.items():
        fields[COLUMNS.index(name)] = value if isinstance(value, bytes) else value.encode()
    return b"\t".join(fields) + b"\n"


def _bad(line: bytes) -> bytes:
    return HEADER + b"".join(GOOD[:50]) + line + b"".join(GOOD[51:])  # the row replaces GOOD[50]


FATAL_FILES = {
    "binary": (lambda: os.urandom(4096) + b"\x00\x01\x02", "undecodable_file"),
    "utf16": (lambda: (HEADER + b"".join(GOOD)).decode().encode("utf-16"), "undecodable_file"),
    "latin1_header": (lambda: HEADER.replace(b"title", "titl\u00e9".encode("latin-1")) + b"".join(GOOD),
                      "undecodable_file"),
    "missing_header": (lambda: HEADER.replace(b"\tprice\t", b"\tcost\t") + b"".join(GOOD), "missing_header"),
    "duplicate_header": (lambda: HEADER.replace(b"\tbrand\t", b"\ttitle\t") + b"".join(GOOD), "duplicate_header"),
    "header_only": (lambda: HEADER, "empty_feed"),
    "zero_bytes": (lambda: b"", None),
    "too_many_bad_rows": (lambda: HEADER + b"".join(_row(line, price="free") for line in GOOD[:10]) + b"".join(GOOD[10:]),
                          "too_many_bad_rows"),
}
ROW_FILES = {
    "wrong_column_count": lambda line: line.replace(b"\t", b"", 1),
    "bad_utf8": lambda line: _row(line, title=b"\xff\xfe bad"),
    "missing_id": lambda line: _row(line, id=""),
    "duplicate_id": lambda line: _row(line, id=GOOD[0].split(b"\t")[0]),
    "missing_title": lambda line: _row(line, title=""),
    "bad_price": lambda line: _row(line, price="ten dollars"),
    "bad_currency": lambda line: _row(line, price="10.00 XYZ"),
    "bad_url": lambda line: _row(line, link="javascript:alert(1)"),
    "bad_availability": lambda line: _row(line, availability="maybe"),
    "bad_country": lambda line: _row(line, shipping_country="USA"),
    "field_too_long": lambda line: _row(line, description="x" * 5000),
}


@pytest.mark.parametrize("case", list(FATAL_FILES))
def test_whole_file_errors_publish_nothing(aws: Any, ingest: Any, lambda_context: Any, case: str) -> None:
    make, code = FATAL_FILES[case]
    before, snapshots = read_json(aws.s3, f"pointers/{CAMPAIGN}.json"), _snapshots(aws)
    aws.s3.put_object(Bucket=BUCKET, Key=FEED_KEY, Body=make())
    result = _drop(ingest, lambda_context)
    assert result["outcome"] == "rejected", result
    assert read_json(aws.s3, f"pointers/{CAMPAIGN}.json") == before and _snapshots(aws) == snapshots
    report = read_json(aws.s3, f"reports/{CAMPAIGN}/products.json")
    assert report["outcome"] == "rejected"
    if code is not None:
        assert report["feed"]["fatal"] == code, report["feed"]


@pytest.mark.parametrize("case", list(ROW_FILES))
def test_row_errors_publish_the_rest_and_name_the_row(aws: Any, ingest: Any, lambda_context: Any, case: str) -> None:
    from dco.snapshot import load_snapshot

    bad_line = ROW_FILES[case](GOOD[50])
    aws.s3.put_object(Bucket=BUCKET, Key=FEED_KEY, Body=_bad(bad_line))
    result = _drop(ingest, lambda_context)
    assert result["outcome"] == "published", result
    report = read_json(aws.s3, f"reports/{CAMPAIGN}/products.json")
    errors = report["feed"]["errors"]
    assert [e["code"] for e in errors] == [case] and errors[0]["row"] == 52, errors  # header = line 1
    assert report["feed"]["accepted"] == len(GOOD) - 1
    pointer = read_json(aws.s3, f"pointers/{CAMPAIGN}.json")
    snapshot = load_snapshot(aws.s3.get_object(Bucket=BUCKET, Key=pointer["key"])["Body"].read())
    assert snapshot.rows == report["feed"]["accepted"]


def _giant(path: Path, *, header: bool, good_rows: bool) -> None:
    """A file whose one line is 100 MB (a 100 MB description), written in 1 MB chunks."""
    chunk = b"A" * (1024 * 1024)
    with path.open("wb") as out:
        if header:
            out.write(HEADER)
            if good_rows:
                out.writelines(GOOD)
            fields = GOOD[0].rstrip(b"\n").split(b"\t")
            fields[0] = b"SKU-GIANT"
            index = COLUMNS.index("description")
            out.write(b"\t".join(fields[:index]) + b"\t")
        for _ in range(BIG // len(chunk)):
            out.write(chunk)
        if header:
            out.write(b"\t" + b"\t".join(fields[index + 1:]) + b"\n")


@pytest.mark.parametrize(("case", "outcome", "code"), [
    ("one_line_no_header", "rejected", "missing_header"),
    ("header_and_one_giant_row", "rejected", "too_many_bad_rows"),
    ("giant_row_among_good_rows", "published", None),
])
def test_single_100mb_line(aws: Any, ingest: Any, lambda_context: Any, tmp_path: Path, case: str, outcome: str,
                           code: str | None) -> None:
    path = tmp_path / "giant.tsv"
    _giant(path, header=case != "one_line_no_header", good_rows=case == "giant_row_among_good_rows")
    assert path.stat().st_size >= BIG
    before, snapshots = read_json(aws.s3, f"pointers/{CAMPAIGN}.json"), _snapshots(aws)
    aws.s3.upload_file(str(path), BUCKET, FEED_KEY)  # streamed (multipart), never held whole by the test
    path.unlink()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = _drop(ingest, lambda_context)
    peak_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert result["outcome"] == outcome, result
    report = read_json(aws.s3, f"reports/{CAMPAIGN}/products.json")
    if outcome == "rejected":
        assert report["feed"]["fatal"] == code
        assert read_json(aws.s3, f"pointers/{CAMPAIGN}.json") == before and _snapshots(aws) == snapshots
    else:  # the giant row alone is skipped (field_too_long), the 99 others are published
        assert [e["code"] for e in report["feed"]["errors"]] == ["field_too_long"]
        assert report["feed"]["accepted"] == len(GOOD)
    assert len(str(report)) < 100_000  # the report quotes no 100 MB value
    assert peak_growth_mb < 2048, peak_growth_mb  # bounded: a few copies of the file, not a blow-up
