"""``nfkit fit-nerfs DATASET [--out NERFS]``: one NeRF per object and architecture."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from nfkit.cli._app import app, fail, resolve_device, resolve_preset, user_errors
from nfkit.fit.config import PRESETS, field_help
from nfkit.fit.malloc import tune_malloc

_KEYS_HELP = "; ".join(f"{k}: {v}" for k, v in field_help().items())


@app.command("fit-nerfs")
@user_errors
def fit_nerfs(
    dataset: Path = typer.Argument(..., help="Multi-view dataset root (<root>/<class>/<object_id>/transforms_train.json)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder: OUT/<arch>/shard-*.h5, OUT/fit_config.json, OUT/inits/. Default: <workspace>/nerfs.",
        show_default=False,
    ),
    arch: list[str] = typer.Option(
        None, "--arch", help="Architecture to fit (repeatable): a registered name or a JSON spec file. Default: mlp, tri, hash.",
        show_default=False,
    ),
    init: Path | None = typer.Option(
        None, "--init",
        help="Shared init: an init file (must match every --arch) or a folder of inits (missing ones are created there). Default: OUT/inits/.",
    ),
    init_seed: int = typer.Option(0, "--init-seed", help="Seed of inits created on first use."),
    preset: str = typer.Option(
        "auto", "--preset",
        help=f"Hyper-parameter preset: {', '.join(PRESETS)}; auto = paper on CUDA, cpu on the CPU.",
    ),
    steps: int | None = typer.Option(None, "--steps", help="Optimisation steps per NeRF.", show_default=False),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate.", show_default=False),
    rays: int | None = typer.Option(None, "--rays", help="Rays per NeRF per step (start value when target_samples > 0).", show_default=False),
    samples: int | None = typer.Option(None, "--samples", help="Samples per ray across the object box.", show_default=False),
    batch_nerfs: int | None = typer.Option(None, "--batch-nerfs", help="NeRFs fitted at once (one batched model, one shard).", show_default=False),
    resolution: int | None = typer.Option(None, "--resolution", help="Image resolution for fitting and evaluation (0 = native).", show_default=False),
    grid_res: int | None = typer.Option(None, "--grid-res", help="Occupancy grid resolution per axis.", show_default=False),
    eval_every: int | None = typer.Option(None, "--eval-every", help="Held-out PSNR: on the object's transforms_test.json views when it has one (NeRF-synthetic), else on training views 0, N, 2N, ... held back from training (0 = no evaluation).", show_default=False),
    max_views: int | None = typer.Option(None, "--max-views", help="Use at most this many views per object (0 = all).", show_default=False),
    seed: int | None = typer.Option(None, "--seed", help="Seed of ray sampling and backgrounds.", show_default=False),
    set_: list[str] = typer.Option(
        None, "--set", help=f"Override any config key (repeatable), key=value. Keys: {_KEYS_HELP}.", show_default=False,
    ),
    shard_index: int | None = typer.Option(None, "--shard-index", help="Fit batches j (of --batch-nerfs consecutive objects) with j % N == I, so that shards fit the same batches as one process (default: $RANK or 0).", show_default=False),
    num_shards: int | None = typer.Option(None, "--num-shards", help="N of --shard-index (default: $WORLD_SIZE or 1).", show_default=False),
    classes: str = typer.Option("all", "--classes", help="Comma-separated classes to fit, or 'all'."),
    split: str | None = typer.Option(None, "--split", help="Fit only this split (train, val, test)."),
    limit: int = typer.Option(0, "--limit", help="Fit only the first N objects (0 = all)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    backend: str = typer.Option("torch", "--backend", help="torch, or tcnn (tiny-cuda-nn; CUDA only, falls back to torch with a warning)."),
    workers: int = typer.Option(
        0, "--workers",
        help="Processes fitting batches side by side on the CPU, the cores shared among them: 0 = auto (one per core "
        "while each gets at least two batches, else 1; 1 on CUDA), 1 = this process alone. A batch draws the same random numbers in whichever process fits it.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar over NeRFs."),
) -> None:
    """Fit one NeRF per object and architecture, every NeRF of an architecture from that
    architecture's shared init. Shards are written as batches finish; a rerun skips the NeRFs
    already fitted. Held-out PSNR is measured on a black background."""
    from nfkit.fit.config import parse_set_options, resolve_config
    from nfkit.fit.driver import fit_dataset, shard_from_env
    from nfkit.nerf.specs import TRAINING_ARCHS, get_arch
    from nfkit.nerf.store import PSNR_ON
    from nfkit.workspace import default

    out = default(out, "nerfs")

    # Large tensors are allocated and freed every step; under glibc's defaults they go back to
    # the kernel and every step pays the page faults again (SPEC §9). mallopt acts on the
    # allocations that follow, so calling it here (not at import) spares the other commands.
    # nfkit/bench/fit.py measures it: about -38 % time per step for 4 batched NeRFs.
    tune_malloc()
    dev = resolve_device(device)
    name = resolve_preset(preset, dev)
    overrides: dict[str, object] = parse_set_options(set_)
    explicit = {
        "steps": steps, "lr": lr, "rays": rays, "samples": samples, "batch_nerfs": batch_nerfs,
        "resolution": resolution, "grid_res": grid_res, "eval_every": eval_every,
        "max_views": max_views, "seed": seed,
    }
    overrides.update({k: v for k, v in explicit.items() if v is not None})
    config = resolve_config(name, overrides)
    specs = [get_arch(a) for a in (arch or list(TRAINING_ARCHS))]
    index, count = shard_from_env(shard_index, num_shards)
    chosen = None if classes.strip().lower() == "all" else [c for c in classes.split(",") if c.strip()]
    summary = fit_dataset(
        dataset, out, specs, config, init=init, init_seed=init_seed, shard_index=index,
        num_shards=count, device=dev, backend=backend, classes=chosen, split=split,
        limit=limit, progress=progress, workers=workers,
    )
    label = f"shard {index + 1}/{count}: " if count > 1 else ""
    typer.echo(f"{label}preset {name} on {summary.device} ({summary.backend})" + ("" if label else "; shard 1/1"))
    for a in summary.archs.values():
        psnr = f"{a.mean_psnr:.2f} dB" if math.isfinite(a.mean_psnr) else "n/a"
        rate = f"{a.nerfs_per_min:.2f} NeRFs/min" if a.fitted else "-"
        on = ", ".join(f"{n} on {PSNR_ON.get(k, k)}" for k, n in sorted(a.psnr_on.items()) if k)
        typer.echo(
            f"{label}{a.arch}: fitted {a.fitted}, skipped {a.skipped}, mean held-out PSNR {psnr}"
            + (f" ({on})" if on else "") + f", {rate}"
        )
    typer.echo(f"{label}wrote {len(summary.shards)} shard(s) to {summary.out} in {summary.seconds:.1f} s")
    for key in summary.diverged:
        typer.echo(f"error: {label}{key}: the fit diverged (NaN or inf weights); not saved", err=True)
    if summary.diverged:
        raise fail(
            f"{len(summary.diverged)} fit(s) diverged (listed above; the others are saved): "
            "lower --lr, or check the data"
        )
