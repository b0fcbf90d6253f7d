import sys

from densenet_ray.cli import main

sys.exit(main())
