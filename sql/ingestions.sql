-- ingestions: one record per (source, event_day): the file loaded, its checksum, status and
-- row accounting (rows_in = rows_loaded + rows_quarantined + rows_filtered). Upserted by
-- tasks/ingest/load.py inside the day's swap transaction; re-ingesting a day replaces it.
-- Parameters: $source, $event_day, $source_file, $sha256, $status, $rows_in, $rows_loaded,
-- $rows_quarantined, $rows_filtered, and four JSON texts: $filtered_reasons,
-- $quarantine_reasons, $ignored_columns, $defaulted_reasons.
insert or replace into ingestions (
    source, event_day, source_file, sha256, status, rows_in, rows_loaded, rows_quarantined,
    rows_filtered, filtered_reasons, quarantine_reasons, ingested_at, ignored_columns,
    defaulted_reasons
)
with record as (
    select
        cast($source as varchar)           as source,
        cast($event_day as date)           as event_day,
        cast($source_file as varchar)      as source_file,
        cast($sha256 as varchar)           as sha256,
        cast($status as varchar)           as status,
        cast($rows_in as bigint)           as rows_in,
        cast($rows_loaded as bigint)       as rows_loaded,
        cast($rows_quarantined as bigint)  as rows_quarantined,
        cast($rows_filtered as bigint)     as rows_filtered,
        cast($filtered_reasons as json)    as filtered_reasons,
        cast($quarantine_reasons as json)  as quarantine_reasons,
        cast($ignored_columns as json)     as ignored_columns,
        cast($defaulted_reasons as json)   as defaulted_reasons
)

select
    source,
    event_day,
    source_file,
    sha256,
    status,
    rows_in,
    rows_loaded,
    rows_quarantined,
    rows_filtered,
    filtered_reasons,
    quarantine_reasons,
    current_localtimestamp() as ingested_at,
    ignored_columns,
    defaulted_reasons
from record
