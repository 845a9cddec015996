"""``nfkit synth OUT``: write the procedural stand-in for ShapenetRender; ``nfkit check-data``:
read a multi-view dataset completely and report what it holds."""

from __future__ import annotations

from pathlib import Path

import typer

from nfkit.cli._app import app, user_errors
from nfkit.data.classes import CLASS_NAMES, resolve_classes


@app.command("synth")
@user_errors
def synth(
    out: Path = typer.Argument(
        ..., help="Output folder for the dataset (must not exist or be empty, unless --overwrite)."
    ),
    resolution: int = typer.Option(
        224, "--resolution", "-r", help="Image width and height in pixels (ShapenetRender: 224)."
    ),
    objects_per_class: int = typer.Option(
        10, "--objects-per-class", "-n", help="Objects generated per class, before augmentation."
    ),
    views: int = typer.Option(
        36,
        "--views",
        help="Views per object, one full turn around the vertical axis (ShapenetRender: 36).",
    ),
    classes: str = typer.Option(
        "all",
        "--classes",
        help=f"Comma-separated class names or ShapeNet synset ids, or 'all'. Names: {', '.join(CLASS_NAMES)}.",
    ),
    augment: int = typer.Option(
        0,
        "--augment",
        help="Extra copies per object with a random smooth deformation and new part colours (ids <id>_A1, ...; nerf2vec used 2).",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Random seed; the same seed gives byte-identical files."
    ),
    val_fraction: float = typer.Option(
        0.1, "--val-fraction", help="Fraction of each class's objects in splits/val.txt."
    ),
    test_fraction: float = typer.Option(
        0.1,
        "--test-fraction",
        help="Fraction of each class's objects in splits/test.txt (train always keeps at least one).",
    ),
    preview: Path | None = typer.Option(
        None,
        "--preview",
        help="Also write a PNG contact sheet: one object per class, a few views each, labelled.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUT if it holds a dataset written by nfkit synth."
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show a progress bar over objects."
    ),
) -> None:
    """Generate a procedural stand-in for ShapenetRender (13 classes, same layout and cameras).

    Writes OUT/<synset>/<object_id>/transforms_train.json + train/NN.png (RGBA),
    OUT/splits/{train,val,test}.txt and OUT/dataset.json. Objects are assembled from
    primitives and rendered exactly by ray casting; see data_specs/dataset-layout.md.
    """
    from nfkit.data.synth import SynthConfig, generate_dataset

    chosen = None if classes.strip().lower() == "all" else resolve_classes(classes)
    config = SynthConfig(
        resolution=resolution,
        objects_per_class=objects_per_class,
        views=views,
        augment=augment,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        **({"classes": tuple(chosen)} if chosen else {}),
    )
    summary = generate_dataset(out, config, overwrite=overwrite, preview=preview, progress=progress)
    splits = ", ".join(f"{k} {v}" for k, v in summary.per_split.items())
    typer.echo(
        f"wrote {summary.n_objects} objects ({len(summary.per_class)} classes x {objects_per_class}"
        f"{f' x {augment + 1} with augmented copies' if augment else ''}) to {summary.root}"
    )
    typer.echo(f"splits: {splits}")
    typer.echo(
        f"time: {summary.seconds:.1f} s, {summary.seconds_per_object:.3f} s per object "
        f"({summary.render_seconds_per_object:.3f} s rendering) at {resolution}x{resolution}, {views} views"
    )
    if summary.preview is not None:
        typer.echo(f"preview: {summary.preview}")


@app.command("check-data")
@user_errors
def check_data(
    dataset: Path = typer.Argument(
        ..., help="Dataset root (<root>/<class>/<object_id>/), a class folder or one object folder."
    ),
    classes: str = typer.Option(
        "all",
        "--classes",
        help="Comma-separated classes to check (names, synset ids or folder names), or 'all'.",
    ),
    split: str | None = typer.Option(
        None, "--split", help="Check only this split (train, val, test) from the split lists."
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show a progress bar over objects."
    ),
) -> None:
    """Read a multi-view dataset completely and report what it holds.

    Works on ShapenetRender, NeRF-synthetic scenes and nfkit synth output; fails with a
    one-line error on a missing or corrupt image or a bad camera.
    """
    from nfkit.data.multiview import check_dataset

    chosen = (
        None if classes.strip().lower() == "all" else [c for c in classes.split(",") if c.strip()]
    )
    report = check_dataset(dataset, classes=chosen, split=split, progress=progress)
    typer.echo(f"{report.n_objects} objects in {report.root}, all readable")
    typer.echo("classes: " + ", ".join(f"{k} {v}" for k, v in sorted(report.per_class.items())))
    typer.echo("splits: " + ", ".join(f"{k} {v}" for k, v in sorted(report.per_split.items())))
    sizes = ", ".join(f"{w}x{h}" for w, h in report.sizes)
    typer.echo(f"views per object: {report.views[0]}-{report.views[1]}; image sizes: {sizes}")
