"""Point-in-time features in Polars: everything is computed from events before as_of."""
