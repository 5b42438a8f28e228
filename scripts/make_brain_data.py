"""Regenerate ra_sdk/data/mni_icbm152_axial.npz from the nilearn wheel (network: PyPI only).

    python scripts/make_brain_data.py            # writes ra_sdk/data/mni_icbm152_axial.npz

Takes the MNI ICBM152 2009a symmetric templates (T1, grey- and white-matter probability
maps) that lie inside the nilearn 0.14.1 wheel, reads them with ra-sdk's own NIfTI reader
(RAS+, axial slices, radiological view), keeps the axial slices that hold brain, crops
them to the brain's bounding box and stores them as uint8 in a zip written with fixed
timestamps, so the output is byte-identical on every run. Nothing at run time needs the
network or nilearn.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from ra_sdk.io.nifti import read_nifti  # noqa: E402

WHEEL = "nilearn==0.14.1"
MEMBERS = {
    "t1": "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "nilearn/datasets/data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "nilearn/datasets/data/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
OUT = ROOT / "ra_sdk" / "data" / "mni_icbm152_axial.npz"


def write_npz_reproducibly(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, WHEEL], check=True)
        (whl,) = Path(tmp).glob("nilearn-*.whl")
        vols = {}
        with zipfile.ZipFile(whl) as zf:
            for key, member in MEMBERS.items():
                dst = Path(tmp) / Path(member).name
                dst.write_bytes(zf.read(member))
                vols[key] = read_nifti(dst).pixels  # (Z, H, W): inferior -> superior
    t1 = vols["t1"]
    # Axial slices that hold brain: at least 8% of the slice above 5% of the template maximum.
    brain = t1 > 0.05 * t1.max()
    keep = np.nonzero(brain.mean((1, 2)) >= 0.08)[0]
    z0, z1 = int(keep[0]), int(keep[-1]) + 1
    ys, xs = np.nonzero(brain[z0:z1].any(0))
    m = 4
    y0, y1 = max(int(ys.min()) - m, 0), min(int(ys.max()) + m + 1, t1.shape[1])
    x0, x1 = max(int(xs.min()) - m, 0), min(int(xs.max()) + m + 1, t1.shape[2])
    crop = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
    arrays = {
        "t1": np.clip(np.rint(t1[crop] / t1.max() * 255), 0, 255).astype(np.uint8),
        "gm": np.clip(np.rint(vols["gm"][crop] / max(vols["gm"].max(), 1e-6) * 255), 0, 255).astype(np.uint8),
        "wm": np.clip(np.rint(vols["wm"][crop] / max(vols["wm"].max(), 1e-6) * 255), 0, 255).astype(np.uint8),
        "z_index": np.arange(z0, z1, dtype=np.int16),  # slice numbers in the 1 mm template
    }
    write_npz_reproducibly(OUT, arrays)
    digest = hashlib.sha256(OUT.read_bytes()).hexdigest()
    print(f"wrote {OUT.relative_to(ROOT)}: {arrays['t1'].shape[0]} slices of {arrays['t1'].shape[1:]}, "
          f"{OUT.stat().st_size / 1e6:.2f} MB, sha256 {digest}")


if __name__ == "__main__":
    main()
