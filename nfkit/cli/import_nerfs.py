"""``nfkit import-nerfs ROOT --arch A --out DIR``: NeRFs fitted elsewhere with tiny-cuda-nn
(the authors' ``nerf_weights.pth`` layout) -> nfkit NeRF shards."""

from __future__ import annotations

from pathlib import Path

import typer

from nfkit.cli._app import app, fail, user_errors


@app.command("import-nerfs")
@user_errors
def import_nerfs(
    root: Path = typer.Argument(..., help="Folder of reference NeRFs, <class>/<object_id>/nerf_weights.pth (searched recursively)."),
    arch: str = typer.Option(..., "--arch", help="Architecture of these NeRFs: a registered name (mlp, tri, hash, mlp-2l, ...) or a .json spec file."),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder for the NeRF shards (<arch>-imported-*.h5); NeRFs already imported there are skipped, "
        "so a rerun resumes. Default: <workspace>/nerfs.", show_default=False,
    ),
    init: Path | None = typer.Option(
        None,
        "--init",
        help="The shared init these NeRFs were fitted from: an nfkit nerf-init .h5, or a nerf_weights-style .pth with the initial weights "
        "(saved as OUT/<arch>.init.h5). Without it the NeRFs record the init 'imported:unknown' and are not comparable with other NeRFs.",
    ),
    splits: Path | None = typer.Option(
        None,
        "--splits",
        help="Folder with split lists: gmnerf's {train,val,test}.txt or nf2vec's {train,validation,test}.json. "
        "Default: ROOT's parent, ROOT/splits and ROOT. NeRFs not listed get the split 'unlisted'.",
    ),
    per_level_scale: float | None = typer.Option(
        None,
        "--per-level-scale",
        help="Hash architectures: the hash grid's per-level scale the NeRFs were trained with (default: the architecture's). "
        "The weights do not tell: HASH-3N has 24,576 entries both at 2.0 (levels 16, 32, 64; nfkit's hash-3n) and at 2.828 "
        "(finest level kept at 128). Stored in the shards' architecture spec.",
        show_default=False,
    ),
    shard_size: int = typer.Option(256, "--shard-size", min=1, help="NeRFs per output shard."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar over files."),
) -> None:
    """Import NeRFs fitted with tiny-cuda-nn in the nf2vec / gmnerf layout (mlp_base.params,
    encoding.params, triplane) into the canonical layout, exactly (the weights on tiny-cuda-nn's
    constant-1 padding inputs are kept), without needing tinycudann."""
    from nfkit.nerf.interop import import_reference_nerfs, load_reference_init, with_per_level_scale
    from nfkit.nerf.specs import get_arch
    from nfkit.workspace import default

    out = default(out, "nerfs")

    spec = with_per_level_scale(get_arch(arch), per_level_scale)
    init_obj = load_reference_init(init, spec, out_dir=out) if init is not None else None
    report = import_reference_nerfs(
        root, spec, out, init=init_obj, splits_dir=splits, shard_size=shard_size, progress=progress
    )
    for _path, message in report.failed:
        typer.echo(f"error: {message}", err=True)
    typer.echo(
        f"imported {report.imported} of {report.found} NeRFs ({spec.name}) into {len(report.shards)} shard(s) in {out}"
        + (f"; {report.skipped} already imported" if report.skipped else "")
    )
    typer.echo(f"init fingerprint: {report.init_fingerprint}")
    typer.echo("sine: tcnn (these NeRFs are rendered and evaluated with tiny-cuda-nn's fast sine)")
    if spec.family == "hash":
        typer.echo(f"hash per-level scale: {spec.hash_per_level_scale:g} (set with --per-level-scale)")
    if report.failed:
        raise fail(f"{len(report.failed)} of {report.found} files could not be imported (listed above)")
