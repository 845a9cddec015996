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
    query: list[Path] = typer.Option(None, "--query", help="A photo (PNG or JPEG, any size; repeatable: several are one multi-view query): print and draw its nearest NeRFs through the CLIP maps.", show_default=False),
    text: str = typer.Option(None, "--text", help="A text query, e.g. 'a 3d model of a red car'.", show_default=False),
    modality: str = typer.Option(None, "--modality", help="clip2nerf (query -> clip2nerf -> NeRF embeddings), nerf2clip (gallery = nerf2clip of the NeRFs, query = raw CLIP) or both (default: clip2nerf for --query/--text, both for --clip-eval).", show_default=False),
    clip_eval: bool = typer.Option(False, "--clip-eval", help="Image -> NeRF and text -> NeRF class recall@k of the CLIP maps, next to their shuffled control."),
    query_views: str = typer.Option("gt", "--query-views", help="--clip-eval: query views, gt (dataset images) or rendered (from the NeRFs)."),
    prompt: list[str] = typer.Option(None, "--prompt", help="--clip-eval: prompt templates of the class text queries (repeatable; default 'a 3d model of {}', 'a photo of {}').", show_default=False),
    dataset: Path = typer.Option(None, "--dataset", help="--clip-eval with gt views: the dataset folder (default: the object folders recorded in the NeRF shards).", show_default=False),
    clip_maps: Path = typer.Option(None, "--clip-maps", help="nerf2clip / clip2nerf artifact (default: <workspace>/clip/maps.h5).", show_default=False),
    clip_model: str = typer.Option(None, "--clip-model", help="CLIP of the query (default: the one the maps were trained with; another is refused).", show_default=False),
    clip_pretrained: str = typer.Option(None, "--clip-pretrained", help="Its tag or checkpoint file (default: the maps').", show_default=False),
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
    if query or text is not None or clip_eval:
        _clip_retrieve(src, out_dir, query, text, modality, clip_eval, query_views, prompt, dataset, clip_maps,
                       clip_model, clip_pretrained, split, arch, k, top_k, nerfs, picture, resolution, dev, progress)
        return
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


def _clip_retrieve(src, out_dir, query, text, modality, clip_eval, query_views, prompt, dataset, clip_maps, clip_model,
                   clip_pretrained, split, arch, k, top_k, nerfs, picture, resolution, dev, progress) -> None:
    from nfkit.workspace import stage_dir

    maps_path = clip_maps if clip_maps is not None else stage_dir("clip") / "maps.h5"
    nerf_src = nerfs or ([stage_dir("nerfs")] if stage_dir("nerfs").is_dir() else None)
    if clip_eval:
        from nfkit.clip.run import clip_eval_cli
        from nfkit.tasks.retrieve import DEFAULT_KS

        ks = tuple(sorted(set(k or DEFAULT_KS)))
        _, md = clip_eval_cli(src, maps_path, query_views, modality, clip_model, clip_pretrained, prompt, split, arch,
                              ks, nerf_src, dataset, out_dir, None, dev, progress)
        typer.echo(md.rstrip())
        typer.echo(f"clip-retrieval.json and clip-retrieval.md in {out_dir}")
        if not (query or text is not None):
            return
    from nfkit.clip.run import query_cli

    what, hits, pngs = query_cli(src, maps_path, query, text, modality, clip_model, clip_pretrained, split, arch, top_k,
                                 nerf_src, out_dir if picture else None, resolution, dev)
    for mod, rows in hits.items():
        typer.echo(f"query {what} ({mod}): {len(rows)} nearest ({split} split)")
        for h in rows:
            typer.echo(f"{h.rank}\t{h.class_name}\t{h.arch}\t{h.key}\tdistance={h.distance:.4f}")
        if pngs.get(mod) is not None:
            typer.echo(f"picture: {pngs[mod]}")
