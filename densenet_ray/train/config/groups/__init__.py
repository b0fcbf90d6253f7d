"""The training options by ``config.yaml`` group, one dataclass a group; ``TrainConfig`` joins them."""
