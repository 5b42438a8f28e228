"""``ra-sdk train``, ``evaluate``, ``export``, ``build``, ``calibrate``, ``inspect`` and
``bench``: making and judging engines. The train, evaluate, export and build commands are
the runtime's one door into the build-time rooms (``ra_sdk.train``, ``ra_sdk.export``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._common import Bar


@click.command("train")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None, help="Folder of normal studies (any layout the readers understand), split by study into training and validation.")
@click.option("--preset", default=None, help="Preprocessing preset: chest-xray, wrist-xray, brain-mri-t1 or generic (default: brain-mri-t1).")
@click.option("--val-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True), help="Fraction of the --data studies held out for validation and, by default, calibration.")
@click.option("--demo", is_flag=True, help="Train on the embedded normal brain data (augmented).")
@click.option("--model", default="ra-tiny", show_default=True, help="Registered model config.")
@click.option("--objective", type=click.Choice(["ra", "ae", "vae"]), default="ra", show_default=True)
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(1, None))
@click.option("--max-steps", default=0, show_default=True, type=click.IntRange(0, None), help="Stop after this many steps (0: no limit).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, None))
@click.option("--lr", default=5e-5, show_default=True, type=click.FloatRange(0, None, min_open=True), help="Learning rate at --base-batch (the paper code's 5e-5 at batch 8).")
@click.option("--lr-rule", type=click.Choice(["constant", "linear", "sqrt"]), default="constant", show_default=True, help="Scale the learning rate with batch / base batch: not, linearly, or by its square root.")
@click.option("--warmup-steps", default=0, show_default=True, type=click.IntRange(0, None), help="Linear learning-rate warm-up.")
@click.option("--step", "step_kind", type=click.Choice(["auto", "reference", "fast", "graph"]), default="auto", show_default=True, help="Training step: auto = CUDA graph on a GPU, the plain reference step elsewhere.")
@click.option("--select", type=click.Choice(["auto", "auroc", "mse"]), default="auto", show_default=True, help="Keep 'best' by validation AUROC on synthetic anomalies (the embedded data) or by validation MSE.")
@click.option("--pool-size", default=2048, show_default=True, help="Augmented images per epoch (--demo).")
@click.option("--max-minutes", default=0.0, show_default=True, help="Stop cleanly after this long (0: no limit).")
@click.option("--device", default="auto", show_default=True)
@click.option("--resume/--no-resume", default=True, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--patience", default=5, show_default=True, help="Stop after this many epochs without a better validation loss (0: never).")
@click.option("--init", "init_from", type=click.Path(exists=True, path_type=Path), default=None, help="Start from the weights of this checkpoint folder or engine file (fine-tuning; fresh optimisers).")
@click.option("--out", required=True, type=click.Path(path_type=Path))
def train_cmd(data: Path | None, preset: str | None, val_fraction: float, demo: bool, model: str, objective: str, epochs: int, max_steps: int, batch_size: int, lr: float, lr_rule: str, warmup_steps: int, step_kind: str, select: str, pool_size: int, max_minutes: float, device: str, resume: bool, seed: int, patience: int, init_from: Path | None, out: Path) -> None:
    """Train RA (or the AE / VAE baseline) on normal images; checkpoints in OUT/best and OUT/last."""
    from .._optional import require
    from ..errors import ConfigError, RaSdkError

    require("torch", "ra-sdk train")
    from ..train.callbacks import Callback
    from ..train.config import TrainConfig
    from ..train.data import training_data
    from ..train.trainer import Trainer

    if demo == (data is not None):
        raise ConfigError("give exactly one of --data DIR and --demo")
    from ..preprocess import get_preset

    preset = preset or "brain-mri-t1"
    get_preset(preset)  # an unknown name is an error that lists the valid ones
    if demo and preset != "brain-mri-t1":
        raise ConfigError(f"--demo trains on the embedded brain MRI data; --preset {preset} needs --data NORMALS_DIR")
    cfg = TrainConfig(objective=objective, model=model, preset=preset, epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, lr_rule=lr_rule, warmup_steps=warmup_steps, step=step_kind, select=select,
                      pool_size=pool_size, max_minutes=max_minutes, seed=seed, patience=patience, init_from=str(init_from or ""))
    from ..configs import get_model_config

    train, val, split = training_data(size=get_model_config(model).image_size, data=data, preset=cfg.preset, pool_size=pool_size, val_size=cfg.val_size, seed=seed, val_fraction=val_fraction)
    if split is not None:
        from ..io.files import atomic_write

        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "split.json", json.dumps(split, indent=2) + "\n")
        click.echo(f"{len(split['train'])} training and {len(split['val'])} validation studies ({len(train)} and {len(val)} images); split in {out / 'split.json'}")

    class Progress(Callback):
        def __init__(self) -> None:
            self.bar = Bar(f"train {objective}/{model}", "step", None)

        def on_start(self, total_steps: int, step: int) -> None:
            self.bar.start(total_steps, step)

        def on_step(self, step: int, metrics: dict[str, float]) -> None:
            if self.bar.bar is not None:
                self.bar.bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items()}, refresh=False)
                self.bar.bar.update(1)

        def on_end(self, summary: dict[str, Any]) -> None:
            self.bar.close()

    summary = Trainer(cfg, out, device=device, callbacks=[Progress()]).fit(train, val, resume=resume, embedded=demo)
    auroc = f", best validation AUROC {summary['best_val_auroc']:.3f}" if summary["selected_by"] == "auroc" else ""
    click.echo(f"{summary['steps']} steps ({summary['step_kind']} step), {summary['epochs']} epochs, best validation MSE {summary['best_val_mse']:.5f}{auroc}, "
               f"{summary['seconds']:.0f} s (stopped by {summary['stopped_by']}); checkpoint: {out / 'best'} (selected by {summary['selected_by']})")
    if summary["stopped_by"] == "non-finite loss":
        raise RaSdkError(f"training diverged at step {summary['steps']} (a loss is not finite); {out / 'last'} and {out / 'best'} hold the last good checkpoints")


@click.command("evaluate")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, path_type=Path), help="Checkpoint folder, or an engine file (its weights).")
@click.option("--studies", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="A demo-studies folder (labels.csv, studies/, masks/).")
@click.option("--perceptual", type=click.Choice(["structural", "features", "none"]), default="structural", show_default=True)
@click.option("--aggregation", type=click.Choice(["mean", "topk", "max"]), default="mean", show_default=True)
@click.option("--no-clahe", is_flag=True)
def evaluate_cmd(checkpoint: Path, studies: Path, perceptual: str, aggregation: str, no_clahe: bool) -> None:
    """The paper's metrics per pathology type for a checkpoint (reference CPU scoring path)."""
    from .._optional import require

    require("torch", "ra-sdk evaluate")
    from ..evaluation import evaluate_studies, format_table
    from ..preprocess import Preset
    from ..runners.torch import TorchRunner
    from ..scorer import Scorer
    from ..scoring import ScoreConfig
    from ..train.checkpoint import load_model

    net, config = load_model(checkpoint)
    cfg = ScoreConfig(perceptual=perceptual, aggregation=aggregation, use_clahe=not no_clahe)
    features = TorchRunner(None, net=net, network="features") if perceptual == "features" else None
    with Scorer.from_runners(cfg, TorchRunner(None, net=net), features) as scorer:
        res = evaluate_studies(studies, scorer, preset=Preset.from_dict(config["preset"]))
    click.echo(f"score: perceptual {perceptual}, CLAHE {not no_clahe}, image score {aggregation}, study score {cfg.study_aggregation}")
    click.echo(format_table(res))


