"""Privacy (issue 17, part A) under real Prefect, real DuckDB files and real Parquet, on the
tiny synthetic shop with distinctive customer ids (so that a byte scan means something):
erasure everywhere under NIGHTREC_HOME, re-ingestion kept out, pseudonyms with unchanged
rankings, retention, secure defaults."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.constants import MANIFEST_NAME
from tasks.ingest.load import ingest_catalog, ingest_landing
from tasks.ops.forget import ForgetError, forget, read_ids, residue
from tasks.privacy.guard import MixedStore
from tasks.privacy.keys import MissingKey, PrivacyKey, erasure_key
from tasks.privacy.retention import apply_retention
from tasks.publish.writer import is_complete, partition_dir
from tasks.rank import registry
from tasks.settings import PrivacySettings, Settings, load_settings
from tasks.store import compact, connect, sql_text
from tasks.synth.shop import generate_shop, write_landing
from tasks.synth.tiny import TINY_MAX_BAD_SHARE, TINY_PROTOCOL_ENV, TINY_SHOP
from tasks.timeutil import run_as_of

pytestmark = pytest.mark.flow
RUN_DATE = TINY_SHOP.start + dt.timedelta(days=TINY_SHOP.days - 2)
FIRST = RUN_DATE - dt.timedelta(days=1)
KEY = "test-only-key-7f3c9a1e5b2d8c4f"
ROOT = Path(__file__).resolve().parents[1]


def shop_id(user: str) -> str:
    """A distinctive id per synthetic customer: it occurs nowhere by chance."""
    return f"QZX-{user}-JV"


def write_shop(landing: Path) -> Path:
    """The tiny shop with distinctive customer ids (malformed rows included); returns the
    catalog file."""
    shop = generate_shop(TINY_SHOP)
    events = shop.events.with_columns(pl.col("user_id").map_elements(shop_id, pl.Utf8))
    return write_landing(dataclasses.replace(shop, events=events), landing).catalog_path


@pytest.fixture
def env(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in {**TINY_PROTOCOL_ENV, "NIGHTREC_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NIGHTREC_CONFIG", str(home / "absent.yaml"))
    monkeypatch.delenv("NIGHTREC_PRIVACY__KEY", raising=False)
    monkeypatch.delenv("NIGHTREC_PRIVACY__PSEUDONYMIZE", raising=False)
    return home


def stage(home: Path, landing: Path, end: dt.date = FIRST - dt.timedelta(days=1)) -> None:
    ingest_catalog(home / "nightrec.duckdb", write_shop(landing))
    ingest_landing(
        home / "nightrec.duckdb", "canonical", landing, max_bad_share=TINY_MAX_BAD_SHARE, end=end
    )


def nightly(home: Path, landing: Path, day: dt.date, retrain: bool | None = None) -> dict:
    from flows.nightly import NightlyParams, nightly_flow

    return nightly_flow(
        NightlyParams(run_date=day, retrain=retrain, landing_dir=str(landing), source="canonical")
    )


def recs_of(home: Path, day: dt.date) -> pl.DataFrame:
    return pl.read_parquet(partition_dir(home / "recommendations", day) / "*.parquet")


def table_rows(db: Path, needles: list[str]) -> dict[str, int]:
    """Rows of every table in the store whose text (any column) contains a needle."""
    found = {}
    with duckdb.connect(str(db), read_only=True) as con:
        tables = [t for (t,) in con.execute("select table_name from duckdb_tables()").fetchall()]
        for table in tables:
            frame = pl.from_arrow(con.execute(f"select * from {table}").to_arrow_table())
            text = frame.select(pl.concat_str(pl.all().cast(pl.Utf8), separator="|").alias("t"))
            hits = text.filter(
                pl.any_horizontal(pl.col("t").str.contains(n, literal=True) for n in needles)
            )
            found[table] = hits.height
    return found


def decoded_hits(home: Path, needles: list[str]) -> list[Path]:
    """Files whose decoded content holds a needle: Parquet read back (compressed pages hide
    bytes from a plain scan) and gzip opened."""
    hits = []
    for path in home.rglob("*"):
        if path.suffix == ".parquet":
            text = pl.read_parquet(path).select(pl.all().cast(pl.Utf8)).write_csv()
        elif path.suffix == ".gz":
            text = gzip.decompress(path.read_bytes()).decode(errors="replace")
        else:
            continue
        if any(n in text for n in needles):
            hits.append(path)
    return hits


def uncompressed(db: Path) -> None:
    """Rewrite the store with DuckDB's compression off, so that its bytes show every id as is:
    compressed (dictionary, FSST) a store shows an id only where a dictionary keeps it, and a
    byte scan that finds nothing proves nothing."""
    copy = db.with_name("uncompressed.duckdb")
    with duckdb.connect() as con:
        con.execute("set force_compression = 'uncompressed'")
        con.execute(f"attach '{db}' as old (read_only)")
        con.execute(f"attach '{copy}' as fresh")
        con.execute("copy from database old to fresh")
    os.replace(copy, db)


def test_duckdb_keeps_deleted_rows_bytes_until_the_store_is_compacted(
    env: Path, tmp_path: Path
) -> None:
    """The measurement behind forget's compaction (DuckDB 1.5.6): after a delete and a
    CHECKPOINT the file's raw bytes still hold every deleted row; a copy into a fresh file
    (COPY FROM DATABASE, what `tasks.store.compact` does) holds none."""
    stage(env, tmp_path / "landing")
    db = env / "nightrec.duckdb"
    target = shop_id("u00007")
    uncompressed(db)
    data = db.read_bytes()
    with connect(db, read_only=True) as con:
        (n_target,) = con.execute(
            "select count(*) from events where user_id = $t", {"t": target}
        ).fetchone()
    assert data.count(target.encode()) >= n_target > 0
    with duckdb.connect(str(db)) as con:
        con.execute("set force_compression = 'uncompressed'")
        con.execute(sql_text("events_erase"), {"user_ids": [target]})
        con.execute("delete from quarantine where contains(payload, $t)", {"t": target})
        con.execute("checkpoint")
        (left,) = con.execute(
            "select count(*) from events where user_id = $t", {"t": target}
        ).fetchone()
    assert left == 0
    # Deleted and checkpointed: the bytes are still in the file's freed blocks.
    assert db.read_bytes().count(target.encode()) >= n_target
    size = compact(db)
    assert residue(env, [target]) == []
    assert size == db.stat().st_size
    with connect(db, read_only=True) as con:  # the copy is a whole store
        (n,) = con.execute("select count(*) from events").fetchone()
        (pk,) = con.execute(
            "select count(*) from duckdb_constraints() where constraint_type = 'PRIMARY KEY'"
        ).fetchone()
    assert n > 0 and pk >= 4


def test_forget_erases_a_customer_everywhere_and_keeps_them_out(
    prefect_harness: None, env: Path, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    stage(env, landing)
    settings = load_settings()
    db = settings.db_path
    gone = [shop_id("u00007"), shop_id("u00013")]
    uncompressed(db)  # so that the byte scan of the store is meaningful
    assert db in residue(env, gone)

    # Rows the customers have before the erasure, hand-counted from the store.
    with connect(db, read_only=True) as con:
        events_before = dict(
            con.execute(
                "select user_id, count(*) from events where list_contains($g, user_id) "
                "group by user_id",
                {"g": gone},
            ).fetchall()
        )
        quarantined = con.execute(
            "select count(*) from quarantine where contains(payload, $a) or contains(payload, $b)",
            {"a": gone[0], "b": gone[1]},
        ).fetchone()[0]
        day_counts = con.execute(
            "select event_day, count(*) from events where list_contains($g, user_id) "
            "group by event_day order by count(*) desc limit 1",
            {"g": gone},
        ).fetchone()
    assert all(events_before.get(g, 0) > 0 for g in gone)

    first = nightly(env, landing, FIRST, retrain=True)
    assert first["retrained"] and first["model_version"].startswith("lgbm-")
    before = recs_of(env, FIRST)
    assert set(gone) <= set(before["user_id"])

    # Leftovers a killed run, a killed ingestion and a tuning study would leave.
    from tasks.features.snapshot import take_snapshot
    from tasks.tune.lgbm_objective import LightGBMObjective

    snapshot = take_snapshot(settings, run_as_of(FIRST), settings.work_dir / "killed-run")
    staged = settings.home / "staging" / "ingest-nightrec" / "canonical" / "x"
    staged.mkdir(parents=True)
    snapshot.events().write_parquet(staged / "events-000000.parquet", compression="zstd")
    tune_settings = settings.model_copy(
        update={"tune": settings.tune.model_copy(update={"validation_folds": 1})}
    )
    LightGBMObjective().prepare(tune_settings, snapshot, settings.tuning_dir / "s1" / "data")
    assert decoded_hits(env, gone)  # the leftovers hold them (compressed)

    result = forget(settings, gone)

    # Counts: every event, every quarantined row, K published rows each.
    for g in gone:
        assert result.customers[g]["events"] == events_before[g]
        assert result.customers[g][f"recommendations/run_date={FIRST}"] == first["k"]
    assert sum(result.customers[g]["quarantine"] for g in gone) == quarantined
    assert result.files["work folders"] == 1 and result.files["tuning caches"] == 1
    assert result.files["staging parts"] == 1
    assert result.models_retired == [first["model_version"]]
    assert result.byte_scanned == 2

    # Nowhere: not in a table, not in a decoded file, not in the bytes of any file.
    assert set(table_rows(db, gone).values()) == {0}
    assert decoded_hits(env, gone) == []
    assert residue(env, gone) == []

    # The published partition: rewritten, complete, other customers' rows unchanged.
    after = recs_of(env, FIRST)
    assert_frame_equal(after, before.filter(~pl.col("user_id").is_in(gone)))
    manifest = json.loads(
        (partition_dir(env / "recommendations", FIRST) / MANIFEST_NAME).read_text()
    )
    assert is_complete(env / "recommendations", FIRST)
    assert manifest["rows"] == after.height == first["rows"] - 2 * first["k"]
    assert manifest["users"] == first["users"] - 2
    assert manifest["erasures"][0]["rows_removed"] == 2 * first["k"]

    # The log: hashes under the store's key, never the ids.
    key = erasure_key(settings.privacy, env)
    assert key is not None and key.origin == str(env / "privacy.key")
    assert stat.S_IMODE((env / "privacy.key").stat().st_mode) == 0o600
    with connect(db, read_only=True) as con:
        log = con.execute(
            "select id_hash, place, rows from erasures where id_hash is not null order by all"
        ).fetchall()
        day_record = con.execute(
            "select rows_in, rows_loaded, rows_quarantined, rows_filtered, filtered_reasons "
            "from ingestions where event_day = $d",
            {"d": day_counts[0]},
        ).fetchone()
    assert {h for h, _, _ in log} == {key.erasure_hash(g) for g in gone}
    assert (key.erasure_hash(gone[0]), "events", events_before[gone[0]]) in log
    rows_in, loaded, quarantined_n, filtered, reasons = day_record
    assert rows_in == loaded + quarantined_n + filtered
    assert json.loads(reasons)["erased"] >= day_counts[1]

    # The retired model never serves: the next run retrains and says why.
    assert registry.load(settings.models_dir, first["model_version"]).retired
    second = nightly(env, landing, RUN_DATE)
    assert second["retrained"] is True
    assert second["model_version"] != first["model_version"]
    assert any("trained on erased customers' data" in n for n in second["notes"])
    assert not set(gone) & set(recs_of(env, RUN_DATE)["user_id"])
    (ingested,) = second["ingested"]
    if ingested["rows_filtered"]:
        assert ingested["rows_in"] == (
            ingested["rows_loaded"] + ingested["rows_quarantined"] + ingested["rows_filtered"]
        )

    # Re-ingesting an old landing file that holds them keeps them out, counted as `erased`:
    # the same file is a no-op (checksum); a changed file for the day is reloaded whole.
    old_day, n_old = day_counts
    options = {"max_bad_share": TINY_MAX_BAD_SHARE, "start": old_day, "end": old_day}
    (same,) = ingest_landing(db, "canonical", landing, **options, replace=True)
    assert same.status == "unchanged"
    day_file = landing / "events" / f"{old_day}.csv"
    lines = day_file.read_text().splitlines()
    day_file.write_text("\n".join([*lines, lines[1]]) + "\n")  # one row more, same customers
    (again,) = ingest_landing(db, "canonical", landing, **options, replace=True)
    assert again.status == "replaced"
    assert again.filtered_reasons["erased"] >= n_old
    assert again.rows_in == again.rows_loaded + again.rows_quarantined + again.rows_filtered
    assert set(table_rows(db, gone).values()) == {0}
    assert residue(env, gone) == []


def test_forget_input_and_unknown_customers(env: Path, tmp_path: Path) -> None:
    with pytest.raises(ForgetError, match="no customer id given"):
        read_ids(["  ", ""], None)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# erasure requests\nQZX-a-JV\n\nQZX-b-JV\nQZX-a-JV\n")
    assert read_ids(["QZX-c-JV"], ids_file) == ["QZX-c-JV", "QZX-a-JV", "QZX-b-JV"]

    cli = subprocess.run(
        [sys.executable, "-m", "flows.cli", "forget", "--home", str(env)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert cli.returncode == 2
    assert cli.stderr.splitlines()[0] == "error: no customer id given"

    # Unknown to the store: not an error; 0 rows, and their later data is filtered.
    landing = tmp_path / "landing"
    ingest_catalog(env / "nightrec.duckdb", write_shop(landing))
    settings = load_settings()
    future = shop_id("u00021")
    result = forget(settings, ["QZX-nobody-JV", future])
    assert result.rows("QZX-nobody-JV") == 0 and result.rows(future) == 0
    results = ingest_landing(
        settings.db_path, "canonical", landing, max_bad_share=TINY_MAX_BAD_SHARE, end=FIRST
    )
    assert sum(r.filtered_reasons.get("erased", 0) for r in results) > 0
    assert set(table_rows(settings.db_path, [future]).values()) == {0}


def test_pseudonyms_keep_raw_ids_out_and_the_ranking_unchanged(
    prefect_harness: None, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = tmp_path / "landing"
    write_shop(landing)
    runs = {}
    for mode in ("raw", "pseudonymized"):
        mode_home = tmp_path / mode
        for name, value in {**TINY_PROTOCOL_ENV, "NIGHTREC_HOME": str(mode_home)}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("NIGHTREC_CONFIG", str(tmp_path / "absent.yaml"))
        monkeypatch.setenv("NIGHTREC_PRIVACY__PSEUDONYMIZE", str(mode == "pseudonymized"))
        monkeypatch.setenv("NIGHTREC_PRIVACY__KEY", KEY)
        ingest_catalog(mode_home / "nightrec.duckdb", landing / "catalog.csv")
        ingest_landing(
            mode_home / "nightrec.duckdb",
            "canonical",
            landing,
            max_bad_share=TINY_MAX_BAD_SHARE,
            end=FIRST - dt.timedelta(days=1),
        )
        manifest = nightly(mode_home, landing, FIRST, retrain=True)
        model = registry.load(mode_home / "models", manifest["model_version"])
        runs[mode] = (manifest, recs_of(mode_home, FIRST), model.meta["validation"])

    key = PrivacyKey(KEY.encode(), "setting")
    raw_manifest, raw_recs, raw_validation = runs["raw"]
    ps_manifest, ps_recs, ps_validation = runs["pseudonymized"]
    assert ps_manifest["privacy"]["ids"] == "pseudonymized"
    assert raw_manifest["privacy"]["ids"] == "raw"
    mapped = raw_recs.with_columns(pl.col("user_id").map_elements(key.pseudonym, pl.Utf8))
    columns = ["user_id", "rank", "item_id", "source"]
    assert_frame_equal(
        mapped.select(columns).sort("user_id", "rank"),
        ps_recs.select(columns).sort("user_id", "rank"),
    )
    # Same NDCG (every metric, every method), up to the order of a float sum over customers.
    for method, metrics in raw_validation["metrics"].items():
        assert ps_validation["metrics"][method] == pytest.approx(metrics, rel=1e-12, abs=1e-15)
    assert ps_manifest["model_version"] == raw_manifest["model_version"]  # the same booster

    # No raw id in any file (bytes and decoded), and never the key.
    ps_home = tmp_path / "pseudonymized"
    raw_ids = raw_recs["user_id"].unique().to_list()
    assert residue(ps_home, raw_ids) == []
    assert decoded_hits(ps_home, raw_ids) == []
    assert residue(ps_home, [KEY]) == []
    assert set(table_rows(ps_home / "nightrec.duckdb", raw_ids).values()) == {0}
    # The CLI prints the mapping the shop uses.
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "pseudonym", "--customer", raw_ids[0]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr
    assert key.pseudonym(raw_ids[0]) in out.stdout

    # Erasure in a pseudonymized store takes the shop's id.
    settings = load_settings()
    result = forget(settings, [raw_ids[0]])
    assert result.customers[raw_ids[0]]["events"] > 0
    assert residue(ps_home, [raw_ids[0], key.pseudonym(raw_ids[0])]) == []

    # A store is never mixed, and a changed key is refused.
    monkeypatch.setenv("NIGHTREC_PRIVACY__PSEUDONYMIZE", "false")
    with pytest.raises(MixedStore, match="holds pseudonymized customer ids"):
        ingest_landing(
            ps_home / "nightrec.duckdb",
            "canonical",
            landing,
            max_bad_share=TINY_MAX_BAD_SHARE,
            start=FIRST,
            end=FIRST,
        )
    monkeypatch.setenv("NIGHTREC_PRIVACY__PSEUDONYMIZE", "true")
    monkeypatch.setenv("NIGHTREC_PRIVACY__KEY", "another-key")
    with pytest.raises(Exception, match="privacy key differs"):
        ingest_landing(
            ps_home / "nightrec.duckdb",
            "canonical",
            landing,
            max_bad_share=TINY_MAX_BAD_SHARE,
            start=FIRST,
            end=FIRST,
        )


def test_pseudonymize_without_a_key_is_refused_in_one_line(home: Path) -> None:
    with pytest.raises(MissingKey):
        from tasks.privacy.keys import pseudonym_key

        pseudonym_key(PrivacySettings(pseudonymize=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTREC_")}
    env["NIGHTREC_PRIVACY__PSEUDONYMIZE"] = "true"
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--date", "2024-01-01", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: privacy.pseudonymize is on but no key is set (NIGHTREC_PRIVACY__KEY)",
        "hint: export NIGHTREC_PRIVACY__KEY=<a long random secret>; keep it, it maps "
        "pseudonyms back",
    ]


def test_retention_drops_old_rows_and_refuses_a_window_shorter_than_the_look_back(
    env: Path, tmp_path: Path
) -> None:
    stage(env, tmp_path / "landing")
    settings = load_settings()
    need = max(settings.lookback_days().values())
    # Tiny protocol: 7-day horizon + 2 x 7-day steps, then co-purchase's 180 days.
    assert need == 7 + 2 * 7 + 180
    with pytest.raises(ValueError, match=f"shorter than the longest look-back .* {need} days"):
        Settings(privacy=PrivacySettings(retention_days=need - 1))
    kept = Settings(privacy=PrivacySettings(retention_days=need))
    as_of = run_as_of(FIRST) + dt.timedelta(days=need - 20)  # 20 days of the shop fall out
    before = as_of - dt.timedelta(days=need)
    with connect(settings.db_path, read_only=True) as con:
        (old_events,) = con.execute(
            "select count(*) from events where ts < $b", {"b": before}
        ).fetchone()
        (old_quarantine,) = con.execute(
            "select count(*) from quarantine where event_day < $d", {"d": before.date()}
        ).fetchone()
        (total,) = con.execute("select count(*) from events").fetchone()
    assert 0 < old_events < total and old_quarantine > 0
    dropped = apply_retention(kept, as_of)
    assert dropped == {
        "retention_days": need,
        "events_before": before.isoformat(),
        "events_dropped": old_events,
        "quarantined_dropped": old_quarantine,
    }
    with connect(settings.db_path, read_only=True) as con:
        assert con.execute("select min(ts) from events").fetchone()[0] >= before
        (n,) = con.execute("select count(*) from events").fetchone()
    assert n == total - old_events
    assert apply_retention(Settings(), as_of) is None

    cli_env = {**os.environ, "NIGHTREC_PRIVACY__RETENTION_DAYS": "30"}
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--home", str(env)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=cli_env,
    )
    assert result.returncode == 2
    (line, hint) = result.stderr.splitlines()
    assert hint.startswith("hint: ")
    assert "privacy.retention_days 30 is shorter than the longest look-back" in line
    assert f"{need} days (training windows + co-purchase candidates)" in line


def test_the_cli_creates_home_for_its_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    landing = tmp_path / "landing"
    write_shop(landing)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTREC_")}
    env["NIGHTREC_CONFIG"] = str(tmp_path / "absent.yaml")
    env["NIGHTREC_MAX_BAD_SHARE"] = str(TINY_MAX_BAD_SHARE)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "ingest",
            "--source",
            "canonical",
            "--path",
            str(landing),
            "--end",
            str(TINY_SHOP.start + dt.timedelta(days=2)),
            "--home",
            str(home),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    modes = {
        p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in [home, *home.rglob("*")]
    }
    assert modes["fresh-home/nightrec.duckdb"] == 0o600
    assert {m for p, m in modes.items() if (tmp_path / p).is_dir()} == {0o700}
    assert {m for p, m in modes.items() if (tmp_path / p).is_file()} == {0o600}


def test_an_open_home_is_tightened_and_the_server_stays_on_loopback(tmp_path: Path) -> None:
    from flows.prefect_api import server_command
    from tasks.privacy.keys import secure_home

    home = tmp_path / "open"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    secure_home(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    argv, env = server_command(Settings())
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_rewrite_partition_handles_every_part_and_keeps_the_manifest_true(tmp_path: Path) -> None:
    """A partition of several Parquet parts (as a multi-part publish writes it): every part
    loses the erased customer's rows, checksums and counts follow, other rows stay as they
    were, and a partition without them is not touched."""
    from tasks.publish.writer import publish, read_manifest, rewrite_partition

    day = dt.date(2026, 1, 5)
    recs = pl.DataFrame(
        {
            "user_id": ["QZX-a-JV", "QZX-a-JV", "QZX-b-JV", "QZX-b-JV", "QZX-c-JV", "QZX-c-JV"],
            "item_id": ["i1", "i2", "i2", "i3", "i1", "i3"],
            "rank": [1, 2, 1, 2, 1, 2],
            "score": [0.9, 0.5, 0.8, 0.4, 0.7, 0.3],
            "source": ["model"] * 4 + ["popularity_fallback"] * 2,
            "reason": ["repurchase"] * 4 + ["fallback"] * 2,
            "reason_detail": ["bought once"] * 4 + ["popular"] * 2,
            "reason_features": [""] * 6,
        }
    )
    publish(recs, tmp_path, day, "run-1", "m1", 2, {"as_of": "2026-01-06T00:00:00"})
    folder = partition_dir(tmp_path, day)
    whole = pl.read_parquet(folder / "part-00000.parquet")
    whole.head(4).write_parquet(folder / "part-00000.parquet")
    whole.tail(2).write_parquet(folder / "part-00001.parquet")
    manifest = read_manifest(tmp_path, day)
    manifest["files"] = {
        name: {"rows": n, "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest()}
        for name, n in (("part-00000.parquet", 4), ("part-00001.parquet", 2))
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert is_complete(tmp_path, day)

    note = {"request_id": "r1", "erased_at": "2026-01-07T00:00:00"}
    assert rewrite_partition(tmp_path, day, ["QZX-nobody-JV"], note) == {}
    assert read_manifest(tmp_path, day) == manifest  # untouched
    removed = rewrite_partition(tmp_path, day, ["QZX-b-JV", "QZX-c-JV"], note)
    assert removed == {"QZX-b-JV": 2, "QZX-c-JV": 2}
    after = read_manifest(tmp_path, day)
    assert is_complete(tmp_path, day)
    assert {n: f["rows"] for n, f in after["files"].items()} == {
        "part-00000.parquet": 2,
        "part-00001.parquet": 0,
    }
    assert (after["rows"], after["users"], after["items"]) == (2, 1, 2)
    assert after["rows_by_source"] == {"model": 2}
    assert after["erasures"] == [{**note, "rows_removed": 4}]
    assert after["as_of"] == manifest["as_of"]
    assert_frame_equal(pl.read_parquet(folder / "*.parquet"), whole.head(2))
    assert not list(tmp_path.glob(".staging-*")) and not list(tmp_path.glob(".old-*"))
