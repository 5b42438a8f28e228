"""Radiograph-like test data made at test time: chest-shaped images with a collimator
border and a burned-in marker in it, written as users' files are (DICOM DX MONOCHROME1
16-bit, some with a VOI window; 16-bit PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ra_sdk.io.write import write_dicom, write_png

BORDER_VALUE = 60000  # unexposed detector under the collimator: white on a display


def chest(rng: np.random.Generator, h: int = 300, w: int = 260, *, border: tuple[int, int, int, int] = (18, 12, 14, 10)) -> np.ndarray:
    """(h, w) uint16 display values (larger = brighter, MONOCHROME2): a body with two dark
    lungs, a spine, ribs, noise; uniform borders (top, bottom, left, right) with an "L"
    marker burned into the top one."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    cy, cx = h * (0.52 + 0.03 * rng.standard_normal()), w * (0.5 + 0.02 * rng.standard_normal())
    body = ((yy - cy) / (0.46 * h)) ** 2 + ((xx - cx) / (0.45 * w)) ** 2 < 1
    img = np.where(body, 30000.0, 8000.0)
    for side in (-1, 1):
        lung = ((yy - cy + 0.05 * h) / (0.3 * h)) ** 2 + ((xx - cx - side * 0.2 * w) / (0.13 * w)) ** 2 < 1
        img[lung] = 14000 + 1500 * rng.random()
    img[np.abs(xx - cx) < 0.05 * w] += 12000  # the spine
    img += 3000 * (np.sin(yy / (7 + rng.random())) > 0.85) * body  # ribs
    img += rng.normal(0, 600, img.shape)
    img = np.clip(img, 0, 50000)
    t, b, lf, r = border
    img[:t], img[h - b :], img[:, :lf], img[:, w - r :] = BORDER_VALUE, BORDER_VALUE, BORDER_VALUE, BORDER_VALUE
    img[3:12, 40:42] = 2000  # an "L" marker, dark text in the white top band
    img[10:12, 40:47] = 2000
    return img.astype(np.uint16)


def write_normals(folder: Path, n_dicom: int = 12, n_png: int = 12, seed: int = 0) -> list[str]:
    """A folder of normal chest radiographs; returns the study ids discovery will give."""
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n_dicom):
        display = chest(rng)
        stored = (65535 - display.astype(np.int64)).astype(np.uint16)  # MONOCHROME1: larger stored = darker
        window = (32768.0, 65536.0) if i % 3 == 0 else None
        write_dicom(folder / "dx" / f"cxr{i:02d}.dcm", stored, patient_id=f"CXR{i}", study_uid=f"1.7.{i}", series_uid=f"1.7.{i}.1", modality="DX", photometric="MONOCHROME1", window=window)
        ids.append(f"dx/cxr{i:02d}.dcm")
    for i in range(n_png):
        write_png(folder / "png" / f"cxr{i:02d}.png", chest(rng))
        ids.append(f"png/cxr{i:02d}.png")
    return ids
