-- quarantine (read, before an erasure): rows whose raw JSON mentions any of the ids; the
-- caller checks the adapter's customer column exactly. Parameters: $user_ids (list).
with mentions as (
    select source, event_day, row_number, reason, payload, replayed_at
    from quarantine
    where len(list_filter($user_ids, x -> contains(payload, x))) > 0
)

select source, event_day, row_number, reason, payload, replayed_at is not null as replayed
from mentions
order by source, event_day, row_number
