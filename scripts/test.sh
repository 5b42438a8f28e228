#!/usr/bin/env bash
# The README's test command: fresh venv, CPU torch first, the dev + train + ray extras, then
# lint, type checks, nvcc compile of every kernel, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-test}
python3 -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip setuptools wheel
python -m pip install -q torch==2.13.0            # the CPU build; a bare 'torch' pulls CUDA wheels
python -m pip install -q -e '.[dev,train,ray]'
python -m pip install -q --no-deps tensorrt-stubs  # stubs only: tensorrt itself needs a GPU machine
# The HTML report tests drive Debian's headless Chromium (nothing is downloaded at run time).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "warning: chromium/chromedriver missing and not root: run 'apt-get install chromium chromium-driver', or set RA_SDK_REQUIRE_BROWSER=0 to skip the browser tests" >&2
    fi
fi
export RA_SDK_REQUIRE_BROWSER=${RA_SDK_REQUIRE_BROWSER:-1}  # a missing browser fails the suite instead of skipping
export RA_SDK_REQUIRE_RAY=${RA_SDK_REQUIRE_RAY:-1}  # likewise a missing Ray (the [ray] extra above)
ruff check .
bash scripts/mypy.sh
bash scripts/compile_kernels.sh
python -m pytest -q "$@"
