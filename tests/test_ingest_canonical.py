"""A real shop's canonical export: catalog files, a catalog derived from events, null prices
and quantities, returns, timestamp forms, a column mapping, and ingests that load nothing."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tasks.ingest.landing import IngestError, NothingToIngest
from tasks.ingest.load import ingest_catalog_file, ingest_file, ingest_landing
from tasks.store import connect

HEADER = "user_id,item_id,event_type,ts,quantity,price"
D1, D2 = dt.datetime(2024, 3, 5), dt.datetime(2024, 3, 6)


def write(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def at(day: dt.datetime, hh: int, mm: int = 0) -> dt.datetime:
    return day.replace(hour=hh, minute=mm)


def nightrec(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )


def two_days(landing: Path) -> None:
    """Day 1: i1 twice (priced, then unpriced), i2 unpriced; day 2: i1 at a new price, i3."""
    write(
        landing / "2024-03-05.csv",
        HEADER,
        [
            "u1,i1,purchase,2024-03-05 09:00:00,1,2.0",
            "u2,i1,view,2024-03-05 10:00:00,1,",
            "u1,i2,view,2024-03-05 11:30:00,1,",
        ],
    )
    write(
        landing / "2024-03-06.csv",
        HEADER,
        [
            "u2,i1,purchase,2024-03-06 08:00:00,2,2.5",
            "u3,i3,purchase,2024-03-06 12:00:00,1,7.0",
        ],
    )


CATALOG_SQL = (
    "select item_id, title, category, brand, price, first_seen, last_seen, origin "
    "from catalog order by item_id"
)


# --- catalog ---------------------------------------------------------------------------------


def test_catalog_csv_beside_the_days_is_loaded_once(home: Path) -> None:
    landing = home / "landing"
    two_days(landing)
    write(
        landing / "catalog.csv",
        "item_id,title,category,brand,price",
        ["i1,Milk 1l,dairy,Acme,2.2", "i3,Rye bread,bakery,,", "i9,Salt,pantry,Sal,0.8"],
    )
    db = home / "db.duckdb"
    results = ingest_landing(db, "canonical", landing, max_bad_share=0.0)

    assert [r.status for r in results] == ["loaded", "loaded"]
    # The file's items, values as in the file; events only widen first/last seen and fill a
    # price the file left empty (i3). i2 is not in the catalog file: it is left out.
    assert query(db, CATALOG_SQL) == [
        ("i1", "Milk 1l", "dairy", "Acme", 2.2, at(D1, 9), at(D2, 8), "file"),
        ("i3", "Rye bread", "bakery", None, 7.0, at(D2, 12), at(D2, 12), "file"),
        ("i9", "Salt", "pantry", "Sal", 0.8, None, None, "file"),
    ]
    ((path, status, rows_in, rows_loaded, skipped),) = query(
        db,
        "select source_file, status, rows_in, rows_loaded, skipped_reasons from catalog_ingestions",
    )
    assert (Path(path).name, status, rows_in, rows_loaded, json.loads(skipped)) == (
        "catalog.csv",
        "loaded",
        3,
        3,
        {},
    )
    stamps = query(db, "select item_id, updated_at from catalog order by 1")

    again = ingest_landing(db, "canonical", landing, max_bad_share=0.0)
    assert [r.status for r in again] == ["unchanged", "unchanged"]
    with connect(db) as con:
        assert ingest_catalog_file(con, landing / "catalog.csv").status == "unchanged"
    assert query(db, "select item_id, updated_at from catalog order by 1") == stamps


@pytest.mark.parametrize("layout", ["csv.gz in the folder", "parquet beside events/", "jsonl"])
def test_catalog_formats_and_places(home: Path, layout: str) -> None:
    landing = home / "shop"
    days = landing / "events" if "events" in layout else landing
    two_days(days)
    frame = pl.DataFrame({"item_id": ["i1", "i2", "i3"], "title": ["Milk", "Eggs", "Rye"]})
    if layout.startswith("csv.gz"):
        (landing / "catalog.csv.gz").write_bytes(gzip.compress(frame.write_csv().encode()))
    elif layout.startswith("parquet"):
        frame.write_parquet(landing / "catalog.parquet")
    else:
        frame.write_ndjson(landing / "catalog.jsonl")
    db = home / "db.duckdb"
    # The landing path may be the shop folder or its events/ subfolder.
    ingest_landing(db, "canonical", days, max_bad_share=0.0)
    assert query(db, "select item_id, title, category, price from catalog order by 1") == [
        ("i1", "Milk", None, 2.5),  # no price in the file: the last price seen in events
        ("i2", "Eggs", None, None),  # never priced
        ("i3", "Rye", None, 7.0),
    ]


def test_catalog_file_rows_are_checked(home: Path) -> None:
    path = write(home / "catalog.csv", "title,price", ["Milk,2.0"])
    with connect(home / "db.duckdb") as con, pytest.raises(IngestError) as info:
        ingest_catalog_file(con, path)
    assert str(info.value) == (
        f"{path}: missing required column item_id for a catalog file (found: title, price)"
    )
    path = write(
        home / "catalog2.csv",
        "item_id,title,price",
        ["i1,Milk,2.0", ",Nameless,1.0", "i2,Eggs,cheap", "i1,Milk 1l,2.1"],
    )
    with connect(home / "db.duckdb") as con:
        result = ingest_catalog_file(con, path)
        rows = con.execute("select item_id, title, price from catalog order by 1").fetchall()
    assert (result.rows_in, result.rows_loaded) == (4, 2)
    assert result.skipped_reasons == {
        "duplicate:item_id (last row kept)": 1,
        "missing:item_id": 1,
        "not_a_number:price (price left null)": 1,
    }
    assert rows == [("i1", "Milk 1l", 2.1), ("i2", "Eggs", None)]


def test_catalog_derived_from_events_without_a_catalog_file(home: Path) -> None:
    landing = home / "landing"
    two_days(landing)
    db = home / "db.duckdb"
    ingest_landing(db, "canonical", landing, max_bad_share=0.0)
    # Every item seen: first/last seen over both days, the last price seen (null if none).
    assert query(db, CATALOG_SQL) == [
        ("i1", None, None, None, 2.5, at(D1, 9), at(D2, 8), "events"),
        ("i2", None, None, None, None, at(D1, 11, 30), at(D1, 11, 30), "events"),
        ("i3", None, None, None, 7.0, at(D2, 12), at(D2, 12), "events"),
    ]


def test_a_late_day_does_not_overwrite_a_newer_price_and_a_file_wins(home: Path) -> None:
    landing = home / "landing"
    two_days(landing)
    db = home / "db.duckdb"
    with connect(db) as con:
        ingest_file(con, "canonical", landing / "2024-03-06.csv", max_bad_share=0.0)
        ingest_file(con, "canonical", landing / "2024-03-05.csv", max_bad_share=0.0)  # late
        late = con.execute(
            "select price, first_seen, last_seen from catalog where item_id = 'i1'"
        ).fetchone()
        assert late == (2.5, at(D1, 9), at(D2, 8))
        catalog = write(home / "catalog.csv", "item_id,title,price", ["i1,Milk,1.9"])
        ingest_catalog_file(con, catalog)
        # A day loaded after the file still leaves the file's values alone.
        write(landing / "2024-03-07.csv", HEADER, ["u1,i1,purchase,2024-03-07 09:00:00,1,3.0"])
        ingest_file(con, "canonical", landing / "2024-03-07.csv", max_bad_share=0.0)
        row = con.execute(
            "select title, price, last_seen, origin from catalog where item_id = 'i1'"
        ).fetchone()
    assert row == ("Milk", 1.9, dt.datetime(2024, 3, 7, 9), "file")


def test_category_and_title_columns_of_the_events_feed_the_derived_catalog(home: Path) -> None:
    path = write(
        home / "2024-03-05.csv",
        HEADER + ",category,title",
        [
            "u1,i1,purchase,2024-03-05 09:00:00,1,2.0,dairy,Milk",
            "u2,i2,view,2024-03-05 10:00:00,1,1.0,,",
        ],
    )
    with connect(home / "db.duckdb") as con:
        result = ingest_file(con, "canonical", path, max_bad_share=0.0)
        rows = con.execute("select item_id, title, category from catalog order by 1").fetchall()
    assert result.ignored_columns == []
    assert rows == [("i1", "Milk", "dairy"), ("i2", None, None)]


def test_cli_ingest_loads_the_catalog_beside_the_days(home: Path) -> None:
    landing = home / "landing"
    two_days(landing)
    write(landing / "catalog.csv", "item_id,title", ["i1,Milk", "i2,Eggs", "i3,Rye"])
    result = nightrec("ingest", "--source", "canonical", "--path", str(landing), home=home)
    assert result.returncode == 0, result.stderr
    assert query(home / "nightrec.duckdb", "select item_id, title from catalog order by 1") == [
        ("i1", "Milk"),
        ("i2", "Eggs"),
        ("i3", "Rye"),
    ]


# --- canonical defaults, returns, timestamps ------------------------------------------------


def test_an_export_without_price_or_quantity_loads_with_counted_defaults(home: Path) -> None:
    path = write(
        home / "2024-03-05.csv",
        "user_id,item_id,event_type,ts",
        ["u1,i1,purchase,2024-03-05 09:00:00", "u2,i2,view,2024-03-05 10:00:00"],
    )
    with connect(home / "db.duckdb") as con:
        result = ingest_file(con, "canonical", path, max_bad_share=0.0)
        events = con.execute("select item_id, quantity, price from events order by 1").fetchall()
        (stored,) = con.execute("select defaulted_reasons from ingestions").fetchone()
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined) == (2, 2, 0)
    assert result.defaulted_reasons == {"defaulted:quantity": 2, "missing:price": 2}
    assert json.loads(stored) == result.defaulted_reasons
    assert result.summary() == (
        "2024-03-05.csv: loaded, 2 rows in = 2 loaded + 0 quarantined + 0 filtered "
        "(with defaults: defaulted:quantity 2, missing:price 2)"
    )
    assert events == [("i1", 1, None), ("i2", 1, None)]


def test_null_cells_default_and_defaults_count_only_loaded_rows(home: Path) -> None:
    path = write(
        home / "2024-03-05.csv",
        HEADER,
        [
            "u1,i1,purchase,2024-03-05 09:00:00,,2.0",  # quantity -> 1
            "u1,i2,purchase,2024-03-05 09:05:00,3,",  # price stays null
            "u1,i3,purchase,2024-03-05 09:10:00,2.0,1.5",  # an integral float is 2
            ",i4,purchase,2024-03-05 09:15:00,,",  # quarantined: no user (not counted)
        ],
    )
    with connect(home / "db.duckdb") as con:
        result = ingest_file(con, "canonical", path, max_bad_share=1.0)
        events = con.execute("select item_id, quantity, price from events order by 1").fetchall()
    assert events == [("i1", 1, 2.0), ("i2", 3, None), ("i3", 2, 1.5)]
    assert result.defaulted_reasons == {"defaulted:quantity": 1, "missing:price": 1}
    assert result.quarantine_reasons == {"contract:expect_column_values_to_not_be_null:user_id": 1}


def test_returns_and_zero_quantities_are_filtered_with_reasons(home: Path) -> None:
    path = write(
        home / "2024-03-05.csv",
        HEADER,
        [
            "u1,i1,purchase,2024-03-05 09:00:00,2,2.0",
            "u1,i1,purchase,2024-03-05 09:30:00,-2,2.0",  # return
            "u2,i2,purchase,2024-03-05 10:00:00,-1,",  # return, no price
            "u2,i3,cart,2024-03-05 10:10:00,0,1.0",  # zero quantity
            "u2,i3,cart,2024-03-05 10:20:00,1.5,1.0",  # not an integer: quarantined
            "u3,i4,view,2024-03-05 11:00:00,1,-1.0",  # negative price: quarantined
        ],
    )
    with connect(home / "db.duckdb") as con:
        result = ingest_file(con, "canonical", path, max_bad_share=1.0)
        loaded = con.execute("select item_id, quantity from events").fetchall()
        stored = con.execute(
            "select rows_in, rows_loaded, rows_quarantined, rows_filtered, filtered_reasons "
            "from ingestions"
        ).fetchone()
    assert loaded == [("i1", 2)]
    assert result.filtered_reasons == {"return": 2, "zero_quantity": 1}
    assert result.quarantine_reasons == {
        "contract:expect_column_values_to_be_between:price": 1,
        "not_an_integer:quantity": 1,
    }
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined, result.rows_filtered) == (
        6,
        1,
        2,
        3,
    )
    assert stored[:4] == (6, 1, 2, 3)
    assert json.loads(stored[4]) == {"return": 2, "zero_quantity": 1}


@pytest.mark.parametrize(
    ("ts", "stored"),
    [
        ("2024-03-05", dt.datetime(2024, 3, 5, 0, 0)),  # a date: midnight
        ("2024-03-05 10:15:00", dt.datetime(2024, 3, 5, 10, 15)),
        ("2024-03-05T10:15:00", dt.datetime(2024, 3, 5, 10, 15)),
        ("2024-03-05 10:15", dt.datetime(2024, 3, 5, 10, 15)),
        ("2024-03-05T10:15", dt.datetime(2024, 3, 5, 10, 15)),
        ("03/05/2024 10:15", dt.datetime(2024, 3, 5, 10, 15)),
        ("2024-03-05 10:15:00.250", dt.datetime(2024, 3, 5, 10, 15, 0, 250000)),
        ("2024-03-05T12:15:00+02:00", dt.datetime(2024, 3, 5, 10, 15)),  # zoned -> UTC
        ("2024-03-05T05:15:00-0500", dt.datetime(2024, 3, 5, 10, 15)),
        ("2024-03-05T10:15:00Z", dt.datetime(2024, 3, 5, 10, 15)),
        ("2024-03-05T10:15:00.5Z", dt.datetime(2024, 3, 5, 10, 15, 0, 500000)),
    ],
)
def test_timestamp_forms(home: Path, ts: str, stored: dt.datetime) -> None:
    path = write(home / "2024-03-05.csv", HEADER, [f"u1,i1,view,{ts},1,1.0"])
    with connect(home / "db.duckdb") as con:
        result = ingest_file(con, "canonical", path, max_bad_share=0.0)
        assert con.execute("select ts from events").fetchall() == [(stored,)]
    assert result.rows_loaded == 1


def test_zoned_timestamps_that_fall_on_another_utc_day_are_quarantined(home: Path) -> None:
    path = write(
        home / "2024-03-05.csv",
        HEADER,
        [
            "u1,i1,view,2024-03-05T01:00:00+02:00,1,1.0",  # 2024-03-04 23:00 UTC
            "u1,i1,view,2024-03-05T23:30:00-01:00,1,1.0",  # 2024-03-06 00:30 UTC
            "u1,i1,view,2024-03-05T12:00:00+01:00,1,1.0",
            "u1,i1,view,5 March 2024,1,1.0",
        ],
    )
    with connect(home / "db.duckdb") as con:
        result = ingest_file(con, "canonical", path, max_bad_share=1.0)
        assert con.execute("select ts from events").fetchall() == [(at(D1, 11),)]
    assert result.quarantine_reasons == {
        "contract:expect_column_values_to_be_between:ts": 2,
        "unparseable:ts": 1,
    }


# --- column mapping ----------------------------------------------------------------------------

EXPORT_HEADER = "household_key,PRODUCT_ID,DAY,QUANTITY,SALES_VALUE,STORE_ID"
EXPORT_ROWS = [
    "2375,1004906,2024-03-05,1,1.39,364",
    "2375,1033142,2024-03-05,2,",
    "98,1004906,2024-03-05,-1,1.39,364",
]
MAPPING = (
    "# household export -> canonical\n"
    "user_id: household_key\n"
    "item_id: PRODUCT_ID\n"
    "ts: DAY\n"
    "quantity: QUANTITY\n"
    "price: SALES_VALUE\n"
    "event_type: {value: purchase}\n"
)


def test_a_column_mapping_beside_the_files_loads_an_export_as_it_is(home: Path) -> None:
    landing = home / "landing"
    write(landing / "2024-03-05.csv", EXPORT_HEADER, EXPORT_ROWS)
    (landing / "nightrec_columns.yml").write_text(MAPPING)
    db = home / "db.duckdb"
    (result,) = ingest_landing(db, "canonical", landing, max_bad_share=0.0)
    assert query(db, "select user_id, item_id, event_type, ts, quantity, price from events") == [
        ("2375", "1004906", "purchase", D1, 1, 1.39),
        ("2375", "1033142", "purchase", D1, 2, None),
    ]
    assert result.filtered_reasons == {"return": 1}
    assert result.ignored_columns == ["STORE_ID"]


def test_a_changed_mapping_makes_a_loaded_day_changed(home: Path) -> None:
    landing = home / "landing"
    write(landing / "2024-03-05.csv", EXPORT_HEADER, EXPORT_ROWS[:1])
    mapping = landing / "nightrec_columns.yml"
    mapping.write_text(MAPPING)
    db = home / "db.duckdb"
    ingest_landing(db, "canonical", landing, max_bad_share=0.0)
    mapping.write_text(MAPPING + "# a comment changes nothing\n")
    assert [r.status for r in ingest_landing(db, "canonical", landing, max_bad_share=0.0)] == [
        "unchanged"
    ]
    mapping.write_text(MAPPING.replace("{value: purchase}", "{value: cart}"))
    with pytest.raises(IngestError, match="pass --replace to reload the day"):
        ingest_landing(db, "canonical", landing, max_bad_share=0.0)
    (result,) = ingest_landing(db, "canonical", landing, max_bad_share=0.0, replace=True)
    assert result.status == "replaced"
    assert query(db, "select event_type from events") == [("cart",)]


def test_quarantined_rows_of_a_mapped_export_keep_the_mapped_names(home: Path) -> None:
    landing = home / "landing"
    write(landing / "2024-03-05.csv", EXPORT_HEADER, ["2375,1004906,2024-03-05,1,n/a,364"])
    (landing / "nightrec_columns.yml").write_text(MAPPING)
    db = home / "db.duckdb"
    ingest_landing(db, "canonical", landing, max_bad_share=1.0)
    ((reason, payload),) = query(db, "select reason, payload from quarantine")
    # So `nightrec quarantine replay` runs the plain adapter on them, no mapping needed.
    assert reason == "not_a_number:price"
    assert json.loads(payload) == {
        "user_id": "2375",
        "item_id": "1004906",
        "ts": "2024-03-05",
        "quantity": "1",
        "price": "n/a",
        "STORE_ID": "364",
        "event_type": "purchase",
    }


def test_a_column_mapping_given_on_the_command_line(home: Path) -> None:
    landing = home / "landing"
    write(landing / "2024-03-05.csv", EXPORT_HEADER, EXPORT_ROWS[:1])
    mapping = home / "elsewhere.yml"
    mapping.write_text(MAPPING)
    result = nightrec(
        "ingest",
        "--source",
        "canonical",
        "--path",
        str(landing),
        "--columns",
        str(mapping),
        home=home,
    )
    assert result.returncode == 0, result.stderr
    assert query(home / "nightrec.duckdb", "select user_id, item_id, event_type from events") == [
        ("2375", "1004906", "purchase")
    ]


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (
            "user_id: household_key\nshop: STORE_ID\n",
            "{yml}: unknown column 'shop'; the source knows user_id, item_id, event_type, ts, "
            "quantity, price, order_id, session_id, title, category",
        ),
        (
            MAPPING.replace("SALES_VALUE", "NET_SALES"),
            "{csv}: column 'NET_SALES' (mapped to price by {yml}) is not in the file "
            "(found: " + EXPORT_HEADER.replace(",", ", ") + ")",
        ),
        (
            "event_type: {constant: purchase}\n",
            "{yml}: event_type: expected an export column "
            "name or {{value: CONSTANT}}, got {{'constant': 'purchase'}}",
        ),
        ("item_id: [a, b\n", "{yml}: not valid YAML"),
    ],
)
def test_a_bad_column_mapping_is_one_error_line(home: Path, mapping: str, expected: str) -> None:
    landing = home / "landing"
    csv = write(landing / "2024-03-05.csv", EXPORT_HEADER, EXPORT_ROWS)
    yml = landing / "nightrec_columns.yml"
    yml.write_text(mapping)
    with pytest.raises(IngestError) as info:
        ingest_landing(home / "db.duckdb", "canonical", landing, max_bad_share=0.0)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(expected.format(yml=yml, csv=csv))
    assert info.value.hint.startswith("fix the column mapping")


# --- loads nothing: one line and a hint ------------------------------------------------------


def test_start_after_end_is_refused_before_reading(home: Path) -> None:
    with pytest.raises(NothingToIngest, match=r"--start 2024-03-06 is after --end 2024-03-05"):
        # The path does not even exist: nothing is read.
        ingest_landing(
            home / "db.duckdb",
            "canonical",
            home / "missing",
            max_bad_share=0.0,
            start=dt.date(2024, 3, 6),
            end=dt.date(2024, 3, 5),
        )
    assert not (home / "db.duckdb").exists()


def test_hints_fit_the_failure(home: Path) -> None:
    assert IngestError("x").hint == "fix the file and run the command again"
    assert IngestError("x", hint="do y").hint == "do y"
    with pytest.raises(IngestError) as info:
        ingest_landing(home / "db.duckdb", "canonical", home / "missing", max_bad_share=0.0)
    assert info.value.hint == "check --path"
    with pytest.raises(IngestError) as info:
        ingest_landing(home / "db.duckdb", "nope", home, max_bad_share=0.0)
    assert info.value.hint == "use --source canonical or online-retail"
    first = write(home / "a" / "2024-03-05.csv", HEADER, ["u1,i1,view,2024-03-05,1,1.0"])
    second = write(home / "b" / "2024-03-05.csv", HEADER, ["u1,i2,view,2024-03-05,1,1.0"])
    with connect(home / "db.duckdb") as con:
        ingest_file(con, "canonical", first, max_bad_share=0.0)
        with pytest.raises(IngestError) as info:
            ingest_file(con, "canonical", second, max_bad_share=0.0)
    assert info.value.hint == "pass --replace to reload the day"


def two_lines(result: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: ")
    return lines[0], lines[1]


def test_cli_empty_folder(home: Path) -> None:
    landing = home / "landing"
    landing.mkdir()
    error, hint = two_lines(
        nightrec("ingest", "--source", "canonical", "--path", str(landing), home=home)
    )
    assert error == f"error: no landing files in {landing}"
    assert hint == "hint: check --path: it should hold one file per day, e.g. 2011-08-31.csv"


def test_cli_wrongly_named_files(home: Path) -> None:
    landing = home / "landing"
    write(landing / "events_20240305.csv", HEADER, [])
    write(landing / "events_20240306.csv", HEADER, [])
    write(landing / "catalog.csv", "item_id", ["i1"])  # not a day file, not counted
    error, hint = two_lines(
        nightrec("ingest", "--source", "canonical", "--path", str(landing), home=home)
    )
    assert error == (
        f"error: no day files in {landing}: 2 file(s) seen (e.g. events_20240305.csv) but none "
        "named YYYY-MM-DD.csv|csv.gz|parquet|jsonl[.gz]"
    )
    assert hint == "hint: name each day's file after its day, e.g. 2011-08-31.csv"


def test_cli_range_without_files(home: Path) -> None:
    landing = home / "landing"
    two_days(landing)
    error, hint = two_lines(
        nightrec(
            "ingest",
            "--source",
            "canonical",
            "--path",
            str(landing),
            "--start",
            "2024-04-01",
            "--end",
            "2024-04-30",
            home=home,
        )
    )
    assert error == (
        f"error: no day files between 2024-04-01 and 2024-04-30 in {landing}; "
        "the folder holds 2024-03-05..2024-03-06 (2 day file(s))"
    )
    assert hint == "hint: pass --start/--end within 2024-03-05..2024-03-06"
    assert not (home / "nightrec.duckdb").exists()


def test_cli_start_after_end(home: Path) -> None:
    landing = home / "landing"
    two_days(landing)
    error, hint = two_lines(
        nightrec(
            "ingest",
            "--source",
            "canonical",
            "--path",
            str(landing),
            "--start",
            "2024-03-06",
            "--end",
            "2024-03-05",
            home=home,
        )
    )
    assert error == "error: --start 2024-03-06 is after --end 2024-03-05: the range holds no day"
    assert hint == "hint: give a --start on or before --end"


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (("--source", "canonical", "--path", "/nonexistent/landing"), "hint: check --path"),
        (("--source", "nope", "--path", "."), "hint: use --source canonical or online-retail"),
    ],
)
def test_cli_hints_for_a_missing_path_and_an_unknown_source(
    home: Path, args: tuple[str, ...], hint: str
) -> None:
    assert two_lines(nightrec("ingest", *args, home=home))[1] == hint


# --- stores created before --------------------------------------------------------------------

OLD_SCHEMA = """
create table events (user_id varchar not null, item_id varchar not null,
    event_type varchar not null, ts timestamp not null, quantity bigint not null,
    price double not null, order_id varchar, session_id varchar, source varchar not null,
    event_day date not null, source_file varchar not null);
