-- ingestions (after an erasure): the erased rows of a day move from loaded / quarantined to
-- filtered under reason `erased`, so rows_in = loaded + quarantined + filtered stays exact.
-- Parameters: $source, $event_day, $loaded, $quarantined (rows removed from each), and the
-- new JSON totals $filtered_reasons, $quarantine_reasons.
update ingestions
set
    rows_loaded = rows_loaded - $loaded,
    rows_quarantined = rows_quarantined - $quarantined,
    rows_filtered = rows_filtered + $loaded + $quarantined,
    filtered_reasons = $filtered_reasons,
    quarantine_reasons = $quarantine_reasons
where source = $source
  and event_day = $event_day
