-- quarantine_open_reasons: one day's open (not replayed) quarantined rows counted by reason,
-- after a replay (the day's new quarantine_reasons). Parameters: $source, $event_day.
with open_rows as (
    select reason
    from quarantine
    where source = $source
      and event_day = $event_day
      and replayed_at is null
)

select reason, count(*)
from open_rows
group by reason
order by reason
