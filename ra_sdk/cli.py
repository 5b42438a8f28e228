"""The ``ra-sdk`` command. Each subcommand parses its arguments and calls one public function."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from ._version import __version__
from .errors import RaSdkError

log = logging.getLogger("ra_sdk")

#: exit statuses (documented in the README)
EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


class _Group(click.Group):
    """Turns ra-sdk errors into one clear line and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except RaSdkError as err:
            click.echo(f"error: {' '.join(str(err).split())}", err=True)
            ctx.exit(EXIT_FATAL)
        except OSError as err:  # the file system said no (disk full, permissions) outside a study
            where = f"{err.filename}: " if err.filename else ""
            click.echo(f"error: {where}{err.strerror or err}", err=True)
            ctx.exit(EXIT_FATAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ra-sdk")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Screen medical images for anomalies with Reversed Auto-Encoders (RA)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        # Decoders report each failed attempt (with tracebacks); the result row already
        # carries the one-line reason, so their chatter is shown with -v only.
        # (a handler filter: pydicom resets its logger's level when it is imported)
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda rec: not rec.name.startswith(("pydicom", "nibabel")))
        warnings.filterwarnings("ignore", module=r"(pydicom|nibabel)(\..*)?")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(as_json: bool) -> None:
    """Versions, devices, and which backends are usable here (and why not)."""
    from .info import collect, format_report

    report = collect()
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@main.command("read")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def read_cmd(path: Path) -> None:
    """Discover the studies under PATH and try to read each one (a reader check)."""
    from .io import discover, read_study

    failed = 0
    for study in discover(path):
        try:
            sl = read_study(study)
            p = sl.pixels
            notes = f"  [{'; '.join(sl.notes)}]" if sl.notes else ""
            click.echo(f"ok    {study.id}: {p.shape[0]} slice(s) of {p.shape[1]}x{p.shape[2]}, range {p.min():.4g}..{p.max():.4g}{notes}")
        except RaSdkError as err:
            failed += 1
            click.echo(f"error {study.id}: {err}")
    sys.exit(EXIT_PARTIAL if failed else EXIT_OK)


DEFAULT_OUT = Path("ra-sdk-results")


class _Bar:
    """A progress display for the CLI (tqdm; on a terminal only unless asked), fed by the
    library's callbacks: progress stays at the edge."""

    def __init__(self, desc: str, unit: str, enabled: bool | None):
        self.desc, self.unit, self.enabled = desc, unit, enabled
        self.bar: Any = None
        self.failed = 0

    def start(self, total: int, initial: int = 0) -> None:
        from tqdm import tqdm

        # enabled None: a bar on a terminal only (tqdm's disable=None), quiet logs otherwise
        self.bar = tqdm(total=total, initial=initial, desc=self.desc, unit=self.unit, disable=True if self.enabled is False else (None if self.enabled is None else False))

    def result(self, r: Any) -> None:
        if self.bar is None:
            return
        if getattr(r, "error", None):
            self.failed += 1
            self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update(1)

    def progress(self, done: int, total: int) -> None:
        if self.bar is None:
            self.start(total)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _engine_notice(screener: Any) -> None:
    if not screener.calibrated and screener.threshold is None:
        click.echo(f"warning: engine {screener.engine.path} has no calibration: no study is flagged and no percentile is given; "
                   f"calibrate it with: ra-sdk calibrate {screener.engine.path} --normals NORMALS_DIR", err=True)


