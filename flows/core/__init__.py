"""The Prefect-free core: plant time windows, Polars transforms, checks, schema and database I/O."""
