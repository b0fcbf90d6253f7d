"""What the option groups' declarations share: the common ranges, and the identity and sweep roles."""

from __future__ import annotations

from typing import Any

from densenet_ray.train.config.declaration import Range

AT_LEAST_ONE, NOT_NEGATIVE, OFF_AT_ZERO = Range(1), Range(0), Range(0, note=" (0 is off)")
SHARE, OPEN_SHARE = Range(0.0, 1.0), Range(0.0, 1.0, high_open=True)
FIXED: Any = {"resume": "fixed"}  # changes what the run computes: part of its identity
OWNED: Any = {"sweep": "owned"}  # set by a sweep for each trial
SHARED: Any = {"sweep": "shared"}  # given to a sweep once for all its trials
