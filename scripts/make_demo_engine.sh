#!/usr/bin/env bash
# Regenerate the bundled demo engine from the checkpoint in models/ (needs the train extra):
# export (parity-checked against PyTorch), then calibrate on the embedded validation split.
set -euo pipefail
cd "$(dirname "$0")/.."
ra-sdk export models/ra-tiny-brain-v0 --out ra_sdk/data/ra_brain_demo.onnx-bundle --perceptual features --aggregation topk
ra-sdk calibrate ra_sdk/data/ra_brain_demo.onnx-bundle --normals embedded -n 256
