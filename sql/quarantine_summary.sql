-- quarantine_summary: open (not replayed) quarantined rows counted by source, day and reason,
-- with the status of the day's file (`nightrec quarantine list`).
-- Parameters, each null for any: $source, $reason, $event_day.
with open_rows as (
    select q.source, q.event_day, q.reason, i.status
    from quarantine as q
    left join ingestions as i using (source, event_day)
    where q.replayed_at is null
      and (cast($source as varchar) is null or q.source = $source)
      and (cast($reason as varchar) is null or q.reason = $reason)
      and (cast($event_day as date) is null or q.event_day = $event_day)
)

select source, event_day, reason, count(*) as n, any_value(status) as file_status
from open_rows
group by all
order by 1, 2, 3
