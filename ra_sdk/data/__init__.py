"""Embedded data: axial slices of the MNI ICBM152 2009a template (see MNI_ICBM152_NOTICE.txt).

Loaded from the package, never downloaded. ``load_template()`` gives the raw uint8 slices
(T1, grey- and white-matter maps); ``load_normal_slices()`` gives model-ready images.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "mni_icbm152_axial.npz"


@functools.lru_cache(maxsize=1)
def load_template() -> dict[str, np.ndarray]:
    """{"t1", "gm", "wm"}: (Z, H, W) uint8 axial slices (rows A->P, columns R->L,
    inferior -> superior); "z_index": each slice's number in the 1 mm template."""
    with np.load(TEMPLATE, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    for v in out.values():
        v.setflags(write=False)
    return out


def load_normal_slices(size: int = 128, preset: str = "brain-mri-t1") -> np.ndarray:
    """Every embedded T1 slice preprocessed with ``preset`` at ``size``: (N, size, size) float32."""
    from ..preprocess import get_preset, to_model_input

    p = get_preset(preset).replace(size=size)
    t1 = load_template()["t1"]
    return np.stack([to_model_input(s, p) for s in t1])


#: the bundled, calibrated demo engine (portable ONNX bundle; scripts/make_demo_engine.sh)
DEMO_ENGINE = HERE / "ra_brain_demo.onnx-bundle"
