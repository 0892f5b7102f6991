"""Ingestion: adapters, contracts, quarantine, idempotency and every kind of bad input."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import duckdb
import pytest

from tasks.ingest.landing import IngestError, find_day_files
from tasks.ingest.load import BadShareError, ingest_file, ingest_landing
from tasks.store import connect

RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
RETAIL_ROWS = [
    "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
    "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom",
    "C536379,85123A,WHITE HANGING HEART,-1,2010-12-01 09:41:00,2.55,14527.0,United Kingdom",
    "536380,22423,REGENCY CAKESTAND,2,2010-12-01 09:45:00,12.75,,United Kingdom",
    "536381,POST,POSTAGE,1,2010-12-01 09:50:00,18.00,12583.0,France",
    "536382,22423,REGENCY CAKESTAND,0,2010-12-01 09:55:00,12.75,12583.0,France",
    "536383,22424,FREE SAMPLE,1,2010-12-01 10:00:00,0.0,12583.0,France",
    "536384,22425,TEA SET,abc,2010-12-01 10:05:00,4.95,12583.0,France",
    "536385,22426,TEA CUP,1,not a date,4.95,12583.0,France",
    "536386,22427,SAUCER,3,2010-12-01 10:15:00,1.25,12583.0,France",
]
CANONICAL_HEADER = "user_id,item_id,event_type,ts,quantity,price,order_id,session_id"


def write(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_online_retail_rows_are_loaded_quarantined_or_filtered_with_reasons(home: Path) -> None:
    path = write(home / "landing" / "2010-12-01.csv", RETAIL_HEADER, RETAIL_ROWS)
    with connect(home / "db.duckdb") as con:
        result = ingest_file(con, "online-retail", path, max_bad_share=0.5)
        events = con.execute(
            "select user_id, item_id, quantity, price, order_id from events order by item_id"
        ).fetchall()
        quarantine = con.execute("select row_number, reason from quarantine order by 1").fetchall()
        catalog = con.execute("select item_id, title, category from catalog order by 1").fetchall()

    assert result.status == "loaded"
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined, result.rows_filtered) == (
        10,
        3,
        2,
        5,
    )
    assert result.filtered_reasons == {
        "cancellation": 1,
        "non_positive_price": 1,
        "non_positive_quantity": 1,
        "non_product_code": 1,
        "unknown_customer": 1,
    }
    # CustomerID "17850.0" becomes "17850"; cancellations, postage, unknown customers are out.
    assert events == [
        ("12583", "22427", 3, 1.25, "536386"),
        ("17850", "71053", 6, 3.39, "536365"),
        ("17850", "85123A", 6, 2.55, "536365"),
    ]
    assert quarantine == [(8, "not_an_integer:Quantity"), (9, "unparseable:InvoiceDate")]
    assert catalog[0] == ("22427", "SAUCER", "224")


def test_quarantine_keeps_the_raw_row(home: Path) -> None:
    path = write(home / "2010-12-01.csv", RETAIL_HEADER, RETAIL_ROWS)
    with connect(home / "db.duckdb") as con:
        ingest_file(con, "online-retail", path, max_bad_share=0.5)
        (payload,) = con.execute("select payload from quarantine where row_number = 8").fetchone()
    assert json.loads(payload)["Quantity"] == "abc"


def test_canonical_contract_violations_are_quarantined_by_expectation(home: Path) -> None:
    rows = [
        "u1,i1,view,2026-01-05 10:00:00,1,2.0,,s1",
        "u1,i1,purchase,2026-01-05 10:05:00,2,2.0,o1,s1",
        ",i2,view,2026-01-05 11:00:00,1,3.0,,s2",  # missing user
        "u2,i2,click,2026-01-05 11:00:00,1,3.0,,s2",  # unknown event type
        "u2,i2,cart,2026-01-05 11:00:00,1,-3.0,,s2",  # negative price
        "u2,i3,view,2026-01-06 00:30:00,1,3.0,,s3",  # belongs to another day
    ]
    path = write(home / "2026-01-05.csv", CANONICAL_HEADER, rows)
    with connect(home / "db.duckdb") as con:
        result = ingest_file(con, "canonical", path, max_bad_share=1.0)
        reasons = con.execute("select row_number, reason from quarantine order by 1").fetchall()
    assert result.rows_loaded == 2
    assert reasons == [
        (3, "contract:expect_column_values_to_not_be_null:user_id"),
        (4, "contract:expect_column_values_to_be_in_set:event_type"),
        (5, "contract:expect_column_values_to_be_between:price"),
        (6, "contract:expect_column_values_to_be_between:ts"),
    ]


def test_bad_share_above_threshold_rejects_the_file_and_loads_nothing(home: Path) -> None:
    path = write(home / "2010-12-01.csv", RETAIL_HEADER, RETAIL_ROWS)
    with connect(home / "db.duckdb") as con:
        with pytest.raises(BadShareError, match=r"20\.0% of 10 rows broke the contract"):
            ingest_file(con, "online-retail", path, max_bad_share=0.1)
        assert con.execute("select count(*) from events").fetchone() == (0,)
        assert con.execute("select status from ingestions").fetchone() == ("rejected",)
        assert con.execute("select count(*) from quarantine").fetchone() == (2,)


def test_missing_required_column_is_one_line_naming_file_and_column(home: Path) -> None:
    header = RETAIL_HEADER.replace(",CustomerID", "")
    rows = [",".join(r.split(",")[:6] + r.split(",")[7:]) for r in RETAIL_ROWS[:2]]
    path = write(home / "2010-12-01.csv", header, rows)
    with connect(home / "db.duckdb") as con, pytest.raises(IngestError) as info:
        ingest_file(con, "online-retail", path, max_bad_share=0.5)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "missing required column(s) CustomerID" in message


def test_empty_file_is_an_error(home: Path) -> None:
    path = home / "2010-12-01.csv"
    path.write_text("")
    with connect(home / "db.duckdb") as con, pytest.raises(IngestError, match="file is empty"):
        ingest_file(con, "online-retail", path, max_bad_share=0.5)


def test_same_file_twice_is_a_no_op(home: Path) -> None:
    path = write(home / "2010-12-01.csv", RETAIL_HEADER, RETAIL_ROWS[:2])
    with connect(home / "db.duckdb") as con:
        first = ingest_file(con, "online-retail", path, max_bad_share=0.5)
        second = ingest_file(con, "online-retail", path, max_bad_share=0.5)
        count = con.execute("select count(*) from events").fetchone()
    assert (first.status, second.status) == ("loaded", "unchanged")
    assert count == (2,)


def test_other_file_for_a_loaded_day_is_refused_unless_replace(home: Path) -> None:
    first = write(home / "a" / "2010-12-01.csv", RETAIL_HEADER, RETAIL_ROWS[:2])
    second = write(home / "b" / "2010-12-01.csv", RETAIL_HEADER, RETAIL_ROWS[:1])
    with connect(home / "db.duckdb") as con:
        ingest_file(con, "online-retail", first, max_bad_share=0.5)
        with pytest.raises(IngestError, match=r"already loaded from .* pass --replace"):
            ingest_file(con, "online-retail", second, max_bad_share=0.5)
        assert con.execute("select count(*) from events").fetchone() == (2,)
        result = ingest_file(con, "online-retail", second, max_bad_share=0.5, replace=True)
        assert result.status == "replaced"
        assert con.execute("select count(*) from events").fetchone() == (1,)


def test_gzip_and_latin1_files_are_read(home: Path) -> None:
    text = "\n".join([RETAIL_HEADER, RETAIL_ROWS[0].replace("WHITE", "CAFÉ")]) + "\n"
    path = home / "2010-12-01.csv.gz"
    path.write_bytes(gzip.compress(text.encode("latin-1")))
    with connect(home / "db.duckdb") as con:
        result = ingest_file(con, "online-retail", path, max_bad_share=0.5)
        (title,) = con.execute("select title from catalog").fetchone()
    assert result.rows_loaded == 1
    assert title == "CAFÉ HANGING HEART"


def test_unknown_source_and_bad_file_names(home: Path) -> None:
    write(home / "landing" / "2010-12-01.csv", RETAIL_HEADER, RETAIL_ROWS[:1])
    with pytest.raises(IngestError, match="unknown source 'nope'"):
        ingest_landing(home / "db.duckdb", "nope", home / "landing", max_bad_share=0.1)
    with pytest.raises(IngestError, match="no such file or folder"):
        find_day_files(home / "missing")
    with connect(home / "db.duckdb") as con, pytest.raises(IngestError, match="name must be"):
        ingest_file(
            con, "online-retail", write(home / "dec1.csv", RETAIL_HEADER, []), max_bad_share=1
        )


def test_landing_range_is_ingested_in_day_order(home: Path) -> None:
    landing = home / "landing"
    for day in ("2010-12-03", "2010-12-01", "2010-12-02"):
        row = RETAIL_ROWS[0].replace("2010-12-01", day)
        write(landing / f"{day}.csv", RETAIL_HEADER, [row])
    results = ingest_landing(
        home / "db.duckdb",
        "online-retail",
        landing,
        max_bad_share=0.1,
        start=dt.date(2010, 12, 2),
    )
    assert [r.day for r in results] == [dt.date(2010, 12, 2), dt.date(2010, 12, 3)]
    con = duckdb.connect(str(home / "db.duckdb"), read_only=True)
    assert con.execute("select count(*) from ingestions").fetchone() == (2,)
    con.close()
