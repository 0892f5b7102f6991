-- catalog_ingestions: one record per catalog file loaded (by resolved path), with its checksum,
-- so the same file again is a no-op. Upserted by tasks/ingest/load.py in the file's transaction.
-- Parameters: $source_file, $sha256, $status, $rows_in, $rows_loaded, $skipped_reasons (JSON).
insert or replace into catalog_ingestions (
    source_file, sha256, status, rows_in, rows_loaded, skipped_reasons, ingested_at
)
with record as (
    select
        cast($source_file as varchar)  as source_file,
        cast($sha256 as varchar)       as sha256,
        cast($status as varchar)       as status,
        cast($rows_in as bigint)       as rows_in,
        cast($rows_loaded as bigint)   as rows_loaded,
        cast($skipped_reasons as json) as skipped_reasons
)

select
    source_file,
    sha256,
    status,
    rows_in,
    rows_loaded,
    skipped_reasons,
    current_localtimestamp() as ingested_at
from record
