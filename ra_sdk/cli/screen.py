"""``ra-sdk screen``, ``report`` and ``demo``: screening folders into results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ._common import DEFAULT_OUT, EXIT_OK, EXIT_PARTIAL, Bar, check_writable, engine_notice, finite


@click.command("screen")
@click.argument("studies", type=click.Path(exists=True, path_type=Path))
@click.option("--engine", "engine", type=click.Path(path_type=Path), default=None, help="Engine file: an ONNX bundle (ra-sdk export) or a TensorRT plan bundle (ra-sdk build); default: the bundled demo engine.")
@click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(path_type=Path), help="Output folder (results.csv, results.jsonl, summary.json, run.json, ...).")
@click.option("--backend", default="auto", show_default=True, help="auto, onnxruntime, torch or tensorrt.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "int8"]), default="auto", show_default=True, help="auto: int8 on a CPU with VNNI where the engine's int8 networks passed their fidelity bar, else fp32.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, 4096))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 4096), help="Decode threads or processes (--decode; with --ray: decode tasks at once, cluster-wide).")
@click.option("--decode", type=click.Choice(["threads", "processes"]), default="threads", show_default=True,
              help="Decode in threads, or in worker processes (no shared GIL: for many-core hosts whose cores the engine leaves free, a GPU host; a process that crashes on a file costs only that study).")
@click.option("--memory-budget", "memory_mb", default=4096, show_default=True, type=click.IntRange(64, 1 << 20), help="MB of decoded pixels the decode workers may hold together; a study above its share (budget / workers) is refused before decoding.")
@click.option("--threshold", type=float, default=None, callback=finite, help="Flag scores above this (default: the engine's calibrated operating point).")
@click.option("--save-maps", is_flag=True, help="Write maps/<study>.npy and an overlay PNG per study.")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Skip studies a previous run into --out finished with the same settings (--no-resume screens afresh).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal only).")
@click.option("--report", "report", is_flag=True, help="Also write OUT/report.html, the HTML worklist (previews in OUT/previews/).")
@click.option("--dicom-out", "dicom_out", type=click.Choice(["none", "flagged", "all"]), default="none", show_default=True, help="DICOM Secondary Capture + SEG per DICOM study into OUT/dicom/ (needs ra-sdk[dicom]).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="auto", default=None, metavar="[auto|local|ADDRESS]", help="Screen on a Ray cluster (needs ra-sdk[ray]): decoding in Ray tasks, scoring in an actor pool. auto (the default value): the cluster in RAY_ADDRESS or started here with 'ray start', else a new local one; local: a new local one; or a cluster address.")
@click.option("--actors", default=1, show_default=True, type=click.IntRange(1, 4096), help="With --ray: scoring actors (each loads the engine once).")
@click.option("--gpus-per-actor", default=0.0, show_default=True, type=click.FloatRange(0, 64), help="With --ray: GPUs per actor (fractions share a GPU); Ray picks each actor's GPU.")
@click.option("--cpus-per-actor", default=1.0, show_default=True, type=click.FloatRange(0, 1024), help="With --ray: CPUs per actor (fractions leave CPUs to the decode tasks).")
def screen_cmd(studies: Path, engine: Path | None, out: Path, backend: str, device: str, precision: str, batch_size: int, workers: int, decode: str, memory_mb: int, threshold: float | None, save_maps: bool, resume: bool, progress: bool | None, report: bool, dicom_out: str,
               ray_address: str | None, actors: int, gpus_per_actor: float, cpus_per_actor: float) -> None:
    """Screen every study under STUDIES; results sorted by score in OUT/results.csv.

    Exit status: 0 all studies screened, 3 some studies failed (each has a row with the
    reason), 1 fatal error (missing engine, unwritable output, disk full), 2 usage error.
    """
    from ..run import run
    from ..screen import Screener

    check_writable(out)
    options: dict[str, Any] = {"backend": backend, "device": device, "batch_size": batch_size, "threshold": threshold, "memory_budget_mb": memory_mb, "precision": precision}
    screener: Any
    if ray_address is not None:
        if decode != "threads":
            raise click.UsageError("--decode processes is for screening on this machine; with --ray, Ray's tasks decode")
        from ..distributed import RayScreener, connect

        resources = connect(ray_address)
        click.echo(f"Ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; {actors} scoring actor(s) x ({cpus_per_actor:g} CPU, {gpus_per_actor:g} GPU)", err=True)
        screener = RayScreener(engine, actors=actors, gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor, **options)
    else:
        screener = Screener(engine, decode=decode, **options)
    engine_notice(screener)
    bar = Bar("screening", "study", progress)
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
        from ..report import build_report

        click.echo(f"report: {build_report(out)}")
    sys.exit(EXIT_PARTIAL if summary.failed else EXIT_OK)


@click.command("report")
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
    from ..report import build_report
    from ..run import make_missing_previews

    if previews:
        bar = Bar("previews", "study", progress)
        try:
            made = make_missing_previews(run_dir, previews, on_start=bar.start, on_result=bar.result)
        finally:
            bar.close()
        if made:
            click.echo(f"made {made} missing previews")
    click.echo(f"report: {build_report(run_dir, out=out, labels=labels, previews=previews, page_size=page_size, title=title)}")


@click.command("demo")
@click.option("--out", default="ra-sdk-demo", show_default=True, type=click.Path(path_type=Path))
@click.option("--n-normal", default=60, show_default=True, type=click.IntRange(2, None))
@click.option("--n-per-type", default=12, show_default=True, type=click.IntRange(1, None))
@click.option("--backend", default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
def demo_cmd(out: Path, n_normal: int, n_per_type: int, backend: str, device: str) -> None:
    """Write the demo studies, screen them with the bundled engine, print AUROC per pathology."""
    from ..demo import format_demo, run_demo

    check_writable(out)
    res = run_demo(out, n_normal=n_normal, n_per_type=n_per_type, backend=backend, device=device)
    click.echo(format_demo(res))
