-- quarantine (reason): a row still quarantined after a replay keeps today's reason.
-- Parameters: $reason, $source, $event_day, $row_number.
update quarantine
set reason = $reason
where source = $source
  and event_day = $event_day
  and row_number = $row_number
