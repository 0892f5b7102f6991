-- quarantine_open: one day's open (not replayed) quarantined rows, to replay, in file order.
-- Parameters: $source, $event_day; $reason (null for any).
with open_rows as (
    select row_number, payload, source_file
    from quarantine
    where source = $source
      and event_day = $event_day
      and replayed_at is null
      and (cast($reason as varchar) is null or reason = $reason)
)

select row_number, payload, source_file
from open_rows
order by row_number
