-- ingestions (replay): a quarantine replay moves rows out of quarantine, so the day's counts
-- change in the same transaction and rows_in = loaded + quarantined + filtered stays exact.
-- Parameters: $loaded, $filtered (rows added), $quarantined (rows still open), and JSON texts
-- $filtered_reasons, $quarantine_reasons, $defaulted_reasons (the new totals); $source,
-- $event_day pick the day.
update ingestions
set
    rows_loaded = rows_loaded + $loaded,
    rows_quarantined = $quarantined,
    rows_filtered = rows_filtered + $filtered,
    filtered_reasons = $filtered_reasons,
    quarantine_reasons = $quarantine_reasons,
    defaulted_reasons = $defaulted_reasons
where source = $source
  and event_day = $event_day
