"""``nfkit retrieve [EMBEDDINGS]``: retrieval metrics, or the nearest NeRFs of one NeRF."""

from __future__ import annotations

from pathlib import Path

import typer

from nfkit.cli._app import app, resolve_device, user_errors


@app.command("retrieve")
@user_errors
def retrieve(
    embeddings: list[Path] = typer.Argument(None, metavar="[EMBEDDINGS]...", help="Embedding shards or folders: evaluated, or the gallery of --query-nerf (default: <workspace>/embeddings).", show_default=False),
    k: list[int] = typer.Option(None, "--k", help="Cut-offs of recall / hit rate / mAP / precision (repeatable; default 1, 5, 10).", show_default=False),
    metric: str = typer.Option("auto", "--metric", help="auto (cosine for instance retrieval as gmnerf, Euclidean for the class level as nf2vec), cosine or l2."),
    split: str = typer.Option("test", "--split", help="Split of the embeddings used (all = every split)."),
    arch: list[str] = typer.Option(None, "--arch", help="Only these architectures (repeatable; default: all present).", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: <workspace>/retrieve).", show_default=False),
    query_nerf: Path = typer.Option(None, "--query-nerf", help="A NeRF shard: print its nearest gallery NeRFs and draw them.", show_default=False),
    query_row: int = typer.Option(0, "--query-row", help="Which NeRF of the --query-nerf shard."),
    top_k: int = typer.Option(5, "--top-k", help="Results shown for --query-nerf."),
    encoder: Path = typer.Option(None, "--encoder", help="Encoder for --query-nerf (default: <workspace>/encoder/best.h5).", show_default=False),
    nerfs: list[Path] = typer.Option(None, "--nerfs", help="NeRF shards of the gallery, for the picture (default: <workspace>/nerfs).", show_default=False),
    picture: bool = typer.Option(True, "--picture/--no-picture", help="Write the PNG grid of renders for --query-nerf."),
    resolution: int = typer.Option(96, "--resolution", help="Pixels of each render in the picture."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Instance retrieval across architectures (recall@k per query/gallery pair and ALL/ALL)
    and class-level retrieval (class hit rate, mAP, precision), or a --query-nerf search."""
    from nfkit.embed.store import load_embeddings
    from nfkit.workspace import default, stage_dir

    dev = resolve_device(device)
    src = embeddings or [default(None, "embeddings")]
    out_dir = default(out, "retrieve")
    if query_nerf is not None:
        from nfkit.tasks.query import query_nerf as run_query

        gallery = load_embeddings(src)
        if split != "all":
            gallery = gallery.select(split=split)
        if arch:
            gallery = gallery.select(arch=arch)
        nerf_src = nerfs or ([stage_dir("nerfs")] if stage_dir("nerfs").is_dir() else None)
        png = out_dir / f"query-{query_nerf.stem}-{query_row}.png" if picture else None
        what, hits, png = run_query(
            query_nerf, gallery, encoder if encoder is not None else stage_dir("encoder") / "best.h5",
            k=top_k, metric="cosine" if metric == "auto" else metric, row=query_row, nerfs=nerf_src,
            picture=png, resolution=resolution, device=dev,
        )
        typer.echo(f"query {what}: {len(hits)} nearest of {len(gallery)} ({split} split)")
        for h in hits:
            typer.echo(f"{h.rank}\t{h.class_name}\t{h.arch}\t{h.key}\tdistance={h.distance:.4f}")
        if png is not None:
            typer.echo(f"picture: {png}")
        return
    from nfkit.tasks.retrieve import DEFAULT_KS, retrieval_markdown, run_retrieve

    result = run_retrieve(src, out_dir, k or DEFAULT_KS, metric, split, arch, device=dev, progress=progress)
    typer.echo(retrieval_markdown(result).rstrip())
    typer.echo(f"retrieve.json and retrieve.md in {out_dir}")
