-- privacy_state (read): every recorded setting of the store, with whether it holds any
-- event or quarantined row (a store without a recorded mode that holds rows holds raw ids).
with recorded as (
    select name, value
    from privacy_state
),

holds_rows as (
    select
        (select count(*) from events) + (select count(*) from quarantine) as n
)

select
    recorded.name,
    recorded.value,
    holds_rows.n
from holds_rows
left join recorded on true
