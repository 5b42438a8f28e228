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


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> dict[str, Any]:
    """vendor, family, model, MHz of the first CPU (Linux /proc/cpuinfo)."""
    out: dict[str, Any] = {}
    keys = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "model name": "name", "cpu MHz": "mhz"}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                k, _, v = line.partition(":")
                k = k.strip()
                if k in keys and keys[k] not in out:
                    out[keys[k]] = v.strip()
                if not line.strip() and out:
                    break
    except OSError:
        pass
    return out


def cpu_peak_gmacs() -> dict[str, Any]:
    """This CPU's peak multiply-adds per second (billions) per data type, from its cores,
    clock and vector units, with the assumptions stated:

    - fp32: FMA lanes per cycle per core: 32 with AVX-512 on two 512-bit FMA pipes; 16 on
      AMD Zen 4 (family 25: AVX-512 runs on two 256-bit pipes) or with AVX2 + FMA; 4 else;
    - int8: 4 int8 multiply-adds per 32-bit lane with VNNI (vpdpbusd), 2 without;
    - fp16: ONNX Runtime's CPU kernels compute it through fp32, so the fp32 peak.
    """
    m = cpu_model()
    flags = cpu_flags()
    cores = os.cpu_count() or 1
    try:
        ghz = float(m.get("mhz", 0)) / 1000
    except ValueError:
        ghz = 0.0
    zen4 = m.get("vendor") == "AuthenticAMD" and m.get("family") == "25"
    if "avx512f" in flags:
        lanes, why = (16, "AVX-512 on two 256-bit FMA pipes (AMD Zen 4)") if zen4 else (32, "AVX-512, two 512-bit FMA pipes")
    elif "avx2" in flags and "fma" in flags:
        lanes, why = 16, "AVX2, two 256-bit FMA pipes"
    else:
        lanes, why = 4, "SSE"
    int8 = 4 if cpu_int8_dot() else 2
    fp32 = cores * ghz * lanes
    return {"fp32": fp32, "fp16": fp32, "int8": fp32 * int8, "cores": cores, "ghz": ghz,
            "assumptions": f"{cores} cores x {ghz:.2f} GHz x {lanes} fp32 FMA lanes/cycle ({why}); int8 x{int8} ({'VNNI' if int8 == 4 else 'no VNNI'}); fp16 computed as fp32"}


def cpu_int8_dot() -> bool:
    """int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX) that ONNX Runtime's
    int8 kernels use."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


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
