"""Product feed parsing and validation (dco.feed): one test per row error code, the whole-file rejections, the
formats (TSV/CSV, quoting, BOM, CRLF, GMC prices), and property tests that the parser never raises.

Row numbers in the report are physical line numbers: the header is line 1, the first product line 2.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from dco.campaign import FeedSpec
from dco.errors import FeedError
from dco.feed import FeedIssue, FeedResult, parse_feed
from dco_local.examples import RETAIL_CATEGORIES, RETAIL_REGIONS, generate_retail_feed
from hypothesis import given, settings
from hypothesis import strategies as st

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
ROOT = Path(__file__).resolve().parents[2]
HEADER = ("id", "title", "link", "price")


def tsv(*rows: tuple[str, ...] | list[str], header: tuple[str, ...] = HEADER) -> bytes:
    return ("\t".join(header) + "\n" + "".join("\t".join(row) + "\n" for row in rows)).encode()


def good_row(i: int) -> tuple[str, str, str, str]:
    return (f"P{i}", f"Product {i}", f"https://shop.example.com/p{i}", f"{10 + i}.00 USD")


def padded(bad: tuple[str, ...], n_good: int = 99, header: tuple[str, ...] = HEADER) -> bytes:
    """The bad row first (line 2), then enough good rows to stay under the bad-row threshold."""
    rows: list[tuple[str, ...]] = [bad]
    for i in range(n_good):
        row = dict(zip(HEADER, good_row(i), strict=True))
        rows.append(tuple(row.get(h, "") for h in header))
    return tsv(*rows, header=header)


def only_issue(result: FeedResult) -> FeedIssue:
    assert result.report.publishable, result.report.to_dict()
    assert len(result.report.errors) == 1, result.report.errors
    return result.report.errors[0]


# ---------------------------------------------------------------------------------------------------- happy path


def test_minimal_feed_parses_into_columns() -> None:
    result = parse_feed(tsv(good_row(1), good_row(2)))
    assert result.report.to_dict() == {
        "rows": 2, "accepted": 2, "rejected": 0, "errors": [], "publishable": True, "fatal": None,
    }
    catalog = result.require_catalog()
    assert len(catalog) == 2
    assert catalog.ids == ["P1", "P2"]
    assert catalog.text["title"] == ["Product 1", "Product 2"]
    assert catalog.text["currency"] == ["USD", "USD"]
    assert catalog.text["availability"] == ["in_stock", "in_stock"]
    assert catalog.numeric["price"] == [11.0, 12.0]
    assert all(math.isnan(v) for v in catalog.numeric["sale_price"])
    assert catalog.multi == {"country": [(), ()], "additional_image_link": [(), ()]}
    assert set(catalog.text) == {"title", "link", "currency", "availability"}


def test_gmc_names_map_without_configuration() -> None:
    header = ("ID", " Title ", "description", "link", "image_link", "additional_image_link", "price",
              "sale_price", "availability", "product_type", "google_product_category", "brand", "seller",
              "shipping_country", "custom_label_0", "custom_label_4", "Color")
    row = ("A1", " Rain Shell ", "Light", "https://shop.example.com/a1", "https://cdn.example.com/a1.jpg",
           "https://cdn.example.com/a1-2.jpg,https://cdn.example.com/a1-3.jpg", "15.00 usd", "12.50 USD",
           "in stock", "Raincoats", "Apparel > Outerwear", "Northwind", "Shop Co", "us, ca", "PNW", "x", "Navy")
    catalog = parse_feed(tsv(row, header=header)).require_catalog()
    product = catalog.product(0)
    assert product["id"] == "A1"
    assert product["title"] == "Rain Shell"  # trimmed
    assert product["price"] == 15.0 and product["currency"] == "USD"
    assert product["sale_price"] == 12.5
    assert product["availability"] == "in_stock"
    assert product["category"] == "Raincoats"  # product_type wins; values keep their case
    assert product["google_product_category"] == "Apparel > Outerwear"  # the loser stays as a custom column
    assert product["provider"] == "Shop Co"
    assert product["country"] == ("US", "CA")
    assert product["additional_image_link"] == ("https://cdn.example.com/a1-2.jpg", "https://cdn.example.com/a1-3.jpg")
    assert product["custom_label_0"] == "PNW" and product["custom_label_4"] == "x"
    assert product["color"] == "Navy"  # custom column under its lower-cased name
    assert "custom_label_1" not in catalog.text  # only labels present in the header


def test_google_product_category_feeds_category_when_alone() -> None:
    header = (*HEADER, "google_product_category")
    catalog = parse_feed(tsv((*good_row(1), "Home > Kitchen"), header=header)).require_catalog()
    assert catalog.text["category"] == ["Home > Kitchen"]


def test_feedspec_columns_override_the_header_name() -> None:
    header = ("sku", "name", "url", "cost", "dept")
    spec = FeedSpec(columns={"id": "SKU", "title": "name", "link": "url", "price": "cost", "category": "dept"})
    result = parse_feed(tsv(("S1", "Mug", "https://s.example.com/1", "3", "kitchen"), header=header), spec)
    catalog = result.require_catalog()
    assert catalog.ids == ["S1"] and catalog.text["category"] == ["kitchen"]
    assert catalog.numeric["price"] == [3.0]


def test_override_to_absent_header_is_missing_header() -> None:
    result = parse_feed(tsv(good_row(1)), FeedSpec(columns={"id": "sku"}))
    assert result.report.fatal == "missing_header"
    assert result.report.errors[0].column == "sku"


@pytest.mark.parametrize(
    ("raw", "price", "currency"),
    [
        ("15.00 USD", 15.0, "USD"),
        ("15 usd", 15.0, "USD"),
        ("15.00USD", 15.0, "USD"),
        ("EUR 7.5", 7.5, "EUR"),
        ("0", 0.0, "CAD"),
        (".99", 0.99, "CAD"),
        ("1299.00 JPY", 1299.0, "JPY"),
    ],
)
def test_gmc_price_formats(raw: str, price: float, currency: str) -> None:
    catalog = parse_feed(tsv(("A", "t", "https://s.example.com/a", raw)), currency="CAD").require_catalog()
    assert catalog.numeric["price"] == [price]
    assert catalog.text["currency"] == [currency]


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("in_stock", "in_stock"), ("in stock", "in_stock"), ("In Stock", "in_stock"), ("out_of_stock", "out_of_stock"),
     ("out of stock", "out_of_stock"), ("preorder", "preorder"), ("pre-order", "preorder"),
     ("backorder", "backorder"), ("", "in_stock")],
)
def test_availability_is_normalized(raw: str, normal: str) -> None:
    header = (*HEADER, "availability")
    catalog = parse_feed(tsv((*good_row(1), raw), header=header)).require_catalog()
    assert catalog.text["availability"] == [normal]


def test_sale_price_above_price_is_kept() -> None:
    header = (*HEADER, "sale_price")
    catalog = parse_feed(tsv(("A", "t", "https://s.example.com/a", "10 USD", "12 USD"), header=header)).require_catalog()
    assert catalog.numeric["sale_price"] == [12.0]


def test_products_keep_feed_order_after_rejections() -> None:
    rows = [good_row(i) for i in range(60)]
    rows[10] = ("P10", "", "https://s.example.com/x", "1")
    catalog = parse_feed(tsv(*rows)).require_catalog()
    assert catalog.ids == [f"P{i}" for i in range(60) if i != 10]
    assert catalog.numeric["price"][10] == 21.0


# ---------------------------------------------------------------------------------------------------- formats


def test_csv_detected_when_header_has_commas_and_no_tab() -> None:
    data = b"id,title,link,price\nA1,Mug,https://s.example.com/a,2.50 USD\n"
    catalog = parse_feed(data).require_catalog()
    assert catalog.ids == ["A1"] and catalog.numeric["price"] == [2.5]


def test_header_with_a_tab_stays_tsv_even_with_commas() -> None:
    data = b"id\ttitle\tlink\tprice\tshipping_country\nA1\tMug, big\thttps://s.example.com/a\t1\tUS,CA\n"
    catalog = parse_feed(data).require_catalog()
    assert catalog.text["title"] == ["Mug, big"] and catalog.multi["country"] == [("US", "CA")]


def test_quoted_fields_hold_delimiters_quotes_and_newlines() -> None:
    result = parse_feed((FIXTURES / "gmc_quoted.csv").read_bytes())
    catalog = result.require_catalog()
    assert catalog.text["title"] == ["Mug, large", 'Tea "Gold" blend']
    assert catalog.text["description"] == ["Holds 12 oz.\tDishwasher safe", "Two\nlines"]
    assert catalog.text["category"] == ["kitchenware", ""]  # the product_type column wins, per column, not per row
    assert catalog.text["google_product_category"] == ["Home > Kitchen", "Food"]
    assert catalog.multi["country"] == [("US", "CA"), ()]
    assert catalog.numeric["price"] == [15.0, 9.99]
    assert catalog.text["availability"] == ["in_stock", "preorder"]


def test_quoted_tsv_field_with_tab() -> None:
    data = b'id\ttitle\tlink\tprice\nA1\t"Mug\twith tab"\thttps://s.example.com/a\t1\n'
    assert parse_feed(data).require_catalog().text["title"] == ["Mug\twith tab"]


def test_bom_and_crlf() -> None:
    catalog = parse_feed((FIXTURES / "bom_crlf.tsv").read_bytes()).require_catalog()
    assert catalog.ids == ["P1", "P2"]
    assert catalog.numeric["price"] == [11.0, 12.0]


def test_blank_lines_are_ignored_and_rows_keep_physical_numbers() -> None:
    data = b"\n\nid\ttitle\tlink\tprice\n\nA\t\thttps://s.example.com/a\t1\n\n\n"
    result = parse_feed(data, FeedSpec(max_bad_share=1.0))
    assert result.report.rows == 1
    assert result.report.errors == [FeedIssue(5, "title", "missing_title", "the title is empty")]


def test_multiline_record_reports_the_line_it_starts_on() -> None:
    data = b'id,title,link,price\nA,"two\nlines",https://s.example.com/a,1\nB,,https://s.example.com/b,1\n'
    result = parse_feed(data, FeedSpec(max_bad_share=1.0))
    assert [(e.row, e.code) for e in result.report.errors] == [(4, "missing_title")]


def test_trailing_empty_fields_are_tolerated() -> None:
    data = b"id\ttitle\tlink\tprice\nA\tt\thttps://s.example.com/a\t1\t\t\n"
    assert parse_feed(data).report.accepted == 1


# ---------------------------------------------------------------------------------------------------- row errors


def test_wrong_column_count() -> None:
    issue = only_issue(parse_feed(padded(("A", "t", "https://s.example.com/a"))))
    assert (issue.row, issue.column, issue.code) == (2, None, "wrong_column_count")


def test_bad_utf8_line_is_skipped_not_the_file() -> None:
    result = parse_feed((FIXTURES / "one_bad_utf8_line.tsv").read_bytes())
    issue = only_issue(result)
    assert (issue.row, issue.column, issue.code) == (9, "title", "bad_utf8")
    assert result.report.accepted == 39 and "P7" not in result.require_catalog().ids


def test_missing_id() -> None:
    issue = only_issue(parse_feed(padded(("", "t", "https://s.example.com/a", "1"))))
    assert (issue.row, issue.column, issue.code) == (2, "id", "missing_id")


def test_duplicate_id_rejects_the_second_occurrence() -> None:
    rows = [good_row(i) for i in range(50)]
    rows.append(("P3", "Again", "https://s.example.com/again", "1"))
    result = parse_feed(tsv(*rows))
    issue = only_issue(result)
    assert (issue.row, issue.column, issue.code) == (52, "id", "duplicate_id")
    catalog = result.require_catalog()
    assert catalog.ids.count("P3") == 1 and catalog.text["title"][3] == "Product 3"


def test_duplicate_of_a_rejected_row_is_kept() -> None:
    rows = [good_row(i) for i in range(50)]
    rows[0] = ("P0", "", "https://s.example.com/p0", "1")
    rows.append(("P0", "Fixed", "https://s.example.com/p0", "1"))
    result = parse_feed(tsv(*rows))
    assert [e.code for e in result.report.errors] == ["missing_title"]
    assert result.require_catalog().ids[-1] == "P0"


def test_missing_title() -> None:
    issue = only_issue(parse_feed(padded(("A", "  ", "https://s.example.com/a", "1"))))
    assert (issue.row, issue.column, issue.code) == (2, "title", "missing_title")


@pytest.mark.parametrize("raw", ["abc", "-1.00 USD", "nan", "NaN USD", "inf", "1e999", "9" * 400, "1,299.00 USD", ""])
def test_bad_price(raw: str) -> None:
    issue = only_issue(parse_feed(padded(("A", "t", "https://s.example.com/a", raw))))
    assert (issue.row, issue.column, issue.code) == (2, "price", "bad_price")


def test_bad_sale_price() -> None:
    header = (*HEADER, "sale_price")
    issue = only_issue(parse_feed(padded(("A", "t", "https://s.example.com/a", "5", "-2 USD"), header=header)))
    assert (issue.row, issue.column, issue.code) == (2, "sale_price", "bad_price")


@pytest.mark.parametrize("raw", ["15.00 US", "15.00 DOLLARS", "$15.00", "15.00 €"])
def test_bad_currency(raw: str) -> None:
    issue = only_issue(parse_feed(padded(("A", "t", "https://s.example.com/a", raw))))
    assert (issue.row, issue.column, issue.code) == (2, "price", "bad_currency")


def test_sale_price_in_another_currency_is_bad_currency() -> None:
    header = (*HEADER, "sale_price")
    issue = only_issue(parse_feed(padded(("A", "t", "https://s.example.com/a", "5 USD", "4 EUR"), header=header)))
    assert (issue.row, issue.column, issue.code) == (2, "sale_price", "bad_currency")


@pytest.mark.parametrize(
    "raw",
    ["ftp://s.example.com/a", "javascript:alert(1)", "/relative/path", "https://", "https:///nohost",
     "https://s.example.com/a b", "https://s.example.com/\x01", "http://[::1/x", "", "www.example.com"],
)
def test_bad_url_link(raw: str) -> None:
    issue = only_issue(parse_feed(padded(("A", "t", raw, "1"))))
    assert (issue.row, issue.column, issue.code) == (2, "link", "bad_url")


@pytest.mark.parametrize("raw", ["HTTPS://S.EXAMPLE.COM/A", "https://xn--caf-dma.example/é", "http://[::1]:8080/x"])
def test_unusual_but_valid_urls_pass(raw: str) -> None:
    assert parse_feed(padded(("A", "t", raw, "1"))).report.errors == []


def test_bad_image_links() -> None:
    header = (*HEADER, "image_link", "additional_image_link")
    bad_image = ("A", "t", "https://s.example.com/a", "1", "data:image/png;base64,xx", "")
    issue = only_issue(parse_feed(padded(bad_image, header=header)))
    assert (issue.row, issue.column, issue.code) == (2, "image_link", "bad_url")
    bad_extra = ("A", "t", "https://s.example.com/a", "1", "", "https://c.example.com/1.jpg,ftp://c.example.com/2")
    issue = only_issue(parse_feed(padded(bad_extra, header=header)))
    assert (issue.row, issue.column, issue.code) == (2, "additional_image_link", "bad_url")


def test_field_too_long() -> None:
    header = (*HEADER, "description")
    spec = FeedSpec(max_field_bytes=100)
    fits = ("B", "t", "https://s.example.com/b", "1", "é" * 50)  # 100 bytes
    too_long = ("A", "t", "https://s.example.com/a", "1", "é" * 51)  # 102 bytes
    result = parse_feed(padded(too_long, header=header) + tsv(fits, header=()).lstrip(b"\n"), spec)
    issue = only_issue(result)
    assert (issue.row, issue.column, issue.code) == (2, "description", "field_too_long")
    assert "B" in result.require_catalog().ids


def test_bad_availability() -> None:
    header = (*HEADER, "availability")
    issue = only_issue(parse_feed(padded(("A", "t", "https://s.example.com/a", "1", "maybe"), header=header)))
    assert (issue.row, issue.column, issue.code) == (2, "availability", "bad_availability")


def test_bad_country() -> None:
    header = (*HEADER, "country")
    issue = only_issue(parse_feed(padded(("A", "t", "https://s.example.com/a", "1", "USA"), header=header)))
    assert (issue.row, issue.column, issue.code) == (2, "country", "bad_country")


def test_every_problem_of_a_row_is_reported_once_and_the_row_counted_once() -> None:
    result = parse_feed(padded(("A", "", "ftp://x", "free")))
    assert [(e.column, e.code) for e in result.report.errors] == [
        ("title", "missing_title"), ("link", "bad_url"), ("price", "bad_price"),
    ]
    assert (result.report.rows, result.report.accepted, result.report.rejected) == (100, 99, 1)


def test_max_errors_caps_the_list_but_not_the_counts() -> None:
    rows = [("", f"t{i}", "https://s.example.com/a", "1") for i in range(30)]
    result = parse_feed(tsv(*rows), FeedSpec(max_bad_share=1.0), max_errors=5)
    assert len(result.report.errors) == 5 and result.report.rejected == 30


# ---------------------------------------------------------------------------------------------------- whole file


def test_binary_file_is_undecodable() -> None:
    result = parse_feed((FIXTURES / "binary.bin").read_bytes())
    assert result.catalog is None and result.report.fatal == "undecodable_file"
    assert result.report.errors[0].code == "undecodable_file"


def test_utf16_file_is_undecodable() -> None:
    result = parse_feed((FIXTURES / "utf16.tsv").read_bytes())
    assert result.report.fatal == "undecodable_file" and "UTF-16" in result.report.errors[0].message


def test_latin1_file_is_undecodable() -> None:
    result = parse_feed((FIXTURES / "latin1.tsv").read_bytes())
    assert (result.report.publishable, result.report.fatal) == (False, "undecodable_file")
    assert result.report.rows == 20
    assert {e.code for e in result.report.errors[1:]} == {"bad_utf8"}


def test_missing_required_header() -> None:
    result = parse_feed((FIXTURES / "missing_price_header.tsv").read_bytes())
    assert result.catalog is None
    assert result.report.fatal == "missing_header"
    assert result.report.errors == [
        FeedIssue(1, "price", "missing_header", "required column 'price' is missing from the header"),
    ]
    with pytest.raises(FeedError) as info:
        result.require_catalog()
    assert info.value.report is result.report


def test_duplicate_header_is_fatal() -> None:
    result = parse_feed(b"id\ttitle\tlink\tprice\tTitle\nA\tt\thttps://s.example.com/a\t1\tu\n")
    assert result.report.fatal == "duplicate_header"


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\xef\xbb\xbf", b"id\ttitle\tlink\tprice\n", b"id\ttitle\tlink\tprice\n\n \n"])
def test_empty_feed(data: bytes) -> None:
    result = parse_feed(data)
    assert result.catalog is None and result.report.fatal == "empty_feed"


def bad_share_feed(bad: int, total: int = 100) -> bytes:
    rows = [good_row(i) for i in range(total)]
    for i in range(bad):
        rows[i * 7] = (f"P{i * 7}", "", "https://s.example.com/x", "1")
    return tsv(*rows)


def test_ten_percent_bad_rows_publish_nothing() -> None:
    result = parse_feed(bad_share_feed(10))
    report = result.report
    assert result.catalog is None
    assert (report.rows, report.accepted, report.rejected, report.publishable) == (100, 90, 10, False)
    assert report.fatal == "too_many_bad_rows"
    assert report.errors[0].code == "too_many_bad_rows" and len(report.errors) == 11


def test_three_percent_bad_rows_publish_the_rest() -> None:
    result = parse_feed(bad_share_feed(3))
    assert (result.report.rows, result.report.accepted, result.report.rejected) == (100, 97, 3)
    assert result.report.publishable and len(result.require_catalog()) == 97


def test_threshold_is_exclusive_and_configurable() -> None:
    assert parse_feed(bad_share_feed(5)).report.publishable  # 5% is not over 5%
    assert not parse_feed(bad_share_feed(3), FeedSpec(max_bad_share=0.02)).report.publishable


def test_runaway_quote_counts_every_swallowed_line() -> None:
    rows = "".join(f"P{i},t,https://s.example.com/{i},1\n" for i in range(50))
    data = b'id,title,link,price\nA,"unbalanced,https://s.example.com/a,1\n' + rows.encode()
    result = parse_feed(data)
    assert result.report.fatal == "too_many_bad_rows"
    assert result.report.errors[1].code == "wrong_column_count"


def test_report_to_dict_shape() -> None:
    report = parse_feed(padded(("", "t", "https://s.example.com/a", "1"))).report.to_dict()
    assert list(report) == ["rows", "accepted", "rejected", "errors", "publishable", "fatal"]
    assert report["errors"] == [{"row": 2, "column": "id", "code": "missing_id", "message": "the id is empty"}]


# ---------------------------------------------------------------------------------------------------- properties

_CELL = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", '"', '""', "\t", ",", "\r\n", "https://s.example.com/a", "1.00 USD", "-1",
                     "in stock", "US,CA", "\udc80", "\x00"]),
)


def _check_invariants(result: FeedResult) -> None:
    report = result.report
    assert report.fatal != "internal_error", report.errors
    assert report.accepted + report.rejected == report.rows
    assert report.accepted >= 0 and report.rejected >= 0
    assert report.publishable == (report.fatal is None) == (result.catalog is not None)
    if result.catalog is not None:
        catalog = result.catalog
        assert len(catalog) == report.accepted
        for columns in (catalog.text, catalog.numeric, catalog.multi):
            assert all(len(values) == len(catalog) for values in columns.values())
        assert len(set(catalog.ids)) == len(catalog.ids)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    _check_invariants(parse_feed(data))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["\t", ","]),
    st.lists(st.lists(_CELL, min_size=0, max_size=6), max_size=12),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
)
def test_never_raises_on_header_plus_random_rows(
    delimiter: str, rows: list[list[str]], newline: str, extra_columns: bool
) -> None:
    header = ["id", "title", "link", "price"] + (["sale_price", "availability", "country"] if extra_columns else [])
    text = delimiter.join(header) + newline + "".join(delimiter.join(row) + newline for row in rows)
    data = text.encode("utf-8", "surrogateescape")
    result = parse_feed(data, FeedSpec(max_bad_share=1.0), max_errors=3)
    _check_invariants(result)
    assert len(result.report.errors) <= 3


# ---------------------------------------------------------------------------------------------------- example feed


def test_retail_generator_is_deterministic_and_valid() -> None:
    data = generate_retail_feed(400, seed=3)
    assert data == generate_retail_feed(400, seed=3)
    assert data != generate_retail_feed(400, seed=4)
    result = parse_feed(data)
    catalog = result.require_catalog()
    assert result.report.errors == [] and len(catalog) == 400
    assert set(catalog.text["category"]) <= set(RETAIL_CATEGORIES)
    assert set(catalog.text["custom_label_0"]) <= {"", *RETAIL_REGIONS}
    assert 0.2 < sum(1 for r in catalog.text["custom_label_0"] if r) / 400 < 0.4
    assert set(catalog.multi["country"]) == {("US",), ("US", "CA")}
    assert len(RETAIL_CATEGORIES) == len(set(RETAIL_CATEGORIES)) == 40 and len(RETAIL_REGIONS) == 6


def test_committed_retail_feed_matches_the_generator() -> None:
    committed = (ROOT / "examples" / "retail" / "feed.tsv").read_bytes()
    assert committed == generate_retail_feed(3000, seed=7)
    assert parse_feed(committed).report.accepted == 3000


# ------------------------------------------------------------------------------------- split paths agree


@pytest.mark.parametrize("space", [" ", "\x0b", "\x0c", "\x1c", "\x1f", "  \t"])
@pytest.mark.parametrize("ascii_only", [True, False])
def test_whitespace_around_fields_is_stripped_on_every_split_path(space: str, ascii_only: bool) -> None:
    # GIVEN whitespace at the edges of some fields; a non-ASCII title elsewhere sends the file down the
    # line-by-line split instead of the vectorised one, which must give the same catalog
    rows = [good_row(i) for i in range(6)]
    rows[2] = (f"{space}P2", f"Product 2{space}", f"{space}https://shop.example.com/p2", f"{space}12.00 USD{space}")
    if not ascii_only:
        rows[4] = ("P4", "Prodüct 4", "https://shop.example.com/p4", "14.00 USD")
    data = tsv(*rows) if "\t" not in space else ",".join(HEADER).encode() + b"\n" + b"".join(
        ",".join(row).encode() + b"\n" for row in rows)
    result = parse_feed(data)
    assert result.report.errors == [] and result.catalog is not None
    catalog = result.catalog
    assert catalog.ids[2] == "P2" and catalog.text["title"][2] == "Product 2"
    assert catalog.text["link"][2] == "https://shop.example.com/p2" and catalog.numeric["price"][2] == 12.0
    assert catalog.ids == [f"P{i}" for i in range(6)]


def test_additional_image_links_split_on_commas_and_spaces() -> None:
    header = (*HEADER, "additional_image_link")
    rows = [(*good_row(0), "https://c.example/1.jpg,https://c.example/2.jpg https://c.example/3.jpg"),
            (*good_row(1), ""), (*good_row(2), "https://c.example/4.jpg, https://c.example/5.jpg")]
    catalog = parse_feed(tsv(*rows, header=header)).require_catalog()
    assert catalog.multi["additional_image_link"] == [
        ("https://c.example/1.jpg", "https://c.example/2.jpg", "https://c.example/3.jpg"),
        (),
        ("https://c.example/4.jpg", "https://c.example/5.jpg"),
    ]


@pytest.mark.parametrize("position", [0, 50, 99])
@pytest.mark.parametrize("raw", ["https://", "http://?q=1", "https:///x", "https://#top", "https://a b", "mailto:x"])
def test_one_bad_url_anywhere_in_a_column_is_found(position: int, raw: str) -> None:
    # the whole-column check must not let a bad URL through at the first, a middle or the last row
    rows = [good_row(i) for i in range(100)]
    rows[position] = (f"P{position}", "t", raw, "1")
    issue = only_issue(parse_feed(tsv(*rows)))
    assert (issue.row, issue.column, issue.code) == (position + 2, "link", "bad_url")


def test_mixed_currencies_keep_each_rows_currency() -> None:
    rows = [("A", "t", "https://s.example/a", "1.00 USD"), ("B", "t", "https://s.example/b", "2.00 EUR"),
            ("C", "t", "https://s.example/c", "3.00")]
    catalog = parse_feed(tsv(*rows), currency="GBP").require_catalog()
    assert catalog.text["currency"] == ["USD", "EUR", "GBP"]
