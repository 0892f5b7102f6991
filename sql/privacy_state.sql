-- privacy_state (upsert one setting of the store): its id mode, the key fingerprints.
-- Parameters: $name, $value.
insert into privacy_state (name, value, recorded_at)
values ($name, $value, now()::timestamp)
on conflict (name) do update set value = excluded.value, recorded_at = excluded.recorded_at
