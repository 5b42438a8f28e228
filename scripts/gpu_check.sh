#!/usr/bin/env bash
# The GPU verification run (one call on a lent GPU, well under 9 minutes): the needs_cuda
# tests, CUDA kernel parity and throughput (benchmarks/gpu_suite.py), the torch CUDA runner
# with the kernels vs the CPU path on the demo studies and images/s at batch 1, 64 and 256 in
# fp32 and fp16 (benchmarks/gpu_engine.py). Results: $OUT/gpu_suite.json, $OUT/gpu_engine.json.
#
# On the device machine (its image has torch, cupy, scikit-image; pydicom and nibabel travel
# as wheels in .whl/: see benchmarks/README.md):
#   run(command="bash scripts/gpu_check.sh", carry=[".whl"])
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
# The installed layout (setup.py maps these folders into ra_sdk) without installing.
for d in kernels train export; do [ -e "ra_sdk/$d" ] || ln -s "../$d" "ra_sdk/$d"; done
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -m benchmarks.gpu_suite --out "$OUT/gpu_suite.json" 2>&1 | grep -v Warning | tee "$OUT/gpu_suite.log"
python3 -m benchmarks.gpu_engine --out "$OUT/gpu_engine.json" 2>&1 | grep -v Warning | tee "$OUT/gpu_engine.log"
