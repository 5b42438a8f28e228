"""What the ``ra-sdk`` commands share: exit statuses, the progress display (progress
stays here, at the edge: the library reports through callbacks), output-folder checks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from ..errors import RaSdkError

#: exit statuses (documented in the README)
EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3

#: where ``ra-sdk screen`` writes when no --out is given (in the current folder)
DEFAULT_OUT = Path("ra-sdk-results")


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A click callback: a number option must be finite (NaN and inf are usage errors)."""
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


class Bar:
    """A progress display for the CLI (tqdm; on a terminal only unless asked), fed by the
    library's callbacks: progress stays at the edge."""

    def __init__(self, desc: str, unit: str, enabled: bool | None):
        self.desc, self.unit, self.enabled = desc, unit, enabled
        self.bar: Any = None
        self.failed = 0
        self.images = 0
        self.t0 = 0.0

    def start(self, total: int, initial: int = 0) -> None:
        from tqdm import tqdm

        self.t0 = time.perf_counter()
        # enabled None: a bar on a terminal only (tqdm's disable=None), quiet logs otherwise
        self.bar = tqdm(total=total, initial=initial, desc=self.desc, unit=self.unit, disable=True if self.enabled is False else (None if self.enabled is None else False))

    def result(self, r: Any) -> None:
        if self.bar is None:
            return
        self.images += getattr(r, "n_slices", 0) or 0
        if getattr(r, "error", None):
            self.failed += 1
        if self.images:
            elapsed = time.perf_counter() - self.t0
            self.bar.set_postfix_str(f"{self.images / max(elapsed, 1e-9):.1f} images/s, {self.failed} failed", refresh=False)
        self.bar.update(1)

    def progress(self, done: int, total: int) -> None:
        if self.bar is None:
            self.start(total)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def engine_notice(screener: Any) -> None:
    if not screener.calibrated and screener.threshold is None:
        click.echo(f"warning: engine {screener.engine.path} has no calibration: no study is flagged and no percentile is given; "
                   f"calibrate it with: ra-sdk calibrate {screener.engine.path} --normals NORMALS_DIR", err=True)


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".ra-sdk-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise RaSdkError(f"{out}: output folder is not writable ({err.strerror})") from None


def format_description(d: dict[str, Any]) -> str:
    """``ra-sdk inspect``'s text for :func:`ra_sdk.engine.describe`'s dict."""
    lines = [f"engine   {d['file']} ({d['size_bytes'] / 1e6:.1f} MB, {d['kind']})"]
    m = d["model"]
    lines.append(f"model    {m['name']} channels {tuple(m['channels'])} zdim {m['zdim']} input {m['image_size']}x{m['image_size']}")
    p = d["preset"]
    lines.append(f"preset   {p['name']} ({p['modality']}): {p['normalisation']} clip {tuple(p['clip'])}, size {p['size']}, pad to square {p['pad_to_square']}")
    s = d["score"]
    lines.append(f"score    perceptual {s['perceptual']}, CLAHE {s['use_clahe']}, sigma {s['sigma']}, image score {s['aggregation']}" + (f" {s['topk']:.0%}" if s["aggregation"] == "topk" else "") + f", study {s['study_aggregation']}" + (f", foreground > {s['foreground']:g}" if s.get("foreground") else ""))
    for name, n in d["networks"].items():
        lines.append(f"network  {name}: {n['file']} [{n['precision']}] inputs {n['inputs']} outputs {', '.join(n['outputs'])}")
    q = (d.get("source") or {}).get("int8")
    if q:
        f = q.get("fidelity", {})
        lines.append(f"int8     networks {q.get('candidate') or '+'.join(q.get('networks', []))}: {q.get('format')}, activations {q.get('activations')}, weights {q.get('weights')}, "
                     f"{q.get('method')} calibration on {q.get('calibration')}; fidelity vs fp32 Spearman {f.get('spearman', float('nan')):.4f}, "
                     f"flags identical {f.get('flags_identical', float('nan')):.1%}" + (f", AUROC change {f['auroc_change']:+.4f}" if "auroc_change" in f else "") + f" ({'passed' if q.get('passed') else 'FAILED'})")
    c = d["calibration"]
    if c:
        q = ", ".join(f"{k} {v:.4g}" for k, v in c["quantiles"].items())
        lines.append(f"calib    {c['n']} normals ({c['source']}); flag above p{c['percentile']:g} = {c['threshold']:.5g}; pixel threshold {c['pixel_threshold']:.5g}")
        lines.append(f"         quantiles: {q}")
    else:
        lines.append("calib    none (run ra-sdk calibrate ENGINE --normals DIR)")
    if d["build"]:
        lines.append("build    " + ", ".join(f"{k} {v}" for k, v in d["build"].items()))
    lines.append("versions " + ", ".join(f"{k} {v}" for k, v in d["versions"].items()))
    return "\n".join(lines)
