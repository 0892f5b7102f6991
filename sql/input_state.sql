-- input_state: what a run would see: events before the as-of instant, the newest of them, the catalog.
-- Parameters: $as_of (timestamp, exclusive).
with events_before_as_of as (
    select ts
    from events
    where ts < $as_of
),

catalog_items as (
    select count(*) as items
    from catalog
)

select
    count(*) as events,
    max(ts) as watermark,
    (select items from catalog_items) as catalog_items
from events_before_as_of
