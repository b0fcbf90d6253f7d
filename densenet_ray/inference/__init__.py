"""Batch inference on the Ray cluster: a shard set classified by an actor pool with Ray Data, one Parquet file a
shard (``densenet-ray predict MODEL DATA --out DIR``)."""
