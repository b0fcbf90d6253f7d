"""Reading shards for training and prediction: the shard reader, the epoch plan, the input pipeline and transforms."""
