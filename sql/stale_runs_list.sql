-- stale_runs_list: the run dates flagged stale, oldest first (`nightrec backfill` reruns them).
-- No parameters.
with flagged as (
    select run_date
    from stale_runs
)

select run_date
from flagged
order by run_date
