-- catalog_unknown_items: how many staged catalog rows name an item the catalog lacks (they are
-- left out when the source has a catalog file). Reads the registered frame `staged_catalog`.
-- No parameters.
with staged as (
    select item_id
    from staged_catalog
),

unknown as (
    select s.item_id
    from staged as s
    anti join catalog as c using (item_id)
)

select count(*)
from unknown
