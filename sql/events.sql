-- events: one canonical event per row, loaded from the validated rows of one landing file.
-- Parameters: $source, $event_day, $source_file. Reads the registered frame (or Parquet view)
-- `staged_events`.
insert into events (
    user_id, item_id, event_type, ts, quantity, price, order_id, session_id,
    source, event_day, source_file
)
with staged as (
    select * from staged_events
),

typed as (
    select
        cast(user_id as varchar)    as user_id,
        cast(item_id as varchar)    as item_id,
        cast(event_type as varchar) as event_type,
        cast(ts as timestamp)       as ts,
        cast(quantity as bigint)    as quantity,
        cast(price as double)       as price,
        cast(order_id as varchar)   as order_id,
        cast(session_id as varchar) as session_id
    from staged
)

select
    typed.*,
    cast($source as varchar)      as source,
    cast($event_day as date)      as event_day,
    cast($source_file as varchar) as source_file
from typed
