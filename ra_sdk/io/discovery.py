"""Study discovery: walk a folder and group files into studies, deterministically."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ReadError
from . import dicom
from .nifti import is_nifti, read_nifti
from .raster import is_raster, read_raster
from .study import Slices, Study

if TYPE_CHECKING:
    from ..presets import Preset

log = logging.getLogger(__name__)


def _walk_files(root: Path) -> Iterable[Path]:
    """Files under ``root``, recursively; follows symlinks but never loops; skips hidden names."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink loop or a second way into the same folder
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            if p.is_file():
                yield p


def classify(path: Path) -> str | None:
    """"nifti", "image", "dicom", or None for files that are not studies (csv, txt...)."""
    if is_nifti(path):
        return "nifti"
    if is_raster(path):
        return "image"
    if dicom.looks_like_dicom(path):
        return "dicom"
    return None


def discover(root: str | Path) -> list[Study]:
    """Find the studies under ``root`` (a folder or one file), sorted by id.

    A DICOM series (files sharing SeriesInstanceUID within one folder tree) is one study,
    its files sorted by position along the slice normal, then instance number. A DICOM
    file whose header cannot be read becomes a study of its own, so the error is reported
    for it rather than lost.
    """
    root = Path(root)
    if not root.exists():
        raise ReadError(root, "no such file or folder")
    files = [root] if root.is_file() else list(_walk_files(root))
    base = root.parent if root.is_file() else root
    studies: list[Study] = []
    series: dict[str, list[tuple[tuple[float, float, str], Path]]] = defaultdict(list)
    for path in files:
        kind = classify(path)
        rel = path.relative_to(base).as_posix()
        if kind in ("nifti", "image"):
            studies.append(Study(id=rel, kind=kind, paths=(path,)))
        elif kind == "dicom":
            try:
                ds = dicom.read_header(path)
                uid = str(ds.get("SeriesInstanceUID") or "")
            except ReadError:
                uid = ""
                ds = None
            if not uid:
                studies.append(Study(id=rel, kind="dicom", paths=(path,)))
                continue
            series[uid].append((dicom.slice_sort_key(ds, rel), path))
        else:
            log.debug("skipping %s: not a recognised image file", path)
    for uid, members in series.items():
        members.sort()
        paths = tuple(p for _, p in members)
        if len(paths) == 1:
            sid = paths[0].relative_to(base).as_posix()
        else:
            folder = paths[0].parent.relative_to(base).as_posix()
            sid = f"{folder}/{uid}" if folder != "." else uid
        studies.append(Study(id=sid, kind="dicom", paths=paths))
    studies.sort(key=lambda s: s.id)
    return studies


def read_study(study: Study, *, apply_voi: bool = True) -> Slices:
    """Decode a study into (N, H, W) float32 slices. Raises ReadError subclasses."""
    if study.kind == "nifti":
        return read_nifti(study.paths[0])
    if study.kind == "image":
        return read_raster(study.paths[0])
    if study.kind == "dicom":
        return dicom.read_series(study.paths, apply_voi=apply_voi)
    raise ReadError(study.paths[0], f"unknown study kind {study.kind!r}")


def study_for_path(path: str | Path) -> Study:
    """One file as a study of its own (id = its name); ReadError for unknown formats."""
    path = Path(path)
    kind = classify(path)
    if kind is None:
        raise ReadError(path, "not a recognised image file (expected DICOM, NIfTI, PNG, JPEG or TIFF)")
    return Study(id=path.name, kind=kind, paths=(path,))


def read_path(path: str | Path, *, apply_voi: bool = True) -> Slices:
    """Decode one file of any supported format."""
    return read_study(study_for_path(path), apply_voi=apply_voi)


def read_folder_images(folder: str | Path, preset: Preset) -> np.ndarray:
    """Every screened slice of the studies under ``folder`` as model input (N, S, S).

    Unreadable studies are skipped with a warning (for training and calibration sets, where
    one bad file must not stop the job); raises ReadError when nothing is readable.
    """
    from ..presets import prepare_stack

    out = []
    for study in discover(folder):
        try:
            stack, _ = prepare_stack(read_study(study, apply_voi=preset.apply_voi).pixels, preset)
            out.append(stack)
        except ReadError as err:
            log.warning("skipping %s: %s", study.id, err)
    if not out:
        raise ReadError(folder, "no readable images")
    return np.concatenate(out)
