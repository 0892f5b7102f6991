-- ingestion_reasons: the filtered and defaulted counts (JSON) of one day's ingestion record,
-- read before a quarantine replay adds its own. Parameters: $source, $event_day.
with day_record as (
    select filtered_reasons, defaulted_reasons
    from ingestions
    where source = $source
      and event_day = $event_day
)

select filtered_reasons, defaulted_reasons
from day_record
