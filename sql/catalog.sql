-- catalog: one row per item; the newest observation of an item wins.
-- Reads the registered frame `staged_catalog` (item_id, title, category, price).
with staged as (
    select * from staged_catalog
),

latest as (
    select
        cast(item_id as varchar)  as item_id,
        cast(title as varchar)    as title,
        cast(category as varchar) as category,
        cast(price as double)     as price
    from staged
    where item_id is not null
    qualify row_number() over (partition by item_id order by price is null) = 1
)

select
    latest.*,
    current_localtimestamp() as updated_at
from latest
