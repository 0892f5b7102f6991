-- quarantine (replayed): rows of a day that a replay loaded or filtered are marked, not deleted,
-- so the history is kept. Parameters: $source, $event_day, $row_numbers (a list).
update quarantine
set replayed_at = current_localtimestamp()
where source = $source
  and event_day = $event_day
  and row_number in (select unnest($row_numbers))
