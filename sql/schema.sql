-- The store's tables. Each table's contents are produced by the file named after it.
create table if not exists events (
    user_id     varchar   not null,
    item_id     varchar   not null,
    event_type  varchar   not null,
    ts          timestamp not null,
    quantity    bigint    not null,
    price       double,
    order_id    varchar,
    session_id  varchar,
    source      varchar   not null,
    event_day   date      not null,
    source_file varchar   not null
);

create table if not exists quarantine (
    source         varchar   not null,
    event_day      date      not null,
    source_file    varchar   not null,
    row_number     bigint    not null,
    reason         varchar   not null,
    payload        varchar   not null,
    quarantined_at timestamp not null,
    replayed_at    timestamp
);

create table if not exists catalog (
    item_id    varchar primary key,
    title      varchar,
    category   varchar,
    price      double,
    updated_at timestamp not null
);

create table if not exists ingestions (
    source            varchar   not null,
    event_day         date      not null,
    source_file       varchar   not null,
    sha256            varchar   not null,
    status            varchar   not null,
    rows_in           bigint    not null,
    rows_loaded       bigint    not null,
    rows_quarantined  bigint    not null,
    rows_filtered     bigint    not null,
    filtered_reasons  json      not null,
    quarantine_reasons json     not null,
    ingested_at       timestamp not null,
    primary key (source, event_day)
);

-- Published run dates whose inputs changed after they ran (a late or replaced landing day);
-- `nightrec backfill` reruns them. Produced by sql/stale_runs.sql.
create table if not exists stale_runs (
    run_date   date      primary key,
    source     varchar   not null,
    event_day  date      not null,
    reason     varchar   not null,
    flagged_at timestamp not null
);

-- Columns a landing file carried that its adapter does not know (ignored, with a warning).
alter table ingestions add column if not exists ignored_columns json;

-- Real exports may lack prices: a null price stays null (stores created before allowed none).
alter table events alter column price drop not null;

-- Rows loaded with a documented default, counted per reason (e.g. defaulted:quantity).
alter table ingestions add column if not exists defaulted_reasons json;

-- Catalog rows come from a catalog file or are derived from events (sql/catalog.sql).
alter table catalog add column if not exists brand varchar;
alter table catalog add column if not exists first_seen timestamp;
alter table catalog add column if not exists last_seen timestamp;
alter table catalog add column if not exists origin varchar;
alter table catalog add column if not exists price_seen_at timestamp;

-- Catalog files loaded, by path: the same file again (checksum) is a no-op.
create table if not exists catalog_ingestions (
    source_file   varchar   primary key,
    sha256        varchar   not null,
    status        varchar   not null,
    rows_in       bigint    not null,
    rows_loaded   bigint    not null,
    skipped_reasons json    not null,
    ingested_at   timestamp not null
);

-- Privacy (README, "Privacy"). The store's id mode ('ids': raw | pseudonymized) and the
-- fingerprints of the keys it was used with: a store is never mixed. Produced by
-- sql/privacy_state.sql.
create table if not exists privacy_state (
    name        varchar   primary key,
    value       varchar   not null,
    recorded_at timestamp not null
);

-- The erasure log and list: one row per erased customer and place (events, quarantine, a
-- published partition, ...), with a keyed hash of the id (HMAC-SHA256), never the id.
-- Request-wide places (staging parts, caches, models marked) have a null id_hash. Produced by
-- sql/erasures.sql; ingestion filters the hashes it lists (sql/erasures_hashes.sql).
create table if not exists erasures (
    request_id varchar   not null,
    erased_at  timestamp not null,
    id_hash    varchar,
    place      varchar   not null,
    rows       bigint    not null
);

-- Run health (tasks/monitor): one row per run date and check, the newest run of a date wins.
-- Produced by sql/run_health.sql.
create table if not exists run_health (
    run_date      date      not null,
    check_name    varchar   not null,
    run_id        varchar   not null,
    status        varchar   not null,
    value         double,
    reference     double,
    measure       double,
    warn          double,
    fail          double,
    detail        varchar   not null,
    model_version varchar,
    measured_at   timestamp not null,
    primary key (run_date, check_name)
);
