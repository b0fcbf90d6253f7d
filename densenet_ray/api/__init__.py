"""The Python API's implementation; ``import densenet_ray as dr`` exposes it (``dr.fit``, ``dr.load``, ...)."""
