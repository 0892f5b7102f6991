-- catalog: one row per item, merged into the table (`insert or replace`, see tasks/ingest/load.py).
-- Reads the registered frame `staged_catalog` (item_id, title, category, brand, price,
-- first_seen, last_seen, origin) with at most one row per item. A row comes from a catalog
-- file (origin 'file') or is derived from a day's events (origin 'events').
-- Parameters: $new_items (boolean): false when the source has a catalog file, so derived rows
-- only update items the catalog holds.
--   * a catalog file's values win: derived rows never overwrite what a file gave, they only
--     fill what it left null;
--   * derived rows keep the price of the latest event seen (a day loaded late does not
--     overwrite a newer price);
--   * first_seen / last_seen only widen.
with staged as (
    select
        cast(item_id as varchar)      as item_id,
        cast(title as varchar)        as title,
        cast(category as varchar)     as category,
        cast(brand as varchar)        as brand,
        cast(price as double)         as price,
        cast(first_seen as timestamp) as first_seen,
        cast(last_seen as timestamp)  as last_seen,
        cast(origin as varchar)       as origin
    from staged_catalog
    where item_id is not null
),

current_rows as (
    select item_id, title, category, brand, price, first_seen, last_seen, origin
    from catalog
    where item_id in (select item_id from staged)
),

merged as (
    select
        s.item_id,
        case
            when s.origin = 'file' then coalesce(s.title, c.title)
            when c.origin = 'file' then coalesce(c.title, s.title)
            else coalesce(s.title, c.title)
        end as title,
        case
            when s.origin = 'file' then coalesce(s.category, c.category)
            when c.origin = 'file' then coalesce(c.category, s.category)
            else coalesce(s.category, c.category)
        end as category,
        case
            when s.origin = 'file' then coalesce(s.price, c.price)
            when c.origin = 'file' then coalesce(c.price, s.price)
            when c.last_seen is null or s.last_seen >= c.last_seen then coalesce(s.price, c.price)
            else coalesce(c.price, s.price)
        end as price,
        case
            when s.origin = 'file' then coalesce(s.brand, c.brand)
            else coalesce(c.brand, s.brand)
        end as brand,
        least(s.first_seen, c.first_seen)    as first_seen,
        greatest(s.last_seen, c.last_seen)   as last_seen,
        case when s.origin = 'file' or c.origin = 'file' then 'file' else 'events' end as origin
    from staged as s
    left join current_rows as c using (item_id)
    where s.origin = 'file' or $new_items or c.item_id is not null
)

select
    item_id,
    title,
    category,
    price,
    current_localtimestamp() as updated_at,
    brand,
    first_seen,
    last_seen,
    origin
from merged
