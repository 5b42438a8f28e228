#!/usr/bin/env bash
# The device call of a session with a lent GPU: everything in one command (README,
# "The GPU machine"). Prepare here, once:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --platform any -d .whl pydicom==3.0.2 nibabel==5.4.2
# then call the device tool with:
#   run(command="bash scripts/gpu_session.sh", carry=[".whl"], timeout_s=600)
# It trains (scripts/gpu_train.py: speed, RA + AE side by side, evaluation, the new engine)
# and verifies the GPU code (needs_cuda tests, kernel and engine suites); what comes back
# is $OUT/gpu_summary.json, $OUT/ra_brain_demo.onnx-bundle, train_<card>.json, gpu_suite.json,
# gpu_engine.json and the validation curves.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
. scripts/gpu_env.sh
nvidia-smi -L 2>/dev/null || true
python3 scripts/gpu_train.py --out "$OUT" --budget "${BUDGET:-540}" "$@" 2>&1 | tee "$OUT/gpu_train.log"
