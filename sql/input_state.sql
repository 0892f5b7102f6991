-- input_state: what a run would see: events before the cutoff, the newest of them, the catalog.
-- Parameters: $cutoff (timestamp, exclusive).
with events_before_cutoff as (
    select ts
    from events
    where ts < $cutoff
),

catalog_items as (
    select count(*) as items
    from catalog
)

select
    count(*) as events,
    max(ts) as watermark,
    (select items from catalog_items) as catalog_items
from events_before_cutoff
