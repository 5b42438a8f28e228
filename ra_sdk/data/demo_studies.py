"""Demo studies a user could have, and a preview picture of the synthetic data.

``write_demo_studies(out)`` writes::

    out/studies/dicom/case_0000.dcm     single-slice MR DICOM, 16-bit, MONOCHROME2
    out/studies/png/case_0001.png       8- or 16-bit PNG
    out/studies/nifti/case_0002.nii.gz  multi-slice volumes (one slice may hold a finding)
    out/masks/case_0003.png             pixel mask of each finding (.nii.gz for volumes)
    out/labels.csv                      study, type, mask, slice

The study ids in labels.csv are the ids that ``ra_sdk.io.discover(out / "studies")``
gives. Normals and pathologies come from the test split, never from training data.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .augment import sample, usable_slices
from .pathology import TYPES, make, preferred_slices

log = logging.getLogger(__name__)

VOLUME_SLICES = 8


@dataclass(frozen=True)
class DemoSpec:
    n_normal: int = 60
    n_per_type: int = 12
    n_volumes: int = 6  # of the studies above, this many are written as NIfTI volumes
    seed: int = 0
    size: int = 128


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def write_demo_studies(out: str | Path, spec: DemoSpec | None = None) -> Path:
    """Write the demo folder (see module docstring); returns the path of labels.csv."""
    from ..io.write import write_dicom, write_nifti, write_png

    spec = spec or DemoSpec()
    out = Path(out)
    (out / "studies").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    cases = [("normal", i) for i in range(spec.n_normal)] + [(t, i) for t in TYPES for i in range(spec.n_per_type)]
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(cases))
    volume_cases = set(rng.choice(len(cases), size=min(spec.n_volumes, len(cases)), replace=False).tolist())
    rows = []
    for n, ci in enumerate(order):
        kind, i = cases[ci]
        name = f"case_{n:04d}"
        index = 10_000 * (TYPES.index(kind) + 1 if kind != "normal" else 0) + i
        pool = preferred_slices(kind) if kind != "normal" else None
        mask_rel, slice_no = "", ""
        if ci in volume_cases:
            slices_pool = usable_slices()
            z0 = int(slices_pool[len(slices_pool) // 2 - VOLUME_SLICES // 2])
            zs = [z0 + k for k in range(VOLUME_SLICES)]
            vol = np.stack([sample("test", index, seed=spec.seed, size=spec.size, slice_index=z).image for z in zs])
            if kind != "normal":
                k = VOLUME_SLICES // 2
                s = sample("test", index, seed=spec.seed, size=spec.size, slice_index=zs[k])
                img, mask = make(kind, s, seed=spec.seed)
                vol[k] = img
                mvol = np.zeros(vol.shape, np.uint8)
                mvol[k] = mask
                write_nifti(out / "masks" / f"{name}.nii.gz", mvol)
                mask_rel, slice_no = f"masks/{name}.nii.gz", str(k)
            rel = f"nifti/{name}.nii.gz"
            write_nifti(out / "studies" / rel, (vol * 1000).astype(np.int16))
        else:
            s = sample("test", index, seed=spec.seed, size=spec.size, slices=pool)
            img = s.image
            if kind != "normal":
                img, mask = make(kind, s, seed=spec.seed)
                write_png(out / "masks" / f"{name}.png", (mask * 255).astype(np.uint8))
                mask_rel, slice_no = f"masks/{name}.png", "0"
            if n % 2 == 0:
                rel = f"dicom/{name}.dcm"
                write_dicom(
                    out / "studies" / rel,
                    np.round(img * 4000).astype(np.uint16),
                    patient_id=f"DEMO-{n:04d}",
                    study_uid=_uid(spec.seed, name, "study"),
                    series_uid=_uid(spec.seed, name, "series"),
                    extra={"SOPInstanceUID": _uid(spec.seed, name, "sop"), "SeriesDescription": "T1 axial (synthetic)"},
                )
            else:
                rel = f"png/{name}.png"
                pixels = np.round(img * 65535).astype(np.uint16) if n % 4 == 1 else np.round(img * 255).astype(np.uint8)
                write_png(out / "studies" / rel, pixels)
        rows.append({"study": rel, "type": kind, "mask": mask_rel, "slice": slice_no})
    rows.sort(key=lambda r: r["study"])
    labels = out / "labels.csv"
    with open(labels, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["study", "type", "mask", "slice"])
        w.writeheader()
        w.writerows(rows)
    log.info("wrote %d demo studies to %s", len(rows), out)
    return labels


def read_labels(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def preview(out: str | Path, *, rows: int = 3, seed: int = 0, size: int = 128) -> Path:
    """One PNG grid: a normal image and each pathology type (mask outlined in red) per row."""
    import cv2

    from ..io.write import write_png

    lines = []
    for r in range(rows):
        base = sample("test", 90_000 + r, seed=seed, size=size)
        tiles = [np.repeat(base.image[..., None], 3, -1)]
        for t in TYPES:
            pool = preferred_slices(t)
            s = sample("test", 90_000 + r, seed=seed, size=size, slices=pool) if pool is not None else base
            img, mask = make(t, s, seed=seed)
            rgb = np.repeat(img[..., None], 3, -1).copy()
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(rgb, contours, -1, (0.0, 0.0, 1.0), 1)  # BGR red
            tiles.append(rgb)
        lines.append(np.concatenate(tiles, 1))
    grid = (np.concatenate(lines, 0) * 255).astype(np.uint8)
    header = np.zeros((18, grid.shape[1], 3), np.uint8)
    for k, label in enumerate(("normal", *TYPES)):
        cv2.putText(header, label.replace("_", " ")[:18], (k * size + 2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1, cv2.LINE_AA)
    return write_png(out, np.concatenate([header, grid], 0))
