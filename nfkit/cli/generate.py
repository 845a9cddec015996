"""``nfkit generate gan|interpolate|from-image|from-text``: new NeRFs from the embedding space."""

from __future__ import annotations

from pathlib import Path

import typer

from nfkit.cli._app import app, resolve_device, user_errors

generate_app = typer.Typer(
    name="generate",
    help="New NeRFs from the embedding space: latent GANs per class, interpolation, from photos or a text "
    "through clip2nerf. Outputs in <workspace>/generate.",
    no_args_is_help=True,
)
app.add_typer(generate_app, name="generate")


def _view_settings(views: int, resolution: int, samples: int):
    from nfkit.generate.render import ViewSettings

    return ViewSettings(views=views, resolution=resolution, n_samples=samples)


def _encoder_path(encoder: Path | None) -> Path:
    from nfkit.workspace import stage_dir

    enc = encoder or stage_dir("encoder")
    return enc / "best.h5" if enc.is_dir() else enc


def _check_clip(clip_maps: Path | None, clip_model: str | None, clip_pretrained: str | None, device: str):
    """The CLIP of ``--clip-check``: ``--clip-model`` when given, else the maps' CLIP."""
    from nfkit.errors import UserError
    from nfkit.workspace import stage_dir

    if clip_model:
        from nfkit.clip.backend import load_clip

        return load_clip(clip_model, clip_pretrained, device=device)
    from nfkit.clip.maps import clip_of_maps, load_maps

    path = clip_maps or stage_dir("clip") / "maps.h5"
    if not Path(path).is_file():
        raise UserError(f"--clip-check: no CLIP maps at {path} (run `nfkit map-clip`, or give --clip-maps or --clip-model)")
    return clip_of_maps(load_maps(path), device=device)


