"""``nfkit map-clip`` (nerf2clip / clip2nerf) and ``nfkit train-clip`` (a small CLIP of a dataset)."""

from __future__ import annotations

from pathlib import Path

import typer

from nfkit.cli._app import app, resolve_device, user_errors

CLIP_MODEL_HELP = ("open_clip model name (ViT-B-32 as in the seeds; nfkit-clip-small for the CLIP `nfkit train-clip` "
                   "trains).")
CLIP_PRETRAINED_HELP = ("Pretrained tag (openai: downloaded by open_clip where the machine can), a local checkpoint "
                        "file, or none (random weights).")


@app.command("map-clip")
@user_errors
def map_clip(
    embeddings: Path = typer.Argument(None, metavar="[EMBEDDINGS]", help="Embedding shards or folder (default: <workspace>/embeddings).", show_default=False),
    dataset: Path = typer.Argument(None, metavar="[DATASET]", help="The dataset folder of the objects' views (default: the object folders the NeRF shards record).", show_default=False),
    clip_model: str = typer.Option("ViT-B-32", "--clip-model", help=CLIP_MODEL_HELP),
    clip_pretrained: str = typer.Option("openai", "--clip-pretrained", help=CLIP_PRETRAINED_HELP),
    views: str = typer.Option(None, "--views", help="gt (the dataset's images) or rendered (views rendered from the NeRFs at the dataset's cameras); default: the preset's (gt).", show_default=False),
    n_views: int = typer.Option(None, "--n-views", help="Views per object (default: the preset's; 36 as the seeds).", show_default=False),
    preset: str = typer.Option("cpu", "--preset", help="paper (the seeds' recipe), cpu (minutes on 2 cores) or tiny."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key, e.g. --set clip2nerf.epochs=50 --set nerf2clip.loss=siglip (repeatable).", show_default=False),
    arch: list[str] = typer.Option(None, "--arch", help="Only embeddings of these architectures (repeatable; default: all).", show_default=False),
    nerfs: list[Path] = typer.Option(None, "--nerfs", help="NeRF shards (rendered views; object folders without DATASET) (default: <workspace>/nerfs).", show_default=False),
    render_resolution: int = typer.Option(None, "--render-resolution", help="Width of rendered views (default: the dataset's).", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: <workspace>/clip).", show_default=False),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Train nerf2clip (NeRF embedding -> mean CLIP embedding of its views) and clip2nerf (each
    view's CLIP embedding -> the NeRF embedding), plus a shuffled control; the CLIP embeddings of
    the views are cached. Layouts: data_specs/clip-cache-v1.md, data_specs/clip-maps-v1.md."""
    from nfkit.clip.backend import load_clip
    from nfkit.clip.maps import PRESETS
    from nfkit.clip.stage import run_map_clip, summary_markdown
    from nfkit.config import parse_set_options
    from nfkit.workspace import default, stage_dir

    overrides = parse_set_options(set_)
    if views is not None:
        overrides["views"] = views
    if n_views is not None:
        overrides["n_views"] = str(n_views)
    cfg = PRESETS.resolve(preset, overrides)
    dev = resolve_device(device)
    src = embeddings if embeddings is not None else default(None, "embeddings")
    nerf_src = nerfs or ([stage_dir("nerfs")] if stage_dir("nerfs").is_dir() else None)
    clip = load_clip(clip_model, clip_pretrained, device=dev)
    out_dir = default(out, "clip")
    s = run_map_clip(src, out_dir, clip, cfg, dataset=dataset, nerfs=nerf_src, archs=arch,
                     render_resolution=render_resolution, device=dev, progress=progress,
                     extra_config={"preset": preset})
    typer.echo(f"CLIP {clip.name} ({clip.pretrained or 'random weights'}, weights {clip.fingerprint}); "
               f"{s.n_pairs} embeddings paired with {cfg.n_views} {cfg.views} views each")
    typer.echo(summary_markdown(s).rstrip())
    typer.echo(f"maps: {s.maps}; CLIP cache: {s.cache}")


@app.command("train-clip")
@user_errors
def train_clip_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder (nfkit synth layout; captions from each object's meta.json)."),
    out: Path = typer.Option(None, "--out", "-o", help="Checkpoint file (default: <workspace>/clip/nfkit-clip.pt).", show_default=False),
    preset: str = typer.Option("cpu", "--preset", help="cpu (a few minutes on 2 cores) or tiny (tests)."),
    set_: list[str] = typer.Option(None, "--set", help="Override a config key, e.g. --set epochs=12 --set split=all (repeatable).", show_default=False),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a small open_clip model (nfkit-clip-small) contrastively on the dataset's views with
    captions from the objects' metadata ("a 3d model of a purple airplane"). It stands in for real
    CLIP weights where none can be downloaded; the seeds' numbers need ViT-B/32
    (--clip-model ViT-B-32 --clip-pretrained openai or a local file). Load the result with
    --clip-model nfkit-clip-small --clip-pretrained FILE."""
    from nfkit.clip.train_clip import PRESETS, train_clip
    from nfkit.config import parse_set_options
    from nfkit.workspace import stage_dir

    cfg = PRESETS.resolve(preset, parse_set_options(set_))
    path = out if out is not None else stage_dir("clip") / "nfkit-clip.pt"
    s = train_clip(dataset, path, cfg, device=resolve_device(device), progress=progress)
    typer.echo(f"trained {s.model} on {s.n_objects} objects x {s.n_views} views, {s.steps} steps: final loss "
               f"{s.final_loss:.3f}, last-epoch caption accuracy in batch {100 * s.train_accuracy:.1f} %")
    typer.echo(f"checkpoint: {s.checkpoint}  (use: --clip-model {s.model} --clip-pretrained {s.checkpoint})")