@main.command("screen")
@click.argument("studies", type=click.Path(exists=True, path_type=Path))
@click.option("--engine", "engine", type=click.Path(path_type=Path), default=None, help="Engine file: an ONNX bundle (ra-sdk export) or a TensorRT plan bundle (ra-sdk build); default: the bundled demo engine.")
@click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(path_type=Path), help="Output folder (results.csv, results.jsonl, summary.json, run.json, ...).")
@click.option("--backend", default="auto", show_default=True, help="auto, onnxruntime, torch or tensorrt.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, 4096))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Decode threads.")
@click.option("--memory-budget", "memory_mb", default=4096, show_default=True, type=click.IntRange(64, 1 << 20), help="MB of decoded pixels the decode threads may hold together; a study above its share (budget / workers) is refused before decoding.")
@click.option("--threshold", type=float, default=None, help="Flag scores above this (default: the engine's calibrated operating point).")
@click.option("--save-maps", is_flag=True, help="Write maps/<study>.npy and an overlay PNG per study.")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Skip studies a previous run into --out finished with the same settings (--no-resume screens afresh).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal only).")
@click.option("--report", "report", is_flag=True, help="Also write OUT/report.html, the HTML worklist (previews in OUT/previews/).")
@click.option("--dicom-out", "dicom_out", type=click.Choice(["none", "flagged", "all"]), default="none", show_default=True, help="DICOM Secondary Capture + SEG per DICOM study into OUT/dicom/ (needs ra-sdk[dicom]).")
def screen_cmd(studies: Path, engine: Path | None, out: Path, backend: str, device: str, batch_size: int, workers: int, memory_mb: int, threshold: float | None, save_maps: bool, resume: bool, progress: bool | None, report: bool, dicom_out: str) -> None:
    """Screen every study under STUDIES; results sorted by score in OUT/results.csv.

    Exit status: 0 all studies screened, 3 some studies failed (each has a row with the
    reason), 1 fatal error (missing engine, unwritable output, disk full), 2 usage error.
    """
    from .run import run
    from .screen import Screener

    _check_writable(out)
    screener = Screener(engine, backend=backend, device=device, batch_size=batch_size, threshold=threshold, memory_budget_mb=memory_mb)
    _engine_notice(screener)
    bar = _Bar("screening", "study", progress)
    try:
        summary, rows = run(studies, out, screener, workers=workers, resume=resume, save=save_maps, previews=report, dicom=dicom_out, on_start=lambda n, done: bar.start(n, done), on_result=bar.result)
    finally:
        bar.close()
    click.echo(summary.line())
    if dicom_out != "none":
        done = sum(1 for r in rows if r.get("outputs"))
        failed = sum(1 for r in rows if "DICOM output failed" in (r.get("notes") or ""))
        click.echo(f"DICOM outputs: SC + SEG for {done} studies in {out / 'dicom'}" + (f"; {failed} failed (see notes)" if failed else ""))
    if report:
        from .report import build_report

        click.echo(f"report: {build_report(out)}")
    sys.exit(EXIT_PARTIAL if summary.failed else EXIT_OK)


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".ra-sdk-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise RaSdkError(f"{out}: output folder is not writable ({err.strerror})") from None


@main.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="HTML file to write (default: RUN_DIR/report.html).")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="CSV with columns study and type (or label), for the ROC curve (default: a labels.csv beside the screened folder).")
@click.option("--previews", default=500, show_default=True, type=click.IntRange(0, None), help="How many of the highest-scoring studies carry a picture.")
@click.option("--page-size", default=50, show_default=True, type=click.IntRange(1, None), help="Worklist rows per page.")
@click.option("--title", default=None, help="Page title.")
@click.option("--progress/--no-progress", default=None, help="Progress bar when previews are re-made (default: on a terminal only).")
def report_cmd(run_dir: Path, out: Path | None, labels: Path | None, previews: int, page_size: int, title: str | None, progress: bool | None) -> None:
    """Write the self-contained HTML worklist of a screening run (RUN_DIR = screen --out).
    Missing previews of the top studies are made first with the run's engine."""
    from .report import build_report
    from .run import make_missing_previews

    if previews:
        bar = _Bar("previews", "study", progress)
        try:
            made = make_missing_previews(run_dir, previews, on_start=bar.start, on_result=bar.result)
        finally:
            bar.close()
        if made:
            click.echo(f"made {made} missing previews")
    click.echo(f"report: {build_report(run_dir, out=out, labels=labels, previews=previews, page_size=page_size, title=title)}")


