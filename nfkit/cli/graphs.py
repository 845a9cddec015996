"""``nfkit build-graphs``: NeRF shards → parameter-graph shards."""

from __future__ import annotations

from pathlib import Path

import typer

from nfkit.cli._app import app, user_errors


@app.command("build-graphs")
@user_errors
def build_graphs_cmd(
    nerfs: list[Path] = typer.Argument(
        None,
        metavar="NERFS...",
        help="NeRF shard files or folders (searched recursively for *.h5). Default: <workspace>/nerfs; "
        "with --stats and no NERFS, only the table of the graphs already in --out is printed.",
        show_default=False,
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Output folder: one graph shard per NeRF shard, same relative name. Default: <workspace>/graphs.",
        show_default=False,
    ),
    arch: list[str] = typer.Option(
        None,
        "--arch",
        help="Only build graphs of this architecture name (repeatable).",
        show_default=False,
    ),
    stats: bool = typer.Option(
        False,
        "--stats",
        help="Afterwards print nodes and edges per graph for each architecture found in --out "
        "(with no NERFS: only print the table for the graphs already in --out).",
    ),
    nf2vec: bool = typer.Option(
        False,
        "--nf2vec",
        help="Also store the nf2vec encoder input (weights stacked in rows) per graph.",
    ),
    nf2vec_width: int = typer.Option(
        None,
        "--nf2vec-width",
        help="Row width of the nf2vec input (implies --nf2vec); default: the MLP's hidden width.",
        show_default=False,
    ),
    force: bool = typer.Option(
        False, "--force", help="Rebuild outputs that are already up to date."
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show a progress bar on stderr."
    ),
    shard_index: int | None = typer.Option(
        None, "--shard-index", help="Build NeRF shards i with i % N == I (default: $RANK or 0).", show_default=False
    ),
    num_shards: int | None = typer.Option(
        None, "--num-shards", help="N of --shard-index (default: $WORLD_SIZE or 1).", show_default=False
    ),
) -> None:
    """Turn NeRF weights into parameter graphs (MLP, tri-plane and hash-grid NeRFs).

    Outputs that are complete and built from their input as it is now are skipped, so a rerun resumes. A corrupt or unreadable NeRF shard is reported on stderr while the others are still built; the exit code is then 1. Layout of the graphs: data_specs/graph-shard-v1.md.
    """
    from nfkit.graphs.convert import build_graphs, format_stats, graph_stats
    from nfkit.io.shards import shard_from_env
    from nfkit.workspace import default, default_input

    out = default(out, "graphs")
    if not nerfs and not stats:
        nerfs = default_input(None, "nerfs")
    if not nerfs and not out.is_dir():
        raise FileNotFoundError(f"{out}: no such graph folder")
    index, count = shard_from_env(shard_index, num_shards)
    label = f"shard {index + 1}/{count}: " if count > 1 else ""
    counts = {"built": 0, "skipped": 0, "filtered": 0, "failed": 0}
    graphs = 0
    for r in build_graphs(
        nerfs or [],
        out,
        archs=arch or None,
        nf2vec=nf2vec,
        nf2vec_width=nf2vec_width,
        force=force,
        progress=progress,
        shard_index=index,
        num_shards=count,
    ):
        counts[r.status] += 1
        if r.status == "failed":
            typer.echo(f"error: {label}{r.message}", err=True)
        elif r.status == "built":
            graphs += r.graphs
    if nerfs:
        typer.echo(
            f"{label}built {graphs} graphs in {counts['built']} shard(s) -> {out} "
            f"({counts['skipped']} up to date, {counts['filtered']} filtered out by --arch, "
            f"{counts['failed']} failed)"
        )
    if stats and index == 0:
        table = graph_stats(out) if out.is_dir() else []
        typer.echo(format_stats(table) if table else f"no graph shards in {out}")
    if counts["failed"]:
        raise typer.Exit(code=1)
