"""What the model will see: a folder of studies through a preset, as one PNG grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def preview_folder(data: str | Path, preset_name: str, out: str | Path, *, n: int = 24, columns: int = 6) -> tuple[Path, list[str]]:
    """Write ``out``: up to ``n`` studies of ``data`` preprocessed by the preset (the driving
    middle slice of each, at the model size), each labelled with its study id and what the
    preprocessing did (crop, notes); failures as dark tiles with their error kind. Returns
    (path, one line per study)."""
    import cv2

    from ..errors import ReadError
    from ..io import discover, read_study
    from ..io.write import write_png
    from ..preprocess import get_preset, prepare_stack

    preset = get_preset(preset_name)
    s = preset.size
    tiles, lines = [], []
    for study in discover(data)[:n]:
        tile = np.zeros((s + 14, s), np.uint8)
        try:
            sl = read_study(study, apply_voi=preset.apply_voi)
            stack = prepare_stack(sl.pixels, preset, where=study.id)
            tile[14:] = (stack.images[len(stack.images) // 2] * 255).astype(np.uint8)
            lines.append(f"ok    {study.id}: {sl.pixels.shape[1]}x{sl.pixels.shape[2]} -> {s}x{s}" + (f"  [{'; '.join(sl.notes + stack.notes)}]" if sl.notes or stack.notes else ""))
        except ReadError as err:
            lines.append(f"error {study.id}: {err.kind}: {err.reason}")
        cv2.putText(tile, study.id[-22:], (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, 255, 1, cv2.LINE_AA)
        tiles.append(tile)
    if not tiles:
        raise ReadError(data, "no studies found")
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + columns], 1) for i in range(0, len(tiles), columns)]
    return write_png(out, np.concatenate(rows, 0)), lines
