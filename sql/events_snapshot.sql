-- events_snapshot: every event strictly before the run's cutoff, the only input a run may see.
-- Parameters: $cutoff (timestamp, exclusive).
with events_before_cutoff as (
    select user_id, item_id, event_type, ts, quantity, price, order_id, session_id
    from events
    where ts < $cutoff
)

select *
from events_before_cutoff
order by ts, user_id, item_id
