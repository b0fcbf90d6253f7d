"""``python -m densenet_ray.images``: train on your own images (the same as ``densenet-ray train images``)."""

import sys

from densenet_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "images", *sys.argv[1:]]))
