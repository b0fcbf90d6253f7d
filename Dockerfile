# The cluster image: Ray's own GPU image with the pinned torch and torchvision and this package installed, for the
# KubeRay manifests (cluster/kuberay/rayjob.yaml names it REGISTRY/densenet-ray:latest). cluster.yaml does not need
# it: its setup_commands install the same pins on rayproject/ray.
#   docker build -t REGISTRY/densenet-ray:latest . && docker push REGISTRY/densenet-ray:latest
# No credentials go into the image: pods reach S3 through their service account (IRSA on EKS).
FROM rayproject/ray:2.60.0-py311-gpu

# Ray's images run as the non-root user "ray" (uid 1000, group users) from /home/ray; this one keeps that user.
USER ray
WORKDIR /home/ray/densenet-ray

# The heavy, rarely changing layer first: the CUDA builds of torch and torchvision that pyproject.toml pins.
RUN pip install --no-cache-dir "torch==2.14.1" "torchvision==0.29.1"

COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users densenet_ray ./densenet_ray
COPY --chown=ray:users jobs ./jobs
# Ray itself is already in the base image at the pinned version; this adds the package and its other dependencies.
RUN pip install --no-cache-dir . && python -c "import densenet_ray, ray, torch; assert ray.__version__ == '2.60.0'"
