-- stale_runs (clear): a successful run of a date clears its stale flag. Parameters: $run_date.
delete from stale_runs
where run_date = $run_date
