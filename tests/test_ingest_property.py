"""Property: whatever a feed sends, ingestion explains a refusal in one line or accounts for
every row (rows in = loaded + quarantined + filtered), and the store agrees with the counts."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import itertools
import json

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tasks.constants import EVENT_COLUMNS
from tasks.ingest.adapters import OnlineRetailAdapter
from tasks.ingest.landing import IngestError
from tasks.ingest.load import BadShareError, ingest_file
from tasks.store import connect

DAY = itertools.count()
START = dt.date(2026, 1, 1)

junk = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def garbage(day: dt.date) -> st.SearchStrategy[str]:
    """Values of the wrong kind for any column."""
    return st.one_of(
        st.sampled_from(["", " ", "click", "NaN", "null", "1e309", "-0", "C123", "POST"]),
        st.floats(allow_nan=True, allow_infinity=True).map(str),
        st.sampled_from([f"{day - dt.timedelta(days=1)} 23:59:59", "31/02/2026 10:00"]),
        junk,
    )


def plausible(column: str, day: dt.date) -> st.SearchStrategy[str]:
    """Values a real feed would send for `column`."""
    time_of_day = st.times().map(lambda t: f"{day} {t:%H:%M:%S}")
    by_column = {
        "user_id": st.sampled_from(["u1", "u2", "u3"]),
        "item_id": st.sampled_from(["i1", "i2", "i3"]),
        "event_type": st.sampled_from(["view", "cart", "purchase", "VIEW"]),
        "ts": time_of_day,
        "InvoiceDate": st.one_of(time_of_day, st.just(f"{day:%m/%d/%Y} 08:26")),
        "quantity": st.integers(1, 9).map(str),
        "Quantity": st.integers(-2, 9).map(str),
        "price": st.floats(0, 100, allow_nan=False).map(lambda x: f"{x:.2f}"),
        "UnitPrice": st.floats(0, 100, allow_nan=False).map(lambda x: f"{x:.2f}"),
        "InvoiceNo": st.sampled_from(["536365", "536366", "C536379"]),
        "StockCode": st.sampled_from(["85123A", "22423", "POST", "DOT"]),
        "CustomerID": st.sampled_from(["17850.0", "12583", ""]),
    }
    return by_column.get(column, junk)


def cell(column: str, day: dt.date) -> st.SearchStrategy[str]:
    """Mostly plausible: one cell in ten is garbage, so many files are partly loadable."""
    return st.integers(0, 9).flatmap(lambda n: garbage(day) if n == 0 else plausible(column, day))


@st.composite
def landing_files(draw: st.DrawFn) -> tuple[str, str, bytes, int | None]:
    """(source, file name, content, rows written when the CSV itself is well formed)."""
    day = START + dt.timedelta(days=next(DAY))
    source = draw(st.sampled_from(["canonical", "online-retail"]))
    known = list(EVENT_COLUMNS if source == "canonical" else OnlineRetailAdapter.known_columns)
    columns = draw(st.permutations(known))
    if draw(st.integers(0, 4)) == 0:  # now and then a required column is missing
        columns = columns[: draw(st.integers(0, len(columns) - 1))]
    columns += draw(st.lists(st.sampled_from(["extra", "Notes", "ts2"]), max_size=2, unique=True))
    row = st.tuples(*(cell(c, day) for c in columns))
    rows = draw(st.lists(row, max_size=15))
    fmt = draw(st.sampled_from(["csv", "csv.gz", "jsonl"]))
    if fmt == "jsonl":
        text = "".join(json.dumps(dict(zip(columns, r, strict=True))) + "\n" for r in rows)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        text = buffer.getvalue()
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16"]))
    content = text.encode(encoding, errors="replace")
    well_formed = True
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "ragged"]))
    if damage == "truncate" and content:
        content = content[: draw(st.integers(0, len(content) - 1))]
        well_formed = False
    elif damage == "flip" and content:
        at = draw(st.integers(0, len(content) - 1))
        content = content[:at] + bytes([draw(st.integers(0, 255))]) + content[at + 1 :]
        well_formed = False
    elif damage == "ragged":
        content += b"a,b,c,d,e,f,g,h,i,j,k,l,m\n"
        well_formed = False
    if fmt == "csv.gz":
        content = gzip.compress(content)
        if draw(st.booleans()):
            content = content[: len(content) // 2]
            well_formed = False
    return source, f"{day}.{fmt}", content, len(rows) if well_formed else None


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("property")
    with connect(folder / "db.duckdb") as con:
        yield folder, con


@given(landing_files(), st.sampled_from([0.0, 0.3, 1.0]))
def test_every_malformed_file_is_explained_or_fully_accounted_for(store, case, max_bad_share):
    folder, con = store
    source, name, content, rows_written = case
    path = folder / name
    path.write_bytes(content)
    day = dt.date.fromisoformat(name[:10])
    try:
        result = ingest_file(con, source, path, max_bad_share=max_bad_share)
    except BadShareError:
        rows_in, loaded, quarantined, filtered, status = con.execute(
            "select rows_in, rows_loaded, rows_quarantined, rows_filtered, status "
            "from ingestions where event_day = ?",
            [day],
        ).fetchone()
        assert status == "rejected" and loaded == 0
        assert quarantined > max_bad_share * rows_in and quarantined + filtered <= rows_in
        assert (
            con.execute("select count(*) from events where event_day = ?", [day]).fetchone()[0] == 0
        )
        in_quarantine = con.execute(
            "select count(*) from quarantine where event_day = ?", [day]
        ).fetchone()[0]
        assert in_quarantine == quarantined
        event("rejected: bad share")
        return
    except IngestError as exc:
        message = str(exc)
        assert message and "\n" not in message and str(path) in message
        # A refused file leaves nothing behind.
        for table in ("events", "quarantine", "ingestions"):
            count = con.execute(f"select count(*) from {table} where event_day = ?", [day])
            assert count.fetchone()[0] == 0, table
        event(f"refused: {message.split(': ', 1)[1][:24]}")
        return
    assert result.rows_in == result.rows_loaded + result.rows_quarantined + result.rows_filtered
    if rows_written is not None:
        assert result.rows_in == rows_written
    stored = con.execute(
        "select (select count(*) from events where event_day = $d), "
        "(select count(*) from quarantine where event_day = $d)",
        {"d": day},
    ).fetchone()
    assert stored == (result.rows_loaded, result.rows_quarantined)
    assert sum(result.quarantine_reasons.values()) == result.rows_quarantined
    assert sum(result.filtered_reasons.values()) == result.rows_filtered
    event(f"accounted: {'some' if result.rows_loaded else 'no'} rows loaded")
