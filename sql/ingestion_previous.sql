-- ingestion_previous: the record of an earlier ingestion of the same (source, day), if any:
-- its checksum decides between unchanged, refused and replaced.
-- Parameters: $source, $event_day.
with day_record as (
    select sha256, source_file, status
    from ingestions
    where source = $source
      and event_day = $event_day
)

select sha256, source_file, status
from day_record
