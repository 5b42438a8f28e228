"""Adopt the engine a device run made, only if it is better on the validation split.

    python scripts/adopt_model.py GPU_OUT/     # gpu_summary.json + ra_brain_demo.onnx-bundle

Scores the bundled engine's network and the new one on the same validation suite
(synthetic anomalies of validation normals, the shipped score configuration, the product's
scorer); when the new one's mean AUROC is higher by at least MARGIN it regenerates the bundled engine from it
(scripts/make_demo_engine.sh: export, parity check, calibration) and appends the run's
record (card, steps, images, GPU seconds) to models/ra-tiny-brain-v0/history.json. Prints
both AUROCs either way. Then re-run bench_accuracy, bench_fidelity and render.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT / "models" / "ra-tiny-brain-v0" / "history.json"
#: the gain a new model must show: about one standard error of the mean AUROC over the
#: seven types at this suite size (a toy run can move it by half that: measured 0.006 for
#: 20 CPU steps of --quick)
MARGIN = 0.01


def main() -> None:
    from ra_sdk.train.selection import ValidationAUROC

    from ra_sdk.data import DEMO_ENGINE
    from ra_sdk.engine import read_engine
    from ra_sdk.network import load_engine_network

    run = Path(sys.argv[1])
    new = run / "ra_brain_demo.onnx-bundle"
    summary = json.loads((run / "gpu_summary.json").read_text())
    if summary.get("args", {}).get("quick"):
        sys.exit(f"{run}: a --quick run (toy sizes) is a check of the script, never a model to ship")
    selector = ValidationAUROC(n_normal=120, n_per_type=24, score=read_engine(DEMO_ENGINE).meta.score)
    current = selector(load_engine_network(read_engine(DEMO_ENGINE)))["mean"]
    candidate = selector(load_engine_network(read_engine(new)))["mean"]
    print(f"validation mean AUROC: bundled {current:.4f}, new {candidate:.4f}")
    if candidate < current + MARGIN:
        print(f"kept the bundled engine (the new one must gain at least {MARGIN} on validation)")
        return
    subprocess.run(["bash", str(ROOT / "scripts" / "make_demo_engine.sh"), str(new)], check=True, cwd=ROOT)
    history = json.loads(HISTORY.read_text())
    tr = summary.get("training", {}).get("ra", {})
    history.append({
        "run": f"v{len(history)}", "date": time.strftime("%Y-%m-%d"), "card": summary.get("card"), "init": f"the bundled engine of run {history[-1]['run']}",
        "objective": "ra", "batch": tr.get("config", {}).get("batch_size"), "lr": tr.get("config", {}).get("lr"), "lr_rule": tr.get("config", {}).get("lr_rule"),
        "steps": tr.get("steps"), "images": tr.get("images"), "gpu_seconds": summary.get("record", {}).get("gpu_seconds"),
        "validation": f"val mean AUROC {candidate:.4f} (bundled before: {current:.4f})", "command": "bash scripts/gpu_session.sh",
    })
    HISTORY.write_text(json.dumps(history, indent=2) + "\n")
    total = {k: sum((h.get(k) or 0) for h in history) for k in ("steps", "images", "gpu_seconds")}
    print(f"adopted; cumulative: {total}")


if __name__ == "__main__":
    main()
