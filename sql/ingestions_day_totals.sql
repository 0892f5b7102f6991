-- ingestions_day_totals: landing rows read and quarantined for one event day, over every
-- source (the run's quarantine check). Parameters: $event_day.
with day as (
    select rows_in, rows_quarantined
    from ingestions
    where event_day = cast($event_day as date)
)

select
    sum(rows_in)          as rows_in,
    sum(rows_quarantined) as rows_quarantined
from day
