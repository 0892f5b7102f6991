-- quarantine_days: the (source, day)s with open quarantined rows and the status of their file;
-- a replay runs day by day, and only for days whose file was loaded (not rejected).
-- Parameters, each null for any: $source, $reason, $event_day.
with open_days as (
    select distinct q.source, q.event_day, i.status
    from quarantine as q
    inner join ingestions as i using (source, event_day)
    where q.replayed_at is null
      and (cast($source as varchar) is null or q.source = $source)
      and (cast($reason as varchar) is null or q.reason = $reason)
      and (cast($event_day as date) is null or q.event_day = $event_day)
)

select source, event_day, status
from open_days
order by 1, 2
