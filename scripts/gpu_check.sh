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
. scripts/gpu_env.sh
nvidia-smi -L
python3 -m benchmarks.gpu_suite --out "$OUT/gpu_suite.json" 2>&1 | grep -v Warning | tee "$OUT/gpu_suite.log"
python3 -m benchmarks.gpu_engine --out "$OUT/gpu_engine.json" 2>&1 | grep -v Warning | tee "$OUT/gpu_engine.log"
