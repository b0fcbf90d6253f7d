"""Training: config, the epoch engine, the Ray Train worker loop and the launcher."""
