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
# tensorrt-stubs installs tensorrt/__init__.pyi without a py.typed marker, which mypy
# ignores in site-packages: put a copy of the stubs on MYPYPATH instead.
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir "$stage/stubs"
for pkg in tensorrt tensorrt_bindings; do
  if [ -f "$site/$pkg/__init__.pyi" ]; then cp -r "$site/$pkg" "$stage/stubs/$pkg"; fi
done
python scripts/fix_trt_stubs.py "$stage/stubs"  # tensorrt-stubs 10.13 has syntax errors
MYPYPATH="$stage/stubs" mypy --config-file pyproject.toml "${MYPY_TARGETS:-$stage/ra_sdk}" "$@"
