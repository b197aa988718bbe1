#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels a JAX GPU machine lacks, for tools/gpu_benchmark.sh.
#
#   tools/fetch_gpu_wheels.sh            # run here, where pip reaches PyPI
#
# The GPU machine has Python 3.12 with JAX (CUDA), NumPy, h5py, ml-dtypes, rich,
# absl-py, packaging, Pillow, matplotlib and tqdm, but no TensorFlow, no Keras and
# no network. This downloads Keras and the dependencies it lacks (namex, optree and
# optree's typing_extensions) at the versions of this checkout's .venv (what the
# tests ran with), for CPython 3.12 on manylinux x86_64, and builds this package's own
# wheel from the working tree.
# The folder then travels with the repository to the GPU machine (the device tool's
# `carry: [".whl"]`), where tools/gpu_benchmark.sh installs it with pip --no-index.
#
# Environment: PYTHON (default .venv/bin/python: the interpreter whose pip downloads and
# whose Keras version is copied), GPU_PYTHON_VERSION (default 3.12), WHEELS (default .whl).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-.venv/bin/python}
GPU_PYTHON_VERSION=${GPU_PYTHON_VERSION:-3.12}
WHEELS=${WHEELS:-.whl}

# Keras and the packages it needs that the GPU machine does not have, pinned to this
# .venv's versions (optree needs typing_extensions, which PyTorch brings there too; a
# copy makes sure, and a newer one is harmless: it only adds names).
PINS=$("$PYTHON" - <<'EOF'
from importlib.metadata import version
names = ("keras", "namex", "optree", "typing_extensions")
print(" ".join(f"{name}=={version(name)}" for name in names))
EOF
)
echo "wheels for CPython $GPU_PYTHON_VERSION (manylinux x86_64): $PINS"

mkdir -p "$WHEELS"
rm -f "$WHEELS"/*.whl
# shellcheck disable=SC2086  # PINS is a list of requirements
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "$GPU_PYTHON_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$WHEELS" $PINS
# This package, from the working tree as it is now (uncommitted changes included).
"$PYTHON" -m pip wheel --quiet --no-deps -w "$WHEELS" .

# Keep the folder out of git (a checkout's own .git folder; nothing for a worktree).
if [ "$WHEELS" = .whl ] && [ -d .git ] && ! grep -qsx '/.whl/' .git/info/exclude; then
    mkdir -p .git/info && echo '/.whl/' >> .git/info/exclude
fi
ls -l "$WHEELS"
du -sh "$WHEELS"
