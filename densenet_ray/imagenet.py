"""``python -m densenet_ray.imagenet``: train on ImageNet (the same as ``densenet-ray train imagenet``)."""

import sys

from densenet_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "imagenet", *sys.argv[1:]]))
