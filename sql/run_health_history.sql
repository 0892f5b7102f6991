-- run_health_history: the checks of the run dates in [$since, $before), oldest first; what
-- relative checks, the trend plots and `nightrec monitor` read. Parameters: $since, $before.
with runs as (
    select *
    from run_health
    where run_date >= cast($since as date) and run_date < cast($before as date)
)

select
    run_date,
    check_name,
    run_id,
    status,
    value,
    reference,
    measure,
    warn,
    fail,
    detail,
    model_version,
    measured_at
from runs
order by run_date, check_name
