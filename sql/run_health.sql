-- run_health: the checks of one run (tasks/monitor/health.py). Reads the registered frame
-- `staged_health` (one row per check); no parameters. A date measured again is replaced
-- (run_health_clear_run.sql runs first, in the same transaction).
insert into run_health
with staged as (
    select * from staged_health
)

select
    cast(run_date as date)      as run_date,
    cast(name as varchar)       as check_name,
    cast(run_id as varchar)     as run_id,
    cast(status as varchar)     as status,
    cast(value as double)       as value,
    cast(reference as double)   as reference,
    cast(measure as double)     as measure,
    cast(warn as double)        as warn,
    cast(fail as double)        as fail,
    cast(detail as varchar)     as detail,
    cast(model_version as varchar) as model_version,
    current_localtimestamp()    as measured_at
from staged
