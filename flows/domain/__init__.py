"""The pure rules: frames and values in, frames, values and plans out. No I/O, no environment, no
Prefect (import-linter keeps it so)."""
