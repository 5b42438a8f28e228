"""ra_sdk.export: checkpoint -> ONNX -> TensorRT engines and engine files.

Installed as ``ra_sdk.export`` (the repository folder is ``export/``). The ONNX steps need
the ``train`` extra (torch, onnx); the TensorRT steps need the ``trt`` extra and a GPU.
"""
