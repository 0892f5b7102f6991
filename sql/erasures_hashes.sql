-- erasures (read): the erasure list, the keyed hashes ingestion keeps out.
with logged as (
    select id_hash
    from erasures
    where id_hash is not null
)

select distinct id_hash
from logged
order by id_hash