@main.command("demo")
@click.option("--out", default="ra-sdk-demo", show_default=True, type=click.Path(path_type=Path))
@click.option("--n-normal", default=60, show_default=True, type=click.IntRange(2, None))
@click.option("--n-per-type", default=12, show_default=True, type=click.IntRange(1, None))
@click.option("--backend", default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
def demo_cmd(out: Path, n_normal: int, n_per_type: int, backend: str, device: str) -> None:
    """Write the demo studies, screen them with the bundled engine, print AUROC per pathology."""
    from .demo import format_demo, run_demo

    _check_writable(out)
    res = run_demo(out, n_normal=n_normal, n_per_type=n_per_type, backend=backend, device=device)
    click.echo(format_demo(res))


@main.command("train")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None, help="Folder of normal studies.")
@click.option("--demo", is_flag=True, help="Train on the embedded normal brain data (augmented).")
@click.option("--model", default="ra-tiny", show_default=True, help="Registered model config.")
@click.option("--objective", type=click.Choice(["ra", "ae", "vae"]), default="ra", show_default=True)
@click.option("--epochs", default=10, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--lr", default=5e-5, show_default=True)
@click.option("--pool-size", default=2048, show_default=True, help="Augmented images per epoch (--demo).")
@click.option("--max-minutes", default=0.0, show_default=True, help="Stop cleanly after this long (0: no limit).")
@click.option("--device", default="auto", show_default=True)
@click.option("--resume/--no-resume", default=True, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--patience", default=5, show_default=True, help="Stop after this many epochs without a better validation loss (0: never).")
@click.option("--init", "init_from", type=click.Path(exists=True, path_type=Path), default=None, help="Start from the weights of this checkpoint folder or engine file (fine-tuning; fresh optimisers).")
@click.option("--out", required=True, type=click.Path(path_type=Path))
def train_cmd(data: Path | None, demo: bool, model: str, objective: str, epochs: int, batch_size: int, lr: float, pool_size: int, max_minutes: float, device: str, resume: bool, seed: int, patience: int, init_from: Path | None, out: Path) -> None:
    """Train RA (or the AE / VAE baseline) on normal images; checkpoints in OUT/best and OUT/last."""
    from ._optional import require
    from .errors import ConfigError

    require("torch", "ra-sdk train")
    from .train.trainer import Callback, TrainConfig, Trainer, training_data

    if demo == (data is not None):
        raise ConfigError("give exactly one of --data DIR and --demo")
    cfg = TrainConfig(objective=objective, model=model, epochs=epochs, batch_size=batch_size, lr=lr, pool_size=pool_size, max_minutes=max_minutes, seed=seed, patience=patience, init_from=str(init_from or ""))
    train, val = training_data(cfg, data=data)

    class Progress(Callback):
        def __init__(self) -> None:
            self.bar = _Bar(f"train {objective}/{model}", "step", None)

        def on_start(self, total_steps: int, step: int) -> None:
            self.bar.start(total_steps, step)

        def on_step(self, step: int, metrics: dict[str, float]) -> None:
            if self.bar.bar is not None:
                self.bar.bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items()}, refresh=False)
                self.bar.bar.update(1)

        def on_end(self, summary: dict[str, Any]) -> None:
            self.bar.close()

    summary = Trainer(cfg, out, device=device, callbacks=[Progress()]).fit(train, val, resume=resume)
    click.echo(f"{summary['steps']} steps, {summary['epochs']} epochs, best validation MSE {summary['best_val_mse']:.5f}, "
               f"{summary['seconds']:.0f} s (stopped by {summary['stopped_by']}); checkpoint: {out / 'best'}")


@main.command("evaluate")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, path_type=Path), help="Checkpoint folder, or an engine file (its weights).")
@click.option("--studies", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="A demo-studies folder (labels.csv, studies/, masks/).")
@click.option("--perceptual", type=click.Choice(["structural", "features", "none"]), default="structural", show_default=True)
@click.option("--aggregation", type=click.Choice(["mean", "topk", "max"]), default="mean", show_default=True)
@click.option("--no-clahe", is_flag=True)
def evaluate_cmd(checkpoint: Path, studies: Path, perceptual: str, aggregation: str, no_clahe: bool) -> None:
    """The paper's metrics per pathology type for a checkpoint (reference CPU scoring path)."""
    from ._optional import require

    require("torch", "ra-sdk evaluate")
    from .evaluation import evaluate_studies, format_table
    from .preprocess import Preset
    from .runners.torch import TorchRunner
    from .scorer import Scorer
    from .scoring import ScoreConfig
    from .train.checkpoint import load_model

    net, config = load_model(checkpoint)
    cfg = ScoreConfig(perceptual=perceptual, aggregation=aggregation, use_clahe=not no_clahe)
    features = TorchRunner(None, net=net, network="features") if perceptual == "features" else None
    with Scorer.from_runners(cfg, TorchRunner(None, net=net), features) as scorer:
        res = evaluate_studies(studies, scorer, preset=Preset.from_dict(config["preset"]))
    click.echo(f"score: perceptual {perceptual}, CLAHE {not no_clahe}, image score {aggregation}, study score {cfg.study_aggregation}")
    click.echo(format_table(res))


@main.command("bench")
@click.option("--engine", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="Engine file (default: the bundled demo engine).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench.json"), show_default=True)
@click.option("--quick", is_flag=True, help="Fewer repeats.")
def bench_cmd(engine: Path | None, out: Path, quick: bool) -> None:
    """The standard speed suite: latency and throughput per runner and precision, end-to-end
    screening, and the research-pipeline baseline (PyTorch eager with the engine's own
    weights, needs the train and dev extras) timed in the same run (JSON to --out)."""
    from .bench import format_suite, run_suite

    res = run_suite(engine=engine, quick=quick)
    out.write_text(json.dumps(res, indent=2) + "\n")
    click.echo(format_suite(res))
    click.echo(f"wrote {out}")


