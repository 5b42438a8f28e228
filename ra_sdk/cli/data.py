"""``ra-sdk data``: the embedded demo data as files a user could have."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("data")
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
    from ..data.demo_studies import DemoSpec, write_demo_studies

    labels = write_demo_studies(out, DemoSpec(n_normal=n_normal, n_per_type=n_per_type, n_volumes=n_volumes, seed=seed))
    click.echo(f"wrote {out / 'studies'} and {labels}")


@data.command("preview")
@click.option("--out", "out", default="preview.png", show_default=True, type=click.Path(path_type=Path))
@click.option("--data", "folder", type=click.Path(exists=True, path_type=Path), default=None, help="A folder of your studies: show them as the model will see them.")
@click.option("--preset", default="brain-mri-t1", show_default=True, help="The preset to preprocess --data with.")
@click.option("--rows", default=3, show_default=True)
@click.option("--seed", default=0, show_default=True)
def data_preview(out: Path, folder: Path | None, preset: str, rows: int, seed: int) -> None:
    """Write one PNG grid: with --data, your studies after the preset's preprocessing
    (crop, normalisation, pad, resize), one line per study; without, normals and each
    synthetic pathology with its mask outline."""
    if folder is not None:
        from ..data.preview import preview_folder

        path, lines = preview_folder(folder, preset, out, n=6 * rows if rows != 3 else 24)
        for line in lines:
            click.echo(line)
        click.echo(f"wrote {path}")
        return
    from ..data.demo_studies import preview

    click.echo(f"wrote {preview(out, rows=rows, seed=seed)}")
