"""ra_sdk.kernels: CUDA kernels and their CuPy wrappers."""
