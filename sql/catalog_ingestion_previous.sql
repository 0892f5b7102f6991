-- catalog_ingestion_previous: the checksum of an earlier load of the same catalog file, if any.
-- Parameters: $source_file (the file's resolved path).
with file_record as (
    select sha256
    from catalog_ingestions
    where source_file = $source_file
)

select sha256
from file_record
