-- run_health_clear_run: forget a run date's checks before its run stores them again.
-- Parameters: $run_date.
delete from run_health
where run_date = cast($run_date as date)