create table catalog (item_id varchar primary key, title varchar, category varchar,
    price double, updated_at timestamp not null);
create table ingestions (source varchar not null, event_day date not null,
    source_file varchar not null, sha256 varchar not null, status varchar not null,
    rows_in bigint not null, rows_loaded bigint not null, rows_quarantined bigint not null,
    rows_filtered bigint not null, filtered_reasons json not null,
    quarantine_reasons json not null, ingested_at timestamp not null,
    primary key (source, event_day));
insert into catalog values ('i1', 'Old milk', 'dairy', 1.0, timestamp '2024-01-01');
"""


def test_a_store_created_before_opens_and_takes_null_prices(home: Path) -> None:
    db = home / "db.duckdb"
    con = duckdb.connect(str(db))
    con.execute(OLD_SCHEMA)
    con.close()
    path = write(home / "2024-03-05.csv", HEADER, ["u1,i1,view,2024-03-05 09:00:00,1,"])
    with connect(db) as con:
        result = ingest_file(con, "canonical", path, max_bad_share=0.0)
        catalog = con.execute(CATALOG_SQL).fetchall()
        events = con.execute("select item_id, price from events").fetchall()
    assert result.defaulted_reasons == {"missing:price": 1}
    assert events == [("i1", None)]
    # The old row (no origin) keeps its title, category and price; events add first/last seen.
    assert catalog == [("i1", "Old milk", "dairy", None, 1.0, at(D1, 9), at(D1, 9), "events")]
