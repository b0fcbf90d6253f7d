"""``python -m densenet_ray.cifar``: train on CIFAR-10, CIFAR-100 or SVHN (the same as ``densenet-ray train cifar``)."""

import sys

from densenet_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "cifar", *sys.argv[1:]]))
