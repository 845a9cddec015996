"""``nfkit pretrain-encoder [GRAPHS] [NERFS]``: train one encoder for NeRFs of every architecture."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from nfkit.cli._app import app, resolve_device, resolve_preset, user_errors
from nfkit.encoder.config import LOSSES, PRESETS, field_help

_KEYS_HELP = "; ".join(f"{k}: {v}" for k, v in field_help().items())


@app.command("pretrain-encoder")
@user_errors
def pretrain_encoder_cmd(
    graphs: Path = typer.Argument(None, help="Graph shards or a folder of them (default: <workspace>/graphs).", show_default=False),
    nerfs: Path = typer.Argument(None, help="The NeRF shards the graphs were built from, for the rendering loss (default: <workspace>/nerfs).", show_default=False),
    loss: str = typer.Option("r+c", "--loss", help=f"Training loss: {', '.join(LOSSES)} (r = rendering, c = SigLIP across architectures; c trains no decoder)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder: last.h5 (every epoch, resumable), best.h5 (best validation), targets.h5, train_log.json (default: <workspace>/encoder).", show_default=False),
    preset: str = typer.Option("auto", "--preset", help=f"Hyper-parameter preset: {', '.join(PRESETS)}; auto = paper on CUDA, cpu on the CPU."),
    epochs: int | None = typer.Option(None, "--epochs", help="Training epochs.", show_default=False),
    lr: float | None = typer.Option(None, "--lr", help="AdamW peak learning rate (one-cycle).", show_default=False),
    arch: list[str] = typer.Option(None, "--arch", help="Train only on graphs of this architecture (repeatable; default: every architecture present).", show_default=False),
    set_: list[str] = typer.Option(None, "--set", help=f"Override any config key (repeatable), key=value. Keys: {_KEYS_HELP}.", show_default=False),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.h5 (same settings)."),
    force: bool = typer.Option(False, "--force", help="Start over even if --out holds a run."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars with the loss and validation PSNR."),
    dist_backend: str = typer.Option(
        "auto", "--dist-backend",
        help="Under torchrun with WORLD_SIZE > 1 (data-parallel training): auto (nccl on CUDA, gloo on the CPU), gloo or nccl. "
        "Each step's batch is split over the ranks, gradients are averaged, rank 0 validates and writes.",
    ),
) -> None:
    """Train the GMN encoder (and the implicit decoder) on parameter graphs of every
    architecture, with the rendering loss against the frozen NeRFs and/or the SigLIP loss between
    the embeddings of one object in two architectures (seed 000). Checkpoints: data_specs/encoder-v1.md."""
    import json

    from nfkit import workspace
    from nfkit.distributed import init_distributed
    from nfkit.encoder.config import resolve_config
    from nfkit.encoder.train import pretrain_encoder
    from nfkit.fit.config import parse_set_options
    from nfkit.fit.malloc import tune_malloc
    from nfkit.io.artifacts import atomic_path
    from nfkit.io.lock import output_folder

    tune_malloc()
    dev = resolve_device(device)
    name = resolve_preset(preset, dev)
    overrides: dict[str, object] = parse_set_options(set_)
    overrides["loss"] = loss.strip().lower()
    overrides.update({k: v for k, v in {"epochs": epochs, "lr": lr}.items() if v is not None})
    config = resolve_config(name, overrides)
    graphs = workspace.default(graphs, "graphs")
    nerfs_path = workspace.default(nerfs, "nerfs")
    out = workspace.default(out, "encoder")
    dist = init_distributed(dist_backend, dev)
    try:
        with output_folder(out, "--out"):  # held until train_log.json is written too
            summary = pretrain_encoder(
                graphs, nerfs_path if config.uses_decoder else None, out, config, device=dev,
                resume=resume, force=force, archs=arch or None, progress=progress, dist=dist,
            )
            if dist.main:  # rank 0 writes and reports
                log_path = out / "train_log.json"
                entry = {"preset": name, "config": config.to_dict(), "history": summary.history}
                refit = summary.refit
                if refit is None and log_path.is_file():  # fitted by an earlier call of this run
                    try:
                        refit = json.loads(log_path.read_text()).get("render_decoder")
                    except (OSError, ValueError, AttributeError):
                        refit = None
                if refit is not None:
                    entry["render_decoder"] = refit
                with atomic_path(log_path) as tmp:
                    tmp.write_text(json.dumps(entry, indent=1))
    finally:
        dist.close()
    if not dist.main:
        return
    ranks = f", data-parallel over {dist.world} ranks ({dist.backend})" if dist.enabled else ""
    typer.echo(
        f"preset {name}, loss {config.loss}{ranks}: {summary.n_train_graphs} training graphs of "
        f"{summary.n_train_objects} objects ({', '.join(summary.archs)}), {summary.epochs_run} epoch(s) in {summary.seconds:.0f} s"
    )
    if summary.history:
        last = summary.history[-1]
        parts = [f"last epoch loss {last['loss']:.4f}, {last['s_per_step']:.2f} s/step (loading {100 * last['load_share']:.1f} %)"]
        if "val_psnr" in last:
            parts.append(f"val PSNR {last['val_psnr']:.2f} dB (another object's embedding: {last['val_psnr_floor']:.2f} dB)")
        if "val_siglip" in last:
            parts.append(f"val SigLIP {last['val_siglip']:.3f}")
        typer.echo("; ".join(parts))
    if summary.refit is not None:
        from nfkit.encoder.refit import summary_line

        typer.echo(summary_line(summary.refit))
    best = f"{summary.best_metric:.3f}" if math.isfinite(summary.best_metric) else "n/a"
    typer.echo(f"best epoch {summary.best_epoch} ({best}) -> {out / 'best.h5'}")