@generate_app.command("gan")
@user_errors
def gan_cmd(
    embeddings: list[Path] = typer.Argument(None, metavar="[EMBEDDINGS]...", help="Embedding shards or folders (default: <workspace>/embeddings).", show_default=False),
    class_name: list[str] = typer.Option(None, "--class", help="Train a GAN for this class only (repeatable; default: every class with train-split embeddings).", show_default=False),
    arch: list[str] = typer.Option(None, "--arch", help="Train on embeddings of this architecture only (repeatable; default: every architecture).", show_default=False),
    samples: int = typer.Option(32, "--samples", "-n", help="Generated embeddings written per class."),
    preset: str = typer.Option("cpu", "--preset", help="paper (the reference: 2000 epochs, lr 1e-4, batch 50), cpu (1000 epochs at lr 5e-4, under a minute per class) or tiny."),
    set_: list[str] = typer.Option(None, "--set", help="Override a GAN setting, key=value (repeatable): epochs, batch_size, critic_steps, lr, beta1, beta2, gp_weight, noise_dim, noise_std, generator_hidden, critic_hidden, seed.", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: <workspace>/generate).", show_default=False),
    encoder: Path = typer.Option(None, "--encoder", help="Encoder checkpoint whose decoder renders the samples (default: <workspace>/encoder/best.h5).", show_default=False),
    classifier: Path = typer.Option(None, "--classifier", help="Classifier for the accuracy column (default: <workspace>/classify/classifier-all.h5 when it exists).", show_default=False),
    render: int = typer.Option(4, "--render", help="Samples per class rendered through the decoder (PNG views + turntable GIF); 0 = none."),
    views: int = typer.Option(8, "--views", help="Turntable views per rendered sample."),
    resolution: int = typer.Option(64, "--resolution", help="Rendered image size in pixels."),
    render_samples: int = typer.Option(96, "--render-samples", help="Samples per ray when rendering."),
    distance: str = typer.Option("cosine", "--distance", help="Distance of coverage and MMD: cosine or l2."),
    to_nerf: str = typer.Option(None, "--to-nerf", help="Also fit the rendered samples as NeRFs of this architecture, from its shared init (written to OUT/nerfs/ARCH/generated.h5).", show_default=False),
    init: Path = typer.Option(None, "--init", help="Shared init of the --to-nerf architecture (default: <workspace>/nerfs/inits/ARCH.init.h5).", show_default=False),
    fit_preset: str = typer.Option("cpu", "--fit-preset", help="fit-nerfs preset of the --to-nerf fits (paper, cpu, tiny)."),
    force: bool = typer.Option(False, "--force", help="Retrain GANs even when the stored ones are up to date."),
    clip_check: int = typer.Option(0, "--clip-check", help="Do the renders read as their class? Decode N embeddings per class of each source (generated, training = ceiling, fitted noise = floor), render 3 turntable views at 64 px and classify them with CLIP against the class prompts; the table goes to quality.md / quality.json. 0 = off."),
    clip_maps: Path = typer.Option(None, "--clip-maps", help="--clip-check: the map-clip artifact whose CLIP classifies the renders (default: <workspace>/clip/maps.h5).", show_default=False),
    clip_model: str = typer.Option(None, "--clip-model", help="--clip-check: this CLIP instead of the maps' (an open_clip name, or nfkit-clip-small ...).", show_default=False),
    clip_pretrained: str = typer.Option(None, "--clip-pretrained", help="--clip-check: the --clip-model's tag or checkpoint file.", show_default=False),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Train a latent GAN (WGAN-GP, Achlioptas et al. as nf2vec trained it) per class on its
    train-split embeddings, write generated embeddings (an embedding shard, split 'generated'),
    measure them against the real test embeddings (classifier accuracy, coverage, MMD, Fréchet
    distance, each next to the training embeddings as ceiling and fitted Gaussian noise as
    floor), render samples through the decoder and optionally fit them as real NeRFs."""
    from nfkit import workspace
    from nfkit.config import parse_set_options
    from nfkit.errors import UserError
    from nfkit.eval.generation import DISTANCES
    from nfkit.fit.config import resolve_config as fit_config
    from nfkit.generate.gan import PRESETS
    from nfkit.generate.stage import run_gan
    from nfkit.io.artifacts import check_output_dir

    if distance not in DISTANCES:
        raise UserError(f"--distance {distance!r}: expected one of {', '.join(DISTANCES)}")
    dev = resolve_device(device)
    cfg = PRESETS.resolve(preset, parse_set_options(set_))
    out_dir = check_output_dir(workspace.default(out, "generate"))
    clf = classifier
    if clf is None:
        default_clf = workspace.stage_dir("classify") / "classifier-all.h5"
        clf = default_clf if default_clf.is_file() else None
    need_decoder = render > 0 or to_nerf is not None or clip_check > 0
    settings = _view_settings(views, resolution, render_samples) if render else None
    clip = _check_clip(clip_maps, clip_model, clip_pretrained, dev) if clip_check > 0 else None
    s = run_gan(
        embeddings or [workspace.default_input(None, "embeddings")[0]], out_dir, cfg, classes=class_name or None,
        arch=arch or None, n_samples=samples, classifier=clf, encoder=_encoder_path(encoder) if need_decoder else None,
        render=render, view_settings=settings, to_nerf=to_nerf, init=init, nerfs_dir=workspace.stage_dir("nerfs"),
        fit_config=fit_config(fit_preset) if to_nerf else None, distance=distance, force=force, device=dev, progress=progress,
        clip_check=clip_check, clip=clip,
    )
    from nfkit.eval.generation import quality_markdown

    typer.echo(quality_markdown(s.rows, distance).rstrip())
    if s.clip_md:
        typer.echo(s.clip_md.rstrip())
    for note in s.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"GANs: {len(s.trained)} trained, {len(s.reused)} reused -> {out_dir / 'gan'}; "
               f"{samples} samples per class -> {s.generated}")
    if s.views:
        typer.echo(f"{len(s.views)} rendered samples (PNG + GIF) -> {out_dir / 'views'}")
    if s.nerfs is not None:
        import math

        ok = [p for p in s.nerf_psnr if math.isfinite(p)]
        mean = f", held-out PSNR {sum(ok) / len(ok):.2f} dB" if ok else ""
        typer.echo(f"{len(s.nerf_psnr)} NeRFs of {to_nerf} -> {s.nerfs}{mean}")


@generate_app.command("interpolate")
@user_errors
def interpolate_cmd(
    a: str = typer.Argument(..., metavar="A", help="First NeRF: [ARCH:]CLASS/OBJECT_ID."),
    b: str = typer.Argument(..., metavar="B", help="Second NeRF: [ARCH:]CLASS/OBJECT_ID."),
    nerfs: list[Path] = typer.Option(None, "--nerfs", help="NeRF shards or folders to find A and B in (default: <workspace>/nerfs).", show_default=False),
    steps: int = typer.Option(7, "--steps", help="Values of γ from 0 to 1, both included."),
    encoder: Path = typer.Option(None, "--encoder", help="Encoder checkpoint (default: <workspace>/encoder/best.h5).", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="PNG to write (default: <workspace>/generate/interpolate/<A>--<B>.png).", show_default=False),
    embeddings_only: bool = typer.Option(False, "--embeddings-only", help="Draw only the embedding row (for NeRFs of different architectures or inits)."),
    resolution: int = typer.Option(64, "--resolution", help="Rendered image size in pixels."),
    render_samples: int = typer.Option(96, "--render-samples", help="Samples per ray when rendering."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Interpolate two NeRFs: (1 − γ)·e_A + γ·e_B decoded (row 1), next to the interpolation of
    their weights (row 2), which needs one architecture and one shared init."""
    from nfkit import workspace
    from nfkit.encoder.embed import load_encoder
    from nfkit.errors import UserError
    from nfkit.generate.interpolate import check_interpolable, find_record, interpolate_pair

    src = workspace.default_input(nerfs, "nerfs")
    rec_a, rec_b = find_record(src, a), find_record(src, b)
    if not embeddings_only:
        check_interpolable(rec_a, rec_b)
    enc_path = _encoder_path(encoder)
    if not enc_path.is_file():
        raise UserError(f"{enc_path}: no such encoder checkpoint (run `nfkit pretrain-encoder`, or give --encoder)")
    name = f"{a}--{b}".replace("/", "_").replace(":", "-") + ".png"
    target = out or workspace.stage_dir("generate") / "interpolate" / name
    result = interpolate_pair(load_encoder(enc_path), rec_a, rec_b, steps, _view_settings(1, resolution, render_samples),
                              weights=not embeddings_only, out=target, progress=progress)
    rows = "decoded embeddings" + ("" if embeddings_only else " (row 1) and interpolated weights (row 2)")
    typer.echo(f"{rows} at γ = {', '.join(f'{g:.2f}' for g in result.gammas)} -> {result.path}")


# ------------------------------------------------------------------ from-image / from-text
# the options both share (one factory each: every command needs its own OptionInfo)


def _opt_clip_maps():
    return typer.Option(None, "--clip-maps", help="nerf2clip / clip2nerf artifact (default: <workspace>/clip/maps.h5).", show_default=False)


def _opt_clip_model():
    return typer.Option(None, "--clip-model", help="CLIP of the query (default: the one the maps were trained with; another is refused).", show_default=False)


def _opt_clip_pretrained():
    return typer.Option(None, "--clip-pretrained", help="Its tag or checkpoint file (default: the maps').", show_default=False)


def _opt_encoder():
    return typer.Option(None, "--encoder", help="Encoder checkpoint whose decoder renders the embedding; it must be the encoder the maps were trained on (default: <workspace>/encoder/best.h5).", show_default=False)


def _opt_class():
    return typer.Option("query", "--class", help="Class name recorded for the generated row (its key is CLASS/OBJECT_ID).")


def _opt_render():
    return typer.Option(True, "--render/--no-render", help="Render the decoded embedding: views in a row (PNG) and a turntable (GIF).")


def _opt_views():
    return typer.Option(8, "--views", help="Turntable views (= GIF frames).")


def _opt_resolution():
    return typer.Option(64, "--resolution", help="Rendered image size in pixels.")


def _opt_render_samples():
    return typer.Option(96, "--render-samples", help="Samples per ray when rendering.")


def _opt_to_nerf():
    return typer.Option(None, "--to-nerf", help="Also fit the embedding as a NeRF of this architecture, from its shared init (written to OUT/nerfs/ARCH/generated.h5).", show_default=False)


def _opt_init():
    return typer.Option(None, "--init", help="Shared init of the --to-nerf architecture (default: <workspace>/nerfs/inits/ARCH.init.h5).", show_default=False)


def _opt_fit_preset():
    return typer.Option("cpu", "--fit-preset", help="fit-nerfs preset of the --to-nerf fit (paper, cpu, tiny).")


def _opt_device():
    return typer.Option("auto", "--device", help="auto, cpu or cuda[:N].")


def _opt_progress():
    return typer.Option(True, "--progress/--no-progress", help="Show progress bars.")


def _from_clip(photos, text, out, clip_maps, clip_model, clip_pretrained, encoder, class_name, render, views, resolution,
               render_samples, to_nerf, init, fit_preset, device, progress) -> None:
    from nfkit import workspace
    from nfkit.errors import UserError
    from nfkit.fit.config import resolve_config as fit_config
    from nfkit.generate.from_clip import default_out, run_from_clip
    from nfkit.io.artifacts import check_output_dir

    if text is not None and not text.strip():
        raise UserError("TEXT is empty: give what to generate, e.g. 'a 3d model of a red car'")
    dev = resolve_device(device)
    settings = _view_settings(views, resolution, render_samples)
    out_dir = check_output_dir(out if out is not None else default_out(photos, text))
    s = run_from_clip(
        clip_maps if clip_maps is not None else workspace.stage_dir("clip") / "maps.h5", _encoder_path(encoder), out_dir,
        photos=photos, text=text, class_name=class_name, clip_model=clip_model, clip_pretrained=clip_pretrained,
        view_settings=settings, render=render, to_nerf=to_nerf, init=init, nerfs_dir=workspace.stage_dir("nerfs"),
        fit_config=fit_config(fit_preset) if to_nerf else None, device=dev, progress=progress,
    )
    typer.echo(f"query {s.query.what}: CLIP -> clip2nerf -> a {s.embedding.shape[0]}-d NeRF embedding -> {s.generated}")
    if s.png is not None:
        typer.echo(f"{settings.views} decoder views -> {s.png}, turntable -> {s.gif}")
    if s.nerfs is not None:
        typer.echo(f"NeRF of {to_nerf} -> {s.nerfs}, held-out PSNR {s.nerf_psnr:.2f} dB")


@generate_app.command("from-image")
@user_errors
def from_image_cmd(
    photos: list[Path] = typer.Argument(..., metavar="PHOTO...", help="Photos (PNG or JPEG, any size, RGB/RGBA/greyscale/16-bit, EXIF orientation applied); several are one multi-view query (the mean of their clip2nerf embeddings).", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: <workspace>/generate/from-image/<stem of the first photo>).", show_default=False),
    clip_maps: Path = _opt_clip_maps(),
    clip_model: str = _opt_clip_model(),
    clip_pretrained: str = _opt_clip_pretrained(),
    encoder: Path = _opt_encoder(),
    class_name: str = _opt_class(),
    render: bool = _opt_render(),
    views: int = _opt_views(),
    resolution: int = _opt_resolution(),
    render_samples: int = _opt_render_samples(),
    to_nerf: str = _opt_to_nerf(),
    init: Path = _opt_init(),
    fit_preset: str = _opt_fit_preset(),
    device: str = _opt_device(),
    progress: bool = _opt_progress(),
) -> None:
    """A NeRF from photos: CLIP image embedding -> clip2nerf -> NeRF embedding -> the encoder's
    decoder. Writes the embedding (generated.h5, split 'generated'), the decoder's views (PNG) and
    turntable (GIF), and with --to-nerf a real NeRF of that architecture."""
    _from_clip(photos, None, out, clip_maps, clip_model, clip_pretrained, encoder, class_name, render, views, resolution,
               render_samples, to_nerf, init, fit_preset, device, progress)


@generate_app.command("from-text")
@user_errors
def from_text_cmd(
    text: str = typer.Argument(..., metavar="TEXT", help="What to generate, e.g. 'a 3d model of a red car'.", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default: <workspace>/generate/from-text/text-<slug of TEXT>).", show_default=False),
    clip_maps: Path = _opt_clip_maps(),
    clip_model: str = _opt_clip_model(),
    clip_pretrained: str = _opt_clip_pretrained(),
    encoder: Path = _opt_encoder(),
    class_name: str = _opt_class(),
    render: bool = _opt_render(),
    views: int = _opt_views(),
    resolution: int = _opt_resolution(),
    render_samples: int = _opt_render_samples(),
    to_nerf: str = _opt_to_nerf(),
    init: Path = _opt_init(),
    fit_preset: str = _opt_fit_preset(),
    device: str = _opt_device(),
    progress: bool = _opt_progress(),
) -> None:
    """A NeRF from a text: CLIP text embedding -> clip2nerf -> NeRF embedding -> the encoder's
    decoder. Writes the embedding (generated.h5, split 'generated'), the decoder's views (PNG) and
    turntable (GIF), and with --to-nerf a real NeRF of that architecture."""
    _from_clip(None, text, out, clip_maps, clip_model, clip_pretrained, encoder, class_name, render, views, resolution,
               render_samples, to_nerf, init, fit_preset, device, progress)
