"""Build the wheel, install it into a fresh venv, and check the file set and the import cost."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.slow  # builds a wheel and a venv


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
    )
    (whl,) = out.glob("ra_sdk-*.whl")
    return whl


def test_wheel_file_set(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops <= {"ra_sdk", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    for pkg in ("ra_sdk/__init__.py", "ra_sdk/train/__init__.py", "ra_sdk/export/__init__.py", "ra_sdk/kernels/__init__.py"):
        assert pkg in names
    cu = [n for n in names if n.endswith(".cu")]
    assert cu == sorted(str(p.relative_to(ROOT)).replace("kernels/", "ra_sdk/kernels/") for p in (ROOT / "kernels").glob("*.cu"))
    assert not any(n.startswith(("train/", "export/", "tests/")) for n in names)


@pytest.mark.slow
def test_fresh_venv_install_is_light(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True, env=env)
    code = (
        "import sys, time; t = time.perf_counter(); import ra_sdk; dt = time.perf_counter() - t; "
        "print([m for m in ('torch', 'tensorrt', 'cupy') if m in sys.modules]); print(dt)"
    )
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True, env=env, cwd=tmp_path).stdout.split("\n")
    assert out[0] == "[]"
    assert float(out[1]) < 0.5
    r = subprocess.run([str(venv / "bin" / "ra-sdk"), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0 and "Usage" in r.stdout
    # The core install has no torch: the torch-only parts must say which extra to install.
    r = subprocess.run([str(venv / "bin" / "ra-sdk"), "info"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0 and "pip install 'ra-sdk[train]'" in r.stdout
