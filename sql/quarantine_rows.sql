-- quarantine_rows: the first open (not replayed) quarantined rows, with their raw row.
-- Parameters: $limit; each null for any: $source, $reason, $event_day.
with open_rows as (
    select q.source, q.event_day, q.row_number, q.reason, q.payload
    from quarantine as q
    where q.replayed_at is null
      and (cast($source as varchar) is null or q.source = $source)
      and (cast($reason as varchar) is null or q.reason = $reason)
      and (cast($event_day as date) is null or q.event_day = $event_day)
)

select source, event_day, row_number, reason, payload
from open_rows
order by 1, 2, 3
limit $limit