@click.command("bench")
@click.option("--engine", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="Engine file (default: the bundled demo engine).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("bench.json"), show_default=True)
@click.option("--quick", is_flag=True, help="Fewer repeats.")
def bench_cmd(engine: Path | None, out: Path, quick: bool) -> None:
    """The standard speed suite: latency and throughput per runner and precision, end-to-end
    screening, and the research-pipeline baseline (PyTorch eager with the engine's own
    weights, needs the train and dev extras) timed in the same run (JSON to --out)."""
    from ..bench import format_suite, run_suite

    res = run_suite(engine=engine, quick=quick)
    out.write_text(json.dumps(res, indent=2) + "\n")
    click.echo(format_suite(res))
    click.echo(f"wrote {out}")


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle to write (e.g. model.onnx-bundle).")
@click.option("--perceptual", type=click.Choice(["structural", "features", "none"]), default="structural", show_default=True)
@click.option("--aggregation", type=click.Choice(["mean", "topk", "max"]), default="mean", show_default=True)
@click.option("--topk", default=0.01, show_default=True, type=click.FloatRange(0, 1, min_open=True), help="Fraction of pixels for --aggregation topk.")
@click.option("--foreground", default=0.0, show_default=True, type=click.FloatRange(0, 1, max_open=True), help="Score only where the smoothed input exceeds this level (0: every pixel).")
@click.option("--fp16", is_flag=True, help="Also store FP16 networks (float32 I/O).")
@click.option("--include-weights", is_flag=True, help="Also store the PyTorch weights (for the torch backend).")
@click.option("--int8", is_flag=True, help="Also store QDQ int8 networks where they pass the fidelity bar (the export fails, with the figures, when none does).")
@click.option("--calib", default="auto", show_default=True, help="int8 calibration normals: 'auto' (the run's held-out split, else the embedded validation split for brain MRI), 'embedded', or a folder.")
@click.option("--calib-images", default=512, show_default=True, type=click.IntRange(16, None), help="How many calibration images.")
@click.option("--int8-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True, help="Activation range calibration (minmax measured best: benchmarks/results/int8_choice_cpu.json).")
def export_cmd(checkpoint: Path, out: Path, perceptual: str, aggregation: str, topk: float, foreground: float, fp16: bool, include_weights: bool, int8: bool, calib: str, calib_images: int, int8_method: str) -> None:
    """Export a checkpoint to a portable ONNX bundle (parity-checked against PyTorch)."""
    from ..export.onnx_export import export_checkpoint
    from ..scoring import ScoreConfig

    path = export_checkpoint(checkpoint, out, score=ScoreConfig(perceptual=perceptual, aggregation=aggregation, topk=topk, foreground=foreground), fp16=fp16, include_weights=include_weights,
                            int8=int8, int8_calib=calib, int8_images=calib_images, int8_method=int8_method)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); calibrate it with: ra-sdk calibrate {path}")


@click.command("build")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="TensorRT engine file to write (.plan).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True, help="fp16 builds the bundle's FP16 graph; int8 quantizes the fp32 graph again with symmetric activations (TensorRT's INT8 Q/DQ), on the bundle's int8 calibration data.")
@click.option("--min-batch", default=1, show_default=True)
@click.option("--opt-batch", default=16, show_default=True)
@click.option("--max-batch", default=64, show_default=True)
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None, help="Read and update this timing cache.")
@click.option("--opt-level", default=3, show_default=True, help="TensorRT builder optimisation level (0-5).")
@click.option("--version-compatible", is_flag=True, help="Build a version-compatible plan.")
def build_cmd(bundle: Path, out: Path, precision: str, min_batch: int, opt_batch: int, max_batch: int, timing_cache: Path | None, opt_level: int, version_compatible: bool) -> None:
    """Build a TensorRT engine file for this GPU from an ONNX bundle."""
    from .._optional import require

    require("tensorrt", "ra-sdk build")
    from ..export.tensorrt import build_engine_file

    path = build_engine_file(bundle, out, precision=precision, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                             timing_cache=timing_cache, optimization_level=opt_level, version_compatible=version_compatible)
    click.echo(f"wrote {path}")


