"""Modality presets: plain data describing how a study becomes model input, and the
transforms they name.

A preset is stored inside every engine file, so a screening run always preprocesses
the way the model was trained. The steps, in order (each a field of :class:`Preset`):

1. the reader's presentation values: DICOM modality LUT, then VOI LUT / window
   (``apply_voi``), MONOCHROME1 inverted (ra_sdk.io.dicom_pixels);
2. ``crop_borders``: uniform collimator borders (and burned-in text in them) cropped;
3. ``normalisation`` with ``clip`` percentiles, to [0, 1];
4. ``pad_to_square``, then resize to ``size``.

Training augmentation follows the preset too (``hflip``). Functions here are pure
numpy/OpenCV.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """How to turn decoded pixels into model input of shape (N, size, size) in [0, 1]."""

    name: str
    modality: str
    #: "minmax": (x - min) / (upper - min) with upper = the ``clip`` upper percentile;
    #: "percentile": clip to the ``clip`` percentiles then scale to [0, 1].
    normalisation: str = "minmax"
    #: lower and upper percentiles used by the normalisation (0 and 100 = plain min-max)
    clip: tuple[float, float] = (0.0, 100.0)
    #: apply the DICOM VOI LUT / window (after the modality LUT) when the file has one
    apply_voi: bool = True
    #: pad the shorter side with the image minimum before resizing
    pad_to_square: bool = True
    #: model input side length in pixels
    size: int = 128
    #: volumes: keep axial slices whose fraction of pixels above ``foreground_level``
    #: (after normalisation) is at least this; 0 keeps every slice
    min_foreground: float = 0.0
    foreground_level: float = 0.05
    #: volumes: keep only slices within this fraction of the stack (inferior..superior)
    slice_range: tuple[float, float] = (0.0, 1.0)
    #: crop uniform borders (collimator shutters, and burned-in text inside them) before
    #: normalising (:func:`border_box`)
    crop_borders: bool = False
    #: training augmentation may mirror images left-right (off where laterality matters:
    #: a mirrored chest radiograph shows the heart on the right, which is not normal)
    hflip: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preset:
        from .configs import check_keys

        check_keys(cls, d, "preset")
        d = dict(d)
        for key in ("clip", "slice_range"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def replace(self, **changes: Any) -> Preset:
        return dataclasses.replace(self, **changes)


_PRESETS: dict[str, Preset] = {
    # Skull-stripped T1w brain MRI; robust min-max per slice, slices that hold brain.
    "brain-mri-t1": Preset(
        name="brain-mri-t1",
        modality="MR",
        normalisation="minmax",
        clip=(0.0, 99.5),
        apply_voi=False,
        min_foreground=0.15,
        slice_range=(0.25, 0.85),
    ),
    # Radiographs: percentile clip tames collimation edges and burned-in markers.
    # Chest: laterality matters (situs), so never mirrored in training.
    "chest-xray": Preset(name="chest-xray", modality="DX", normalisation="percentile", clip=(0.5, 99.5), crop_borders=True, hflip=False),
    # Wrist: left and right wrists are mirror images of one normal anatomy; mirroring is fine.
    "wrist-xray": Preset(name="wrist-xray", modality="DX", normalisation="percentile", clip=(0.5, 99.5), crop_borders=True, hflip=True),
    "generic": Preset(name="generic", modality="OT", normalisation="minmax", clip=(0.0, 100.0), hflip=False),
}


def list_presets() -> list[str]:
    return sorted(_PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return _PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(list_presets())}") from None


def normalise(image: np.ndarray, preset: Preset) -> np.ndarray:
    """Scale one 2-D image (any real dtype) to float32 in [0, 1] as the preset says."""
    img = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(img)
    if not finite.all():  # NaN/inf pixels take the smallest finite value
        img = np.where(finite, img, img[finite].min() if finite.any() else np.float32(0))
    lo_p, hi_p = preset.clip
    if preset.normalisation == "minmax":
        lo = float(img.min())
        hi = float(np.percentile(img, hi_p)) if hi_p < 100 else float(img.max())
    elif preset.normalisation == "percentile":
        lo, hi = (float(v) for v in np.percentile(img, [lo_p, hi_p]))
    else:
        raise ConfigError(f"unknown normalisation {preset.normalisation!r}; valid: minmax, percentile")
    if hi <= lo:
        return np.zeros(img.shape, np.float32)
    out = (np.clip(img, lo, hi) - lo) / (hi - lo)
    return out.astype(np.float32, copy=False)


#: a row or column is border when at least this fraction of it lies within BORDER_TOL of
#: the image's range from the value at its edge (a few percent may be burned-in text)
BORDER_FRACTION = 0.95
BORDER_TOL = 0.02
#: never crop more than this fraction of a side
BORDER_MAX = 0.3

#: a (top, bottom, left, right) box: rows top..bottom-1, columns left..right-1
Box = tuple[int, int, int, int]


def border_box(image: np.ndarray, *, fraction: float = BORDER_FRACTION, tol: float = BORDER_TOL, max_crop: float = BORDER_MAX) -> Box:
    """The box inside uniform borders: from each side, rows (or columns) whose pixels lie,
    for at least ``fraction`` of them, within ``tol`` of the image's 1..99 percentile range
    from that side's edge value (the median of its outermost row or column). Collimator
    shutters are such bands; burned-in text inside them stays under 1 - fraction of a row
    and goes with the band. Text over the anatomy is not a border and is kept (the
    percentile clip of the normalisation tames it)."""
    img = np.asarray(image, np.float32)
    h, w = img.shape
    lo, hi = np.percentile(img, [1, 99])
    band = max(float(hi - lo), 1e-6) * tol

    def run(lines: np.ndarray, limit: int) -> int:
        edge = float(np.median(lines[0]))
        n = 0
        while n < limit and np.mean(np.abs(lines[n] - edge) <= band) >= fraction:
            n += 1
        return n

    top = run(img, int(h * max_crop))
    bottom = h - run(img[::-1], int(h * max_crop))
    left = run(img.T, int(w * max_crop))
    right = w - run(img.T[::-1], int(w * max_crop))
    return top, bottom, left, right


def to_model_input(image: np.ndarray, preset: Preset, box: Box | None = None) -> np.ndarray:
    """Crop (``box``, or the preset's border crop), normalise, pad to square and resize one
    2-D image; returns (size, size) float32."""
    import cv2

    if box is None and preset.crop_borders:
        box = border_box(image)
    if box is not None:
        image = np.asarray(image)[box[0] : box[1], box[2] : box[3]]
    img = normalise(image, preset)
    if preset.pad_to_square and img.shape[0] != img.shape[1]:
        h, w = img.shape
        s = max(h, w)
        top, left = (s - h) // 2, (s - w) // 2
        img = np.pad(img, ((top, s - h - top), (left, s - w - left)), constant_values=0.0)
    if img.shape != (preset.size, preset.size):
        shrink = img.shape[0] > preset.size or img.shape[1] > preset.size
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        img = cv2.resize(img, (preset.size, preset.size), interpolation=interp)
    return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)


def from_model_grid(a: np.ndarray, shape: tuple[int, int], preset: Preset, box: Box | None = None) -> np.ndarray:
    """Map a (size, size) array on the model grid back onto the source image grid
    ``shape`` = (H, W): the inverse of :func:`to_model_input`'s pad and resize (bilinear),
    and of its crop to ``box`` (zero outside it)."""
    if box is not None and tuple(box) != (0, int(shape[0]), 0, int(shape[1])):
        out = np.zeros((int(shape[0]), int(shape[1])), np.float32)
        out[box[0] : box[1], box[2] : box[3]] = from_model_grid(a, (box[1] - box[0], box[3] - box[2]), preset)
        return out
    import cv2

    h, w = int(shape[0]), int(shape[1])
    a = np.asarray(a, np.float32)
    if preset.pad_to_square and h != w:
        s = max(h, w)
        top, left = (s - h) // 2, (s - w) // 2
        big = cv2.resize(a, (s, s), interpolation=cv2.INTER_LINEAR) if a.shape != (s, s) else a
        return np.ascontiguousarray(big[top : top + h, left : left + w])
    return cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR) if a.shape != (h, w) else a.copy()


def select_slices(volume: np.ndarray, preset: Preset) -> np.ndarray:
    """Indices of the axial slices of a (N, H, W) stack that the preset screens."""
    n = volume.shape[0]
    if n == 1:
        return np.array([0])
    a, b = preset.slice_range
    lo, hi = int(np.floor(a * n)), max(int(np.ceil(b * n)), int(np.floor(a * n)) + 1)
    idx = np.arange(lo, min(hi, n))
    if preset.min_foreground > 0:
        keep = [i for i in idx if (normalise(volume[i], preset) > preset.foreground_level).mean() >= preset.min_foreground]
        if keep:
            idx = np.array(keep)
        else:  # never return nothing: fall back to the middle slice
            idx = np.array([n // 2])
    return idx


#: the smallest image side ra-sdk screens (a smaller "image" carries no anatomy)
MIN_SIDE = 16


def has_signal(image: np.ndarray) -> bool:
    """True when a 2-D image holds at least two distinct finite values."""
    finite = image[np.isfinite(image)]
    return finite.size > 1 and float(finite.max()) > float(finite.min())


class Stack(NamedTuple):
    """A study as model input: images (M, size, size) float32 in [0, 1], the index of each
    in the study, remarks, and each image's crop box (None when the preset crops nothing)."""

    images: np.ndarray
    indices: np.ndarray
    notes: list[str]
    boxes: list[Box] | None


def prepare_stack(slices: np.ndarray, preset: Preset, *, where: str = "image") -> Stack:
    """Select and preprocess the slices of a study.

    Args:
        slices: (N, H, W) decoded intensities of one study.
        where: the file or study named in errors.
    Raises:
        NoSignalError: images smaller than MIN_SIDE, or no selected slice with signal
            (all NaN, constant, all zero): such a study is a failure, never a normal.
    """
    from .errors import NoSignalError

    n, h, w = slices.shape
    if min(h, w) < MIN_SIDE:
        raise NoSignalError(where, f"image too small to screen: {h}x{w} pixels (at least {MIN_SIDE}x{MIN_SIDE})")
    idx = select_slices(slices, preset)
    usable = np.array([i for i in idx if has_signal(slices[i])], dtype=np.int64)
    notes: list[str] = []
    if usable.size < len(idx):
        if not usable.size:
            rest = [i for i in range(n) if has_signal(slices[i])]
            if not rest:
                what = "image" if n == 1 else f"all {n} slices"
                raise NoSignalError(where, f"no usable signal: {what} constant (blank, all zero or all NaN)")
            usable = np.array([rest[len(rest) // 2]], dtype=np.int64)
        notes.append(f"{len(idx) - int(np.isin(idx, usable).sum())} blank slice(s) not screened")
    boxes = [border_box(slices[i]) for i in usable] if preset.crop_borders else None
    if boxes and any(b != (0, h, 0, w) for b in boxes):
        t, b, lft, r = boxes[len(boxes) // 2]
        notes.append(f"uniform borders cropped to rows {t}-{b - 1}, columns {lft}-{r - 1}")
    out = np.stack([to_model_input(slices[i], preset, boxes[k] if boxes else None) for k, i in enumerate(usable)])
    return Stack(out, usable, notes, boxes)


#: the DICOM modalities a preset's modality screens; a study of another gets a note
COMPATIBLE = {"MR": ("MR",), "DX": ("DX", "CR", "RG"), "CT": ("CT",), "OT": ()}


def modality_note(study_modality: str | None, kind: str, preset: Preset) -> str | None:
    """A note when a study is not what the engine screens (an MR study with a chest engine,
    a radiograph with a brain engine); None when it matches or cannot be told."""
    expected = COMPATIBLE.get(preset.modality, ())
    if not expected:
        return None
    if study_modality:
        if study_modality.upper() not in expected:
            return f"modality mismatch: a {study_modality} study screened with a {preset.name} ({preset.modality}) engine; its score is not meaningful"
        return None
    if kind == "nifti" and preset.modality != "MR":
        return f"modality mismatch: a NIfTI volume screened with a {preset.name} ({preset.modality}) engine; its score is not meaningful"
    return None
