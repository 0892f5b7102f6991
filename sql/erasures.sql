-- erasures (insert, reads `staged_erasures`): the log of one erasure request, one row per
-- customer and place. Parameters: $request_id.
with staged as (
    select id_hash, place, rows
    from staged_erasures
)

insert into erasures (request_id, erased_at, id_hash, place, rows)
select $request_id, now()::timestamp, id_hash, place, rows
from staged
