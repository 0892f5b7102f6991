-- events_snapshot: every event strictly before the run's as-of instant, the only input a run may see.
-- Parameters: $as_of (timestamp, exclusive).
with events_before_as_of as (
    select user_id, item_id, event_type, ts, quantity, price, order_id, session_id
    from events
    where ts < $as_of
)

select *
from events_before_as_of
order by ts, user_id, item_id
