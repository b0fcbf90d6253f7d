"""The run directory: its files and records, its identity and lease, the checks before a run starts."""
