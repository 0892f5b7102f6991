-- events (retention): drop events older than the retention horizon, before the snapshot.
-- Parameters: $before (timestamp, exclusive). Returns nothing; count first with
-- sql/events_retention_count.sql.
delete from events
where ts < $before
