-- quarantine (read): how many quarantined rows retention drops. Parameters: $before_day.
with old as (
    select 1 as one
    from quarantine
    where event_day < $before_day
)

select count(*) as n
from old
