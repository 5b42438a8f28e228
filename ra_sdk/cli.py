"""The ``ra-sdk`` command. Each subcommand parses its arguments and calls one public function."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

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
            click.echo(f"error: {err}", err=True)
            ctx.exit(EXIT_FATAL)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ra-sdk")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Screen medical images for anomalies with Reversed Auto-Encoders (RA)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


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
    from .data.demo import DemoSpec, write_demo_studies

    labels = write_demo_studies(out, DemoSpec(n_normal=n_normal, n_per_type=n_per_type, n_volumes=n_volumes, seed=seed))
    click.echo(f"wrote {out / 'studies'} and {labels}")


@data.command("preview")
@click.option("--out", "out", default="preview.png", show_default=True, type=click.Path(path_type=Path))
@click.option("--rows", default=3, show_default=True)
@click.option("--seed", default=0, show_default=True)
def data_preview(out: Path, rows: int, seed: int) -> None:
    """Write one PNG grid: normals and each synthetic pathology with its mask outline."""
    from .data.demo import preview

    click.echo(f"wrote {preview(out, rows=rows, seed=seed)}")


if __name__ == "__main__":  # pragma: no cover
    main()
