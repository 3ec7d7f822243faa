"""Database I/O; dialect differences stay inside this package."""
