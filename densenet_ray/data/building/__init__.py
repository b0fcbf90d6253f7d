"""Building shards: dataset sources, conversion to WebDataset shards with their manifest, the parallel build on Ray
and verification."""
