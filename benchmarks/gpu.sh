#!/usr/bin/env bash
# The GPU benchmark (benchmarks/gpu.py) with whatever Python holds PyTorch: this checkout's .venv, else python3.
# A GPU machine without webdataset gets it from wheels in .whl/ (pure Python: webdataset, braceexpand), fetched on a
# machine with pip by `pip download --no-deps -d .whl webdataset==1.0.2 braceexpand`.
#   bash benchmarks/gpu.sh --out gpu.json
#   bash benchmarks/gpu.sh --device cpu --quick
set -euo pipefail
cd "$(dirname "$0")/.."
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
if ! "$python" -c "import webdataset" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu-bench-site .whl/*.whl
    export PYTHONPATH="/tmp/gpu-bench-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec "$python" benchmarks/gpu.py "$@"