@click.command("calibrate")
@click.argument("engine", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--normals", default="auto", show_default=True, help="Folder of normal studies not used for training; 'auto': the split the training run held out (recorded in the engine), else for brain MRI the embedded validation split; 'embedded'.")
@click.option("-n", "n", default=256, show_default=True, help="Images to use with --normals embedded.")
@click.option("--percentile", default=95.0, show_default=True, help="Flag scores above this percentile of normals.")
@click.option("--backend", default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
def calibrate_cmd(engine: Path, normals: str, n: int, percentile: float, backend: str, device: str) -> None:
    """Score held-out normals and store the operating point and quantiles in ENGINE."""
    from ..calibration import calibrate
    from ..engine import describe
    from ._common import format_description

    bar = Bar("calibrating", "image", None)
    try:
        eng = calibrate(engine, normals, n=n, percentile=percentile, backend=backend, device=device, on_progress=bar.progress)
    finally:
        bar.close()
    click.echo(format_description(describe(eng)))


@click.command("inspect")
@click.argument("engine", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def inspect_cmd(engine: Path, as_json: bool) -> None:
    """Print an engine file's model, preset, scoring, calibration and versions."""
    from ..engine import describe, read_engine
    from ._common import format_description

    d = describe(read_engine(engine))
    click.echo(json.dumps(d, indent=2) if as_json else format_description(d))
