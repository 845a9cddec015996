"""``nfkit render [NERFS] [--out VIEWS]``: NeRF artifacts -> PNG images."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from nfkit.cli._app import app, fail, resolve_device, user_errors


@app.command("render")
@user_errors
def render(
    nerfs: list[Path] = typer.Argument(
        None, metavar="[NERFS]...", help="NeRF shard files or folders (searched recursively for *.h5). Default: <workspace>/nerfs.",
        show_default=False,
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder: OUT/<arch>/<class>/<object_id>.png. Default: <workspace>/views.", show_default=False,
    ),
    cameras: str = typer.Option(
        "turntable", "--cameras",
        help="'dataset': the object's own cameras (needs --dataset), each row ground truth | render; 'turntable': views around the vertical axis; "
        "or a transforms .json file (Blender convention: camera_angle_x, frames[].transform_matrix, optional w/h/fl_x): one PNG per view in "
        "OUT/<arch>/<class>/<object_id>/, and the PSNR per view (printed and in psnr.json there) where the frames' images exist next to the file.",
    ),
    objects: list[str] = typer.Option(
        None, "--object", help="Only render this NeRF (repeatable): class/object_id or object_id.", show_default=False,
    ),
    dataset: Path | None = typer.Option(None, "--dataset", help="The multi-view dataset the NeRFs were fitted on (for --cameras dataset)."),
    turntable: int = typer.Option(8, "--turntable", help="Number of turntable views (with --cameras turntable)."),
    views: int = typer.Option(4, "--views", help="Dataset views per NeRF (held-out views first)."),
    resolution: int = typer.Option(0, "--resolution", help="Image width in pixels (0: the dataset's or the cameras file's; 128 for a turntable)."),
    elevation: float = typer.Option(30.0, "--elevation", help="Turntable elevation above the horizon, degrees."),
    distance: float = typer.Option(3.4, "--distance", help="Turntable camera distance to the origin."),
    fov: float = typer.Option(0.8, "--fov", help="Turntable horizontal field of view, radians (the procedural dataset's)."),
    samples: int = typer.Option(128, "--samples", help="Samples per ray across the object box."),
    grid_res: int = typer.Option(64, "--grid-res", help="Occupancy grid rebuilt from each NeRF's density, cells per axis."),
    arch: list[str] = typer.Option(None, "--arch", help="Only render this architecture (repeatable).", show_default=False),
    limit: int = typer.Option(0, "--limit", help="Render at most N NeRFs (0 = all)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    decoder: Path | None = typer.Option(
        None, "--decoder",
        help="An encoder checkpoint (pretrain-encoder's best.h5): render each NeRF on a turntable next to the decoder's reconstruction from its embedding (one PNG per NeRF: the NeRF's row, then the decoder's), with the PSNR between them.",
        show_default=False,
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar over NeRFs."),
) -> None:
    """Render stored NeRFs with the fitter's sampler and compositing, on black. A shard that
    cannot be read is reported on stderr while the others are rendered; the exit code is then 1."""
    from nfkit.render.views import render_nerfs
    from nfkit.workspace import default, default_input

    nerfs = default_input(nerfs, "nerfs")
    out = default(out, "views")

    if decoder is not None:
        _reconstructions(nerfs, out, decoder, objects, turntable, resolution, elevation, distance, fov,
                         samples, grid_res, arch, limit, progress)
        return
    mode = cameras.strip()
    if mode.lower() in ("dataset", "turntable"):
        mode = mode.lower()
    failures: list[str] = []
    results = render_nerfs(
        nerfs, out, cameras=mode, objects=objects, dataset=dataset, turntable=turntable, views=views,
        resolution=resolution, elevation_deg=elevation, distance=distance, fov_x=fov,
        n_samples=samples, grid_res=grid_res, limit=limit, arch=arch, device=resolve_device(device),
        progress=progress, failures=failures,
    )
    for r in results:
        psnr = f", PSNR vs ground truth {r.psnr:.2f} dB" if math.isfinite(r.psnr) else ""
        typer.echo(f"{r.arch} {r.key}: {r.n_views} views -> {r.path}{psnr}")
        if r.psnr_file is not None:
            per_view = " ".join(f"{p:.2f}" if math.isfinite(p) else "-" for p in r.view_psnr)
            typer.echo(f"  PSNR per view (dB): {per_view} -> {r.psnr_file}")
    typer.echo(f"rendered {len(results)} NeRF(s) to {out}")
    for message in failures:
        typer.echo(f"error: {message}", err=True)
    if failures:
        raise fail(f"{len(failures)} shard(s) could not be read (listed above); the others were rendered")


def _reconstructions(nerfs, out, decoder, objects, turntable, resolution, elevation, distance, fov,
                     samples, grid_res, arch, limit, progress) -> None:
    from nfkit.encoder.reconstruct import reconstruct
    from nfkit.errors import UserError
    from nfkit.nerf.store import iter_nerfs

    wanted = set(objects or [])
    keep = None if not arch else {a.lower() for a in arch}
    records = []
    for rec in iter_nerfs(nerfs):
        if keep is not None and rec.arch.name.lower() not in keep:
            continue
        if wanted and rec.key not in wanted and rec.object_id not in wanted:
            continue
        records.append(rec)
        if limit and len(records) >= limit:
            break
    if not records:
        raise UserError(f"{nerfs}: no NeRFs match the selection")
    results = reconstruct(decoder, records, out, views=turntable, resolution=resolution or 96,
                          elevation_deg=elevation, distance=distance, fov_x=fov, n_samples=samples,
                          grid_res=grid_res, progress=progress)
    for r in results:
        typer.echo(f"{r.arch} {r.key}: NeRF | decoder -> {r.path}, PSNR {r.psnr:.2f} dB")
    mean = sum(r.psnr for r in results) / len(results)
    typer.echo(f"reconstructed {len(results)} NeRF(s) to {out}; mean decoder PSNR vs the NeRF {mean:.2f} dB")
