"""Packaging for ra-sdk.

The repository keeps the layout of the design card (``train/``, ``export/``, ``kernels/``
beside ``ra_sdk/``); installed, they live inside the ``ra_sdk`` namespace so that no
top-level module called ``train`` or ``export`` is ever installed.
"""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
version: dict[str, str] = {}
exec((HERE / "ra_sdk" / "_version.py").read_text(), version)

CORE = [
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    "onnxruntime>=1.17",
    "click>=8.1",
    "pydicom>=3.0",
    "nibabel>=5.0",
    "tqdm>=4.66",
    # Pixel-data handlers that install as wheels: JPEG baseline/extended/lossless,
    # JPEG-LS, JPEG 2000 and RLE through pydicom's pixel backends.
    "pylibjpeg>=2.0",
    "pylibjpeg-libjpeg>=2.1",
    "pylibjpeg-openjpeg>=2.3",
    "pylibjpeg-rle>=2.0",
    "pyjpegls>=1.3",
]
EXTRAS = {
    "gpu": ["cupy-cuda12x>=13", "onnxruntime-gpu>=1.17"],
    "trt": ["tensorrt>=10"],
    "train": ["torch>=2.2", "onnx>=1.15", "safetensors>=0.4"],
    "dicom": ["highdicom>=0.22"],  # DICOM Secondary Capture + SEG outputs
    "ray": ["ray[data]==2.60.0"],  # screen --ray: Ray Data tasks + actor pool (pinned: tested release)
    "node": ["pynetdicom>=3.0,<4", "highdicom>=0.22"],  # ra-sdk listen: DICOM node (C-STORE SCP/SCU)
    "dev": [
        "pytest>=7",
        "ruff>=0.5",
        "mypy>=1.8",
        "scikit-image>=0.22",
        "scipy>=1.10",
        "scikit-learn>=1.3",
        "build>=1.0",
        "highdicom>=0.22",
        "selenium>=4.20",  # drives Debian's chromium + chromedriver in the report tests
    ],
}

setup(
    name="ra-sdk",
    version=version["__version__"],
    description="Screening medical images with Reversed Auto-Encoders (unsupervised anomaly detection)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        "ra_sdk",
        "ra_sdk.io",
        "ra_sdk.data",
        "ra_sdk.scoring",
        "ra_sdk.scoring.cpu",
        "ra_sdk.runners",
        "ra_sdk.cli",
        "ra_sdk.report",
        "ra_sdk.export",
        "ra_sdk.train",
        "ra_sdk.kernels",
        "ra_sdk.node",
    ],
    package_dir={
        "ra_sdk": "ra_sdk",
        "ra_sdk.export": "export",
        "ra_sdk.train": "train",
        "ra_sdk.kernels": "kernels",
    },
    package_data={
        "ra_sdk.kernels": ["*.cu", "*.cuh"],
        "ra_sdk.data": ["*.npz", "*.txt", "*.json", "*.onnx-bundle"],
        "ra_sdk.report": ["*.html"],
        "ra_sdk": ["py.typed"],
    },
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["ra-sdk = ra_sdk.cli:main"]},
    zip_safe=False,
)
