"""The CPU reference path of the score (numpy + OpenCV), one module per op, each paired
with the CUDA kernel that must equal it: ``clahe`` with ``ra_sdk.kernels.clahe``, ``score``
(Gaussian, SSIM, feature distance) with ``ra_sdk.kernels.score``."""
