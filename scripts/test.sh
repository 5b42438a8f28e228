#!/usr/bin/env bash
# The README's test command: fresh venv, CPU torch first, the dev, train, ray and node extras, then
# lint, type checks, nvcc compile of every kernel, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-test}
python3 -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip setuptools wheel
python -m pip install -q torch==2.13.0            # the CPU build; a bare 'torch' pulls CUDA wheels
python -m pip install -q -e '.[dev,train,ray,node]'
python -m pip install -q --no-deps tensorrt-stubs  # stubs only: tensorrt itself needs a GPU machine
# The HTML report tests drive Debian's headless Chromium, and the DICOM node's
# interoperability test sends with dcmtk's storescu (nothing is downloaded at run time).
missing=()
{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || missing+=(chromium chromium-driver)
[ -x /usr/bin/storescu ] || missing+=(dcmtk)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "warning: not root, cannot install ${missing[*]}: run 'apt-get install ${missing[*]}', or set RA_SDK_REQUIRE_BROWSER=0 / RA_SDK_REQUIRE_NODE=0 to skip those tests" >&2
    fi
fi
export RA_SDK_REQUIRE_BROWSER=${RA_SDK_REQUIRE_BROWSER:-1}  # a missing browser fails the suite instead of skipping
export RA_SDK_REQUIRE_RAY=${RA_SDK_REQUIRE_RAY:-1}  # likewise a missing Ray (the [ray] extra above)
export RA_SDK_REQUIRE_NODE=${RA_SDK_REQUIRE_NODE:-1}  # and a missing pynetdicom or dcmtk storescu
ruff check .
bash scripts/mypy.sh
bash scripts/compile_kernels.sh
python -m pytest -q "$@"
