#!/usr/bin/env bash
# Type-check the package as it is installed: ra_sdk with export/, train/ and kernels/
# inside it (setup.py's package_dir mapping, which mypy cannot follow on its own).
# The TensorRT code is checked against tensorrt-stubs (pip install --no-deps tensorrt-stubs).
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/ra_sdk"
for f in ra_sdk/*; do ln -s "$PWD/$f" "$stage/ra_sdk/$(basename "$f")"; done
for d in export train kernels; do ln -s "$PWD/$d" "$stage/ra_sdk/$d"; done
mypy --config-file pyproject.toml "$stage/ra_sdk" "$@"
