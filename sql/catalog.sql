-- catalog: one row per item, merged into the table (`insert or replace`, from tasks/ingest/load.py).
-- Reads the registered frame `staged_catalog` (item_id, title, category, brand, price,
-- price_seen_at, first_seen, last_seen, origin) with at most one row per item. A row comes from a catalog
-- file (origin 'file') or is derived from a day's events (origin 'events').
-- Parameters: $new_items (boolean): false when the source has a catalog file, so derived rows
-- only update items the catalog holds.
--   * a catalog file's values win: derived rows never overwrite what a file gave, they only
--     fill what it left null;
--   * a derived price is the price of the latest event seen (`price_seen_at`; a day loaded
--     late does not overwrite a newer price); a price from a file has no `price_seen_at` and
--     stays until a file changes it;
--   * first_seen / last_seen only widen.
insert or replace into catalog (
    item_id, title, category, price, updated_at, brand, first_seen, last_seen, origin,
    price_seen_at
)
with staged as (
    select
        cast(item_id as varchar)      as item_id,
        cast(title as varchar)        as title,
        cast(category as varchar)     as category,
        cast(brand as varchar)        as brand,
        cast(price as double)         as price,
        cast(price_seen_at as timestamp) as price_seen_at,
        cast(first_seen as timestamp) as first_seen,
        cast(last_seen as timestamp)  as last_seen,
        cast(origin as varchar)       as origin
    from staged_catalog
    where item_id is not null
),

current_rows as (
    select item_id, title, category, brand, price, price_seen_at, first_seen, last_seen, origin
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
            when s.origin = 'file' then s.price is not null
            when c.origin = 'file' and c.price is not null and c.price_seen_at is null then false
            when s.price is null then false
            else c.price is null or c.price_seen_at is null or s.price_seen_at >= c.price_seen_at
        end as take_price,
        case
            when s.origin = 'file' then coalesce(s.brand, c.brand)
            else coalesce(c.brand, s.brand)
        end as brand,
        s.price as new_price,
        s.price_seen_at as new_price_seen_at,
        c.price as old_price,
        c.price_seen_at as old_price_seen_at,
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
    case when take_price then new_price else old_price end                 as price,
    current_localtimestamp()                                                as updated_at,
    brand,
    first_seen,
    last_seen,
    origin,
    case when take_price then new_price_seen_at else old_price_seen_at end as price_seen_at
from merged
