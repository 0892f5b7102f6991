-- store_file: the file of the open store (null for an in-memory store); ingestion stages its
-- chunks beside it. Reads DuckDB's catalog function duckdb_databases(). No parameters.
with open_databases as (
    select database_name, path
    from duckdb_databases()
)

select path
from open_databases
where database_name = current_database()
