-- quarantine (retention): drop quarantined raw rows of days before the horizon.
-- Parameters: $before_day (date, exclusive).
delete from quarantine
where event_day < $before_day
