-- events (read, before an erasure): per customer and day, the rows `forget` removes and the
-- first event (models trained after it saw the customer). Parameters: $user_ids (list).
with erased as (
    select user_id, source, event_day, ts
    from events
    where list_contains($user_ids, user_id)
)

select user_id, source, event_day, count(*) as n, min(ts) as first_ts
from erased
group by user_id, source, event_day
order by user_id, source, event_day
