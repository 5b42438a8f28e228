"""ra_sdk.export: checkpoint -> ONNX -> TensorRT engines, bundles and calibration.

Installed as ``ra_sdk.export`` (the repository folder is ``export/``). Not built yet:
see the export/engines issue.
"""
