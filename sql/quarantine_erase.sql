-- quarantine (erase rows, reads `staged_quarantine_erase`: source, event_day, row_number).
with doomed as (
    select source, event_day, row_number
    from staged_quarantine_erase
)

delete from quarantine
where (source, event_day, row_number) in (select (source, event_day, row_number) from doomed)
