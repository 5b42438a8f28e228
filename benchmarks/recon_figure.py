"""The reconstruction figure: 8 test slices at different levels, each as input |
pseudo-healthy reconstruction | anomaly map, for two engines side by side (before and
after a training run), with the engines' own score configuration.

    python -m benchmarks.recon_figure --before OLD.onnx-bundle --after NEW.onnx-bundle \\
        --out benchmarks/results/reconstructions.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def panels(engine: str, images: np.ndarray) -> np.ndarray:
    """(8 * 128, 3 * 128, 3) uint8: per slice, input | reconstruction | overlay."""
    from ra_sdk.engine import read_engine
    from ra_sdk.report.overlay import preview_panels
    from ra_sdk.scorer import Scorer

    eng = read_engine(engine)
    with Scorer(eng, backend="onnxruntime", device="cpu") as sc:
        maps, _, recs = sc.score(images)
    assert maps is not None and recs is not None
    thr = eng.meta.calibration.pixel_threshold if eng.meta.calibration else float("nan")
    return np.concatenate([preview_panels(images[i], recs[i], maps[i], thr) for i in range(len(images))], 0)


def main() -> None:
    import cv2

    from ra_sdk.data.augment import sample, usable_slices

    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--out", default="benchmarks/results/reconstructions.png")
    args = ap.parse_args()
    levels = usable_slices()
    pick = levels[np.linspace(0, len(levels) - 1, 8).round().astype(int)]  # inferior to superior
    images = np.stack([sample("test", 70_000 + i, slices=np.array([z])).image for i, z in enumerate(pick)])
    a, b = panels(args.before, images), panels(args.after, images)
    gap = np.full((a.shape[0], 8, 3), 255, np.uint8)
    grid = np.concatenate([a, gap, b], 1)
    head = np.zeros((22, grid.shape[1], 3), np.uint8)
    for x, text in ((4, f"before: {Path(args.before).name}"), (a.shape[1] + 12, f"after: {Path(args.after).name}")):
        cv2.putText(head, text + "  (input | reconstruction | map)", (x, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", np.concatenate([head, grid], 0)[..., ::-1])
    assert ok
    Path(args.out).write_bytes(buf.tobytes())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