@main.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle to write (e.g. model.onnx-bundle).")
@click.option("--perceptual", type=click.Choice(["structural", "features", "none"]), default="structural", show_default=True)
@click.option("--aggregation", type=click.Choice(["mean", "topk", "max"]), default="mean", show_default=True)
@click.option("--topk", default=0.01, show_default=True, help="Fraction of pixels for --aggregation topk.")
@click.option("--fp16", is_flag=True, help="Also store FP16 networks (float32 I/O).")
@click.option("--include-weights", is_flag=True, help="Also store the PyTorch weights (for the torch backend).")
def export_cmd(checkpoint: Path, out: Path, perceptual: str, aggregation: str, topk: float, fp16: bool, include_weights: bool) -> None:
    """Export a checkpoint to a portable ONNX bundle (parity-checked against PyTorch)."""
    from .export.onnx_export import export_checkpoint
    from .scoring import ScoreConfig

    path = export_checkpoint(checkpoint, out, score=ScoreConfig(perceptual=perceptual, aggregation=aggregation, topk=topk), fp16=fp16, include_weights=include_weights)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); calibrate it with: ra-sdk calibrate {path}")


@main.command("build")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="TensorRT engine file to write (.plan).")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--min-batch", default=1, show_default=True)
@click.option("--opt-batch", default=16, show_default=True)
@click.option("--max-batch", default=64, show_default=True)
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None, help="Read and update this timing cache.")
@click.option("--opt-level", default=3, show_default=True, help="TensorRT builder optimisation level (0-5).")
@click.option("--version-compatible", is_flag=True, help="Build a version-compatible plan.")
def build_cmd(bundle: Path, out: Path, precision: str, min_batch: int, opt_batch: int, max_batch: int, timing_cache: Path | None, opt_level: int, version_compatible: bool) -> None:
    """Build a TensorRT engine file for this GPU from an ONNX bundle."""
    from ._optional import require

    require("tensorrt", "ra-sdk build")
    from .export.tensorrt import build_engine_file

    path = build_engine_file(bundle, out, precision=precision, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                             timing_cache=timing_cache, optimization_level=opt_level, version_compatible=version_compatible)
    click.echo(f"wrote {path}")


@main.command("calibrate")
@click.argument("engine", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--normals", default="embedded", show_default=True, help="Folder of normal studies, or 'embedded'.")
@click.option("-n", "n", default=256, show_default=True, help="Images to use with --normals embedded.")
@click.option("--percentile", default=95.0, show_default=True, help="Flag scores above this percentile of normals.")
@click.option("--backend", default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
def calibrate_cmd(engine: Path, normals: str, n: int, percentile: float, backend: str, device: str) -> None:
    """Score held-out normals and store the operating point and quantiles in ENGINE."""
    from .calibration import calibrate
    from .engine import describe, format_description

    bar = _Bar("calibrating", "image", None)
    try:
        eng = calibrate(engine, normals, n=n, percentile=percentile, backend=backend, device=device, on_progress=bar.progress)
    finally:
        bar.close()
    click.echo(format_description(describe(eng)))


@main.command("inspect")
@click.argument("engine", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def inspect_cmd(engine: Path, as_json: bool) -> None:
    """Print an engine file's model, preset, scoring, calibration and versions."""
    from .engine import describe, format_description, read_engine

    d = describe(read_engine(engine))
    click.echo(json.dumps(d, indent=2) if as_json else format_description(d))


@main.group()
def data() -> None:
    """Embedded demo data: demo studies and a preview of the synthetic pathologies."""


@data.command("demo-studies")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@click.option("--n-normal", default=60, show_default=True, help="Normal studies.")
@click.option("--n-per-type", default=12, show_default=True, help="Studies per pathology type.")
@click.option("--n-volumes", default=6, show_default=True, help="How many studies are NIfTI volumes.")
@click.option("--seed", default=0, show_default=True)
def demo_studies(out: Path, n_normal: int, n_per_type: int, n_volumes: int, seed: int) -> None:
    """Write a folder of demo studies (DICOM, PNG, NIfTI), labels.csv and masks."""
    from .data.demo_studies import DemoSpec, write_demo_studies

    labels = write_demo_studies(out, DemoSpec(n_normal=n_normal, n_per_type=n_per_type, n_volumes=n_volumes, seed=seed))
    click.echo(f"wrote {out / 'studies'} and {labels}")


@data.command("preview")
@click.option("--out", "out", default="preview.png", show_default=True, type=click.Path(path_type=Path))
@click.option("--rows", default=3, show_default=True)
@click.option("--seed", default=0, show_default=True)
def data_preview(out: Path, rows: int, seed: int) -> None:
    """Write one PNG grid: normals and each synthetic pathology with its mask outline."""
    from .data.demo_studies import preview

    click.echo(f"wrote {preview(out, rows=rows, seed=seed)}")


if __name__ == "__main__":  # pragma: no cover
    main()
