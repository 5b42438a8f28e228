"""The ``ra-sdk`` command. Each subcommand parses its arguments and calls one public
function; the commands live by theme in this package (``screen``, ``model``, ``data``)."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

import click

from .._version import __version__
from ..errors import RaSdkError
from . import data, model, node, screen
from ._common import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL

log = logging.getLogger("ra_sdk")


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


@main.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(as_json: bool) -> None:
    """Versions, devices, and which backends are usable here (and why not)."""
    from ..info import collect, format_report

    report = collect()
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@main.command("read")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def read_cmd(path: Path) -> None:
    """Discover the studies under PATH and try to read each one (a reader check)."""
    from ..io import discover, read_study

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


for _command in (
    screen.screen_cmd, screen.report_cmd, screen.demo_cmd,
    model.train_cmd, model.evaluate_cmd, model.bench_cmd, model.export_cmd, model.build_cmd, model.calibrate_cmd, model.inspect_cmd,
    data.data, node.listen_cmd,
):
    main.add_command(_command)
