"""A sample's label, as sources give it and shards store it."""

Label = int | tuple[int, ...]  # a class index, or a multi-label sample's class indices (none: a tuple of none)
