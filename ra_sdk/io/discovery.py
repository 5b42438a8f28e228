"""Study discovery: walk a folder and group files into studies, deterministically."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import AccessError, CorruptFileError, ReadError, TooLargeError
from . import dicom
from .nifti import is_nifti, read_nifti
from .raster import is_raster, read_raster
from .study import Slices, Study

if TYPE_CHECKING:
    from ..preprocess import Preset

log = logging.getLogger(__name__)

#: a folder holding this file is an ra-sdk output folder: its files are never studies
OUT_MARKER = ".ra-sdk-output"


def _walk_files(root: Path, exclude: set[tuple[int, int]], problems: list[tuple[Path, str]]) -> Iterable[Path]:
    """Files under ``root``, recursively; follows symlinks but never loops; skips hidden
    names, output folders (``exclude`` and folders marked with OUT_MARKER). Folders it
    cannot list, and study-like names that are no regular file (a FIFO, a device, a broken
    link), go to ``problems`` so that they get a row rather than vanish."""
    seen: set[tuple[int, int]] = set()

    def onerror(err: OSError) -> None:
        problems.append((Path(err.filename or root), f"cannot list folder: {err.strerror or err}"))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen or key in exclude or OUT_MARKER in filenames:  # a loop, or an output folder
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
            elif not p.is_dir() and (is_nifti(p) or is_raster(p) or p.suffix.lower() in dicom.DICOM_SUFFIXES):  # by name: opening a FIFO blocks
                what = "a broken symbolic link" if p.is_symlink() and not p.exists() else "not a regular file (a FIFO, socket or device)"
                problems.append((p, what))


def classify(path: Path) -> str | None:
    """"nifti", "image", "dicom", or None for files that are not studies (csv, txt...)."""
    if is_nifti(path):
        return "nifti"
    if is_raster(path):
        return "image"
    if dicom.looks_like_dicom(path):
        return "dicom"
    return None


def _inode(p: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(p)
        return st.st_dev, st.st_ino
    except OSError:
        return None


def discover(root: str | Path, *, exclude: Sequence[str | Path] = ()) -> list[Study]:
    """Find the studies under ``root`` (a folder or one file), sorted by id.

    A DICOM series is the files of one folder sharing StudyInstanceUID, SeriesInstanceUID
    and image size, sorted by position along the slice normal, then instance number. A
    DICOM file whose header cannot be read, and a folder that cannot be listed, become
    studies of their own, so their error is reported rather than lost. Folders in
    ``exclude`` (the run's output folder) and ra-sdk output folders are skipped. Ids are
    unique: a collision gets a ``#2``, ``#3`` suffix in path order.
    """
    root = Path(root)
    if not root.exists():
        raise ReadError(root, "no such file or folder")
    problems: list[tuple[Path, str]] = []
    excluded = {k for k in (_inode(Path(e)) for e in exclude) if k is not None}
    files = [root] if root.is_file() else list(_walk_files(root, excluded, problems))
    base = root.parent if root.is_file() else root
    studies: list[Study] = [Study(id=_rel(p, base) + ("/" if why.startswith("cannot list") else ""), kind="unreadable", paths=(p,), error=why) for p, why in problems]
    series: dict[tuple[str, str, str, int, int], list[tuple[tuple[float, float, str], Path]]] = defaultdict(list)
    for path in files:
        kind = classify(path)
        rel = path.relative_to(base).as_posix()
        if kind in ("nifti", "image"):
            studies.append(Study(id=rel, kind=kind, paths=(path,)))
        elif kind == "dicom":
            try:
                ds = dicom.read_header(path)
                uid = str(ds.get("SeriesInstanceUID") or "")
                key = (path.parent.as_posix(), str(ds.get("StudyInstanceUID") or ""), uid, _int(ds.get("Rows")), _int(ds.get("Columns")))
            except ReadError:
                uid = ""
            if not uid:
                studies.append(Study(id=rel, kind="dicom", paths=(path,)))
                continue
            series[key].append((dicom.slice_sort_key(ds, rel), path))
        else:
            log.debug("skipping %s: not a recognised image file", path)
    sizes: dict[tuple[str, str], int] = defaultdict(int)
    for folder, _, uid, _, _ in series:
        sizes[(folder, uid)] += 1
    for (folder, _, uid, rows, cols), members in series.items():
        members.sort()
        paths = tuple(p for _, p in members)
        if len(paths) == 1:
            sid = paths[0].relative_to(base).as_posix()
        else:
            rel_folder = paths[0].parent.relative_to(base).as_posix()
            sid = f"{rel_folder}/{uid}" if rel_folder != "." else uid
            if sizes[(folder, uid)] > 1:  # one series, several image sizes: one study per size
                sid += f"@{rows}x{cols}"
        studies.append(Study(id=sid, kind="dicom", paths=paths))
    return _unique_ids(studies)


def _rel(p: Path, base: Path) -> str:
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        return p.as_posix()


def _int(v: object) -> int:
    try:
        return int(v)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _unique_ids(studies: list[Study]) -> list[Study]:
    """Sorted by id; a repeated id gets ``#2``, ``#3`` in the order of its first path."""
    studies.sort(key=lambda s: (s.id, str(s.paths[0])))
    taken = {s.id for s in studies}
    out: list[Study] = []
    last, n = None, 1
    for s in studies:
        if s.id == last:
            n += 1
            new = f"{s.id}#{n}"
            while new in taken:
                n += 1
                new = f"{s.id}#{n}"
            taken.add(new)
            out.append(Study(id=new, kind=s.kind, paths=s.paths, error=s.error))
        else:
            last, n = s.id, 1
            out.append(s)
    out.sort(key=lambda s: s.id)
    return out


def read_study(study: Study, *, apply_voi: bool = True, max_bytes: int | None = None) -> Slices:
    """Decode a study into (N, H, W) float32 slices.

    Raises ReadError subclasses only: whatever a decoder raises on hostile data becomes a
    one-line reason naming the file. ``max_bytes`` is the study's share of the memory
    budget, checked from headers before decoding.
    """
    path = study.paths[0]
    try:
        if study.kind == "nifti":
            return read_nifti(path, max_bytes=max_bytes)
        if study.kind == "image":
            return read_raster(path, max_bytes=max_bytes)
        if study.kind == "dicom":
            return dicom.read_series(study.paths, apply_voi=apply_voi, max_bytes=max_bytes)
        if study.kind == "unreadable":
            raise AccessError(path, study.error or "cannot be read")
    except ReadError:
        raise
    except MemoryError:
        raise TooLargeError(path, "does not fit in memory") from None
    except Exception as err:
        text = " ".join(str(err).split())[:300] or type(err).__name__
        raise CorruptFileError(path, f"cannot decode ({type(err).__name__}: {text})") from None
    raise ReadError(path, f"unknown study kind {study.kind!r}")


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


def read_folder_images(folder: str | Path, preset: Preset, *, only: Iterable[str] | None = None) -> np.ndarray:
    """Every screened slice of the studies under ``folder`` (those whose id is in ``only``,
    when given) as model input (N, S, S).

    Unreadable studies are skipped with a warning (for training and calibration sets, where
    one bad file must not stop the job); raises ReadError when nothing is readable.
    """
    from ..preprocess import prepare_stack

    wanted = None if only is None else set(only)
    out = []
    for study in discover(folder):
        if wanted is not None and study.id not in wanted:
            continue
        try:
            out.append(prepare_stack(read_study(study, apply_voi=preset.apply_voi).pixels, preset, where=study.id).images)
        except ReadError as err:
            log.warning("skipping %s: %s", study.id, err)
    if not out:
        raise ReadError(folder, "no readable images")
    return np.concatenate(out)
