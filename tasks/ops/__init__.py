"""Operations: run reports and Prefect artifacts, backfill planning."""
