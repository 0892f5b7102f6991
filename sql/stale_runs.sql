-- stale_runs: published run dates that read events of a day that was loaded after they ran.
-- Parameters: $source, $event_day, $reason. Reads the registered frame `published_dates`.
-- A date flagged again is replaced (its newest reason wins).
insert or replace into stale_runs (run_date, source, event_day, reason, flagged_at)
with published as (
    select cast(run_date as date) as run_date from published_dates
),

affected as (
    -- A run for date R reads events before R + 1 day, so days up to R change it.
    select run_date from published where run_date >= cast($event_day as date)
)

select
    affected.run_date,
    cast($source as varchar)   as source,
    cast($event_day as date)   as event_day,
    cast($reason as varchar)   as reason,
    current_localtimestamp()   as flagged_at
from affected
