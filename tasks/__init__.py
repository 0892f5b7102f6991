"""nightrec's work: plain typed functions grouped by stage, each wrapped by a thin Prefect task."""
