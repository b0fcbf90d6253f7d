"""Data: storage (local and S3), shard building and verification, the training pipeline and transforms."""
