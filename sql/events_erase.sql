-- events (erase customers): `nightrec forget`. Parameters: $user_ids (list, the store's ids).
delete from events
where list_contains($user_ids, user_id)
