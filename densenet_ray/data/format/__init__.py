"""What shard building and reading share: the manifest, shard indexes, tar member rules, image limits and labels."""
