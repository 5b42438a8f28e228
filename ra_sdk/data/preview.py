"""What the model will see: a folder of studies through a preset, as one PNG grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def preview_folder(data: str | Path, preset_name: str, out: str | Path, *, n: int = 24, columns: int = 6) -> tuple[Path, list[str]]:
    """Write ``out``: up to ``n`` studies of ``data`` preprocessed by the preset (the driving
    middle slice of each, at the model size), each labelled with its study id and what the
    preprocessing did (crop, notes); studies that screening would refuse as dark tiles, with
    the same one-line reason. Returns (path, one line per study)."""
    import cv2

    from ..errors import ReadError
    from ..io import discover
    from ..io.limits import DEFAULT_BUDGET_BYTES
    from ..io.write import write_png
    from ..preprocess import get_preset
    from ..screen import prepare

    preset = get_preset(preset_name)
    s = preset.size
    tiles, lines = [], []
    for study in discover(data)[:n]:
        tile = np.zeros((s + 14, s), np.uint8)
        p = prepare(study, preset, max_bytes=DEFAULT_BUDGET_BYTES)  # what screening does, bad input included
        if p.error is None and p.images is not None:
            tile[14:] = (p.images[len(p.images) // 2] * 255).astype(np.uint8)
            lines.append(f"ok    {study.id}: {len(p.images)} image(s) -> {s}x{s}" + (f"  [{'; '.join(p.notes)}]" if p.notes else ""))
        else:
            lines.append(f"error {study.id}: {p.error_kind}: {p.error}")
        cv2.putText(tile, study.id[-22:], (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, 255, 1, cv2.LINE_AA)
        tiles.append(tile)
    if not tiles:
        raise ReadError(data, "no studies found")
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + columns], 1) for i in range(0, len(tiles), columns)]
    return write_png(out, np.concatenate(rows, 0)), lines
