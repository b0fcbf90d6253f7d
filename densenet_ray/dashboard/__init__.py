"""The terminal dashboard: sources (Ray's HTTP API, run storage) -> a snapshot (plain data) -> renderers (rich)."""
