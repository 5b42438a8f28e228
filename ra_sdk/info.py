"""What is usable on this machine, and why the rest is not. No heavy import at module load."""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata as md
import os
import sys
from typing import Any

from ._optional import is_installed
from ._version import __version__

_DISTS = (
    "numpy", "opencv-python-headless", "onnxruntime", "onnxruntime-gpu", "pydicom", "nibabel",
    "click", "tqdm", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle",
    "pyjpegls", "torch", "onnx", "safetensors", "tensorrt", "cupy-cuda12x", "cupy-cuda13x",
    "scikit-image", "highdicom",
)


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


#: the driver library by its SONAME on each platform (the loader's own search path)
_LIBCUDA = {"win32": ("nvcuda.dll",), "darwin": ()}.get(sys.platform, ("libcuda.so.1", "libcuda.so"))


@functools.lru_cache(maxsize=1)
def cuda_driver() -> tuple[bool, str]:
    """Whether an NVIDIA driver (libcuda) is loadable and sees a device (asked once).

    The library is opened by its SONAME: ``ctypes.util.find_library`` would run ldconfig
    and gcc on every start, which a screening tool has no business doing.
    """
    lib = None
    for name in _LIBCUDA:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return False, "no NVIDIA driver found (libcuda cannot be loaded): this machine has no usable GPU"
    if lib.cuInit(0) != 0:
        return False, "NVIDIA driver present but cuInit failed: no usable GPU"
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return False, "NVIDIA driver present but it reports no GPU"
    return True, f"{count.value} CUDA device(s)"


def platform_name() -> str:
    """``Linux-6.1-x86_64``-style, from os.uname alone (``platform.platform()`` runs
    ``uname -p`` in a subprocess, which a screening tool has no need to do)."""
    u = os.uname() if hasattr(os, "uname") else None
    return f"{u.sysname}-{u.release}-{u.machine}" if u else sys.platform


def collect() -> dict[str, Any]:
    """Versions, devices and backends, each backend with ``usable`` and a ``why``."""
    gpu_ok, gpu_why = cuda_driver()
    backends: dict[str, dict[str, Any]] = {}

    # ONNX Runtime: the portable backend of the core install.
    if is_installed("onnxruntime"):
        from ._optional import import_onnxruntime

        ort = import_onnxruntime()

        providers = ort.get_available_providers()
        backends["onnxruntime-cpu"] = {"usable": "CPUExecutionProvider" in providers, "why": "core install"}
        for ep, label in (("CUDAExecutionProvider", "onnxruntime-cuda"), ("TensorrtExecutionProvider", "onnxruntime-tensorrt")):
            if ep not in providers:
                why = f"{ep} not in this onnxruntime build; install onnxruntime-gpu (pip install 'ra-sdk[gpu]')"
            elif not gpu_ok:
                why = gpu_why
            else:
                why = "available"
            backends[label] = {"usable": ep in providers and gpu_ok, "why": why}
    else:
        backends["onnxruntime-cpu"] = {"usable": False, "why": "onnxruntime not installed (core dependency; reinstall ra-sdk)"}

    if is_installed("torch"):
        backends["torch-cpu"] = {"usable": True, "why": f"torch {_version('torch')}"}
        backends["torch-cuda"] = {"usable": gpu_ok, "why": gpu_why if not gpu_ok else "torch.cuda (checked on first use)"}
    else:
        why = "torch not installed; pip install 'ra-sdk[train]'"
        backends["torch-cpu"] = {"usable": False, "why": why}
        backends["torch-cuda"] = {"usable": False, "why": why}

    if not is_installed("tensorrt"):
        trt_why = "tensorrt not installed; pip install 'ra-sdk[trt]'" + ("" if gpu_ok else f"; also {gpu_why}")
        backends["tensorrt"] = {"usable": False, "why": trt_why}
    else:
        backends["tensorrt"] = {"usable": gpu_ok, "why": gpu_why if not gpu_ok else f"tensorrt {_version('tensorrt')}"}

    if not is_installed("cupy"):
        k_why = "cupy not installed; pip install 'ra-sdk[gpu]'" + ("" if gpu_ok else f"; also {gpu_why}")
        backends["cuda-kernels"] = {"usable": False, "why": k_why}
    else:
        backends["cuda-kernels"] = {"usable": gpu_ok, "why": gpu_why}

    return {
        "ra_sdk": __version__,
        "python": sys.version.split()[0],
        "platform": platform_name(),
        "cpu_count": os.cpu_count(),
        "gpu": {"usable": gpu_ok, "why": gpu_why},
        "packages": {d: v for d in _DISTS if (v := _version(d))},
        "backends": backends,
    }


def format_report(info: dict[str, Any]) -> str:
    lines = [
        f"ra-sdk {info['ra_sdk']}  (Python {info['python']}, {info['platform']})",
        f"CPU cores: {info['cpu_count']}",
        f"GPU: {'yes' if info['gpu']['usable'] else 'no'} ({info['gpu']['why']})",
        "",
        "Packages:",
    ]
    lines += [f"  {k:<24} {v}" for k, v in info["packages"].items()]
    lines += ["", "Backends:"]
    for name, b in info["backends"].items():
        mark = "usable " if b["usable"] else "missing"
        lines.append(f"  {name:<22} {mark}  {b['why']}")
    return "\n".join(lines)
