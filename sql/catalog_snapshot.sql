-- catalog_snapshot: the catalog as the run sees it.
with current_catalog as (
    select item_id, title, category, price
    from catalog
)

select *
from current_catalog
order by item_id
