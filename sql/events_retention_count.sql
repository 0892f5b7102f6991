-- events (read): how many events retention drops. Parameters: $before (timestamp).
with old as (
    select 1 as one
    from events
    where ts < $before
)

select count(*) as n
from old
