"""``nfkit classify [EMBEDDINGS]``: supervised classifiers, the transfer matrix, predictions."""

from __future__ import annotations

from pathlib import Path

import typer

from nfkit.cli._app import app, resolve_device, user_errors


@app.command("classify")
@user_errors
def classify(
    embeddings: list[Path] = typer.Argument(None, metavar="[EMBEDDINGS]...", help="Embedding shards or folders (default: <workspace>/embeddings).", show_default=False),
    train_arch: list[str] = typer.Option(None, "--train-arch", help="Training set of one classifier: all, an architecture, or several joined with + (repeatable; default: all and each architecture alone).", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: <workspace>/classify).", show_default=False),
    preset: str = typer.Option("cpu", "--preset", help="paper (the seeds' recipe: 150 epochs, batch 256, lr 1e-4), cpu or tiny."),
    epochs: int = typer.Option(None, "--epochs", help="Override the preset's epochs.", show_default=False),
    batch_size: int = typer.Option(None, "--batch-size", help="Override the preset's batch size.", show_default=False),
    lr: float = typer.Option(None, "--lr", help="Override the preset's peak learning rate.", show_default=False),
    seed: int = typer.Option(None, "--seed", help="Override the seed.", show_default=False),
    predict: list[Path] = typer.Option(None, "--predict", help="Classify these NeRF shards/folders from their weights instead of training (repeatable).", show_default=False),
    classifier: Path = typer.Option(None, "--classifier", help="Classifier artifact for --predict (default: <workspace>/classify/classifier-all.h5).", show_default=False),
    encoder: Path = typer.Option(None, "--encoder", help="Encoder checkpoint for --predict (default: <workspace>/encoder/best.h5).", show_default=False),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="Zero-shot classification through nerf2clip and CLIP text prompts, next to the render-then-CLIP baseline (needs `nfkit map-clip`)."),
    prompt: list[str] = typer.Option(None, "--prompt", help="--zero-shot prompt template with {} for the class, e.g. 'a photo of {}' (repeatable; several are averaged; default: 'a 3d model of {}' and 'a photo of {}').", show_default=False),
    clip_maps: Path = typer.Option(None, "--clip-maps", help="nerf2clip / clip2nerf artifact (default: <workspace>/clip/maps.h5).", show_default=False),
    clip_model: str = typer.Option(None, "--clip-model", help="CLIP for the prompts (default: the one the maps were trained with; another one is refused).", show_default=False),
    clip_pretrained: str = typer.Option(None, "--clip-pretrained", help="Its tag or checkpoint file (default: the maps').", show_default=False),
    baseline_views: list[int] = typer.Option(None, "--baseline-views", help="Views rendered per NeRF by the render-then-CLIP baseline (repeatable; default 1, 9, 36; 0 = no baseline).", show_default=False),
    baseline_limit: int = typer.Option(None, "--baseline-limit", help="Render at most this many test NeRFs for the baseline (default: all).", show_default=False),
    render_resolution: int = typer.Option(None, "--render-resolution", help="Width of the baseline's renders (default: the dataset's).", show_default=False),
    split: str = typer.Option("test", "--split", help="--zero-shot: split of the embeddings classified (all = every split)."),
    nerfs: list[Path] = typer.Option(None, "--nerfs", help="--zero-shot: NeRF shards rendered by the baseline (default: <workspace>/nerfs).", show_default=False),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Train a classifier per training set on the train split (best epoch on val), test it on
    every architecture of the test split (unseen ones included): the transfer matrix."""
    from nfkit.workspace import default, stage_dir

    dev = resolve_device(device)
    if zero_shot:
        from nfkit.clip.run import zero_shot_cli

        res, md = zero_shot_cli(
            embeddings or [default(None, "embeddings")], clip_maps or stage_dir("clip") / "maps.h5", prompt or None,
            clip_model, clip_pretrained, baseline_views, baseline_limit, render_resolution, split,
            nerfs or ([stage_dir("nerfs")] if stage_dir("nerfs").is_dir() else None), default(out, "classify"), dev, progress,
        )
        typer.echo(md.rstrip())
        typer.echo(f"zero-shot.json and zero-shot.md in {default(out, 'classify')}")
        return
    if predict:
        from nfkit.tasks.classify import predict_nerfs

        clf_path = classifier if classifier is not None else stage_dir("classify") / "classifier-all.h5"
        enc_path = encoder if encoder is not None else stage_dir("encoder") / "best.h5"
        preds = predict_nerfs(predict, clf_path, enc_path, device=dev, progress=progress)
        for p in preds:
            truth = f" (stored class {p.true_class})" if p.true_class else ""
            typer.echo(f"{p.arch}\t{p.key}\t{p.class_name}\tp={p.probability:.3f}{truth}")
        return
    from nfkit.tasks.classifier import classifier_config
    from nfkit.tasks.classify import run_classify, transfer_markdown

    cfg = classifier_config(preset, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    src = embeddings or [default(None, "embeddings")]
    out_dir = default(out, "classify")
    result = run_classify(src, out_dir, cfg, train_arch, device=dev, progress=progress, extra_config={"preset": preset})
    typer.echo(transfer_markdown(result).rstrip())
    typer.echo(f"classifiers, classify.json and transfer.md in {out_dir}")
