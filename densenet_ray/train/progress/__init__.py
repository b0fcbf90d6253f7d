"""What a run reports while it trains: epoch records, in-epoch progress, the driver's display of it, and tracking
services."""
