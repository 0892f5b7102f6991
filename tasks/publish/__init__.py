"""Publishing: top-K Parquet per run date with a manifest, swapped in atomically."""
