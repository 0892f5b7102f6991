-- ingestions (clear a day): the first step of swapping a day in (tasks/ingest/load.py, inside
-- the swap transaction): loading a day replaces exactly that day, nothing else. One file per
-- table, so that no table name is formatted into SQL. Parameters: $source, $event_day.
delete from ingestions
where source = $source
  and event_day = $event_day
