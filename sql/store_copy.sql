-- The whole store, copied into a fresh file (tasks/store.py `compact`): tables, constraints
-- and rows, but none of the freed blocks where deleted rows' bytes linger after a delete and
-- a checkpoint. Both are attached to an in-memory connection: the store as `old` (read only), the new file as
-- `fresh`.
copy from database old to fresh
