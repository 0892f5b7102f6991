-- quarantine: rows of a landing file that broke the contract, with the reason and the raw row.
-- Parameters: $source, $event_day, $source_file. Reads the registered frame (or Parquet view)
-- `staged_quarantine`.
insert into quarantine (
    source, event_day, source_file, row_number, reason, payload, quarantined_at, replayed_at
)
with staged as (
    select * from staged_quarantine
)

select
    cast($source as varchar)      as source,
    cast($event_day as date)      as event_day,
    cast($source_file as varchar) as source_file,
    cast(staged.row_number as bigint) as row_number,
    cast(staged.reason as varchar)    as reason,
    cast(staged.payload as varchar)   as payload,
    current_localtimestamp()          as quarantined_at,
    cast(null as timestamp)           as replayed_at
from staged
