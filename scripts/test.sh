#!/usr/bin/env bash
# The README's test command: fresh venv, CPU torch first, the dev + train extras, then
# lint, type checks, nvcc compile of every kernel, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-test}
python3 -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip setuptools wheel
python -m pip install -q torch==2.13.0            # the CPU build; a bare 'torch' pulls CUDA wheels
python -m pip install -q -e '.[dev,train]'
python -m pip install -q --no-deps tensorrt-stubs  # stubs only: tensorrt itself needs a GPU machine
ruff check .
bash scripts/mypy.sh
bash scripts/compile_kernels.sh
python -m pytest -q "$@"
