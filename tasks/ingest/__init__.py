"""Ingestion: landing files -> source adapter -> contract -> DuckDB events and quarantine."""
