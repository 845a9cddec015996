"""``nfkit embed [GRAPHS] --arch A``: embeddings of NeRFs of any architecture."""

from __future__ import annotations

from pathlib import Path

import typer

from nfkit.cli._app import app, resolve_device, user_errors


@app.command("embed")
@user_errors
def embed_cmd(
    graphs: list[Path] = typer.Argument(None, help="Graph shards or folders (default: <workspace>/graphs).", show_default=False),
    arch: list[str] = typer.Option(None, "--arch", help="Embed only graphs of this architecture (repeatable; any architecture, also ones the encoder never saw).", show_default=False),
    encoder: Path = typer.Option(None, "--encoder", help="Encoder checkpoint (default: <workspace>/encoder/best.h5).", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder: one embedding shard per graph shard, same relative name (default: <workspace>/embeddings).", show_default=False),
    allow_foreign_init: bool = typer.Option(
        False, "--allow-foreign-init",
        help="Embed NeRFs of a trained architecture that were fitted from another init than the encoder's training NeRFs. Their weights live in another weight space: expect embeddings that classify and retrieve near chance.",
    ),
    chunk: int = typer.Option(8, "--chunk", help="Graphs embedded at once (memory: about chunk x edges x hidden x 4 bytes per tensor)."),
    shard_index: int | None = typer.Option(None, "--shard-index", help="Embed graph shards i with i % N == I (default: $RANK or 0).", show_default=False),
    num_shards: int | None = typer.Option(None, "--num-shards", help="N of --shard-index (default: $WORLD_SIZE or 1).", show_default=False),
    force: bool = typer.Option(False, "--force", help="Recompute shards that are up to date."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Embed parameter graphs with a frozen encoder. A shard whose graphs and encoder are
    unchanged is skipped; embedding another architecture later adds shards. Layout of the
    output: data_specs/embedding-shard-v1.md."""
    from nfkit import workspace
    from nfkit.encoder.embed import embed_graphs
    from nfkit.errors import UserError
    from nfkit.io.shards import shard_from_env

    if chunk < 1:
        raise UserError(f"--chunk must be >= 1, got {chunk}")
    dev = resolve_device(device)
    roots = graphs or [workspace.stage_dir("graphs")]
    enc = encoder or workspace.stage_dir("encoder")
    if enc.is_dir():
        enc = enc / "best.h5"
    out = workspace.default(out, "embeddings")
    index, count = shard_from_env(shard_index, num_shards)
    s = embed_graphs(
        roots, enc, out, archs=arch or None, allow_foreign_init=allow_foreign_init, force=force,
        device=dev, chunk=chunk, shard_index=index, num_shards=count, progress=progress,
    )
    label = f"shard {index + 1}/{count}: " if count > 1 else ""
    for msg in s.failed:
        typer.echo(f"error: {label}{msg}", err=True)
    per = ", ".join(f"{a} {n}" for a, n in sorted(s.per_arch.items())) or "none"
    rate = f", {s.n_embedded / s.seconds:.1f} NeRFs/s" if s.n_embedded and s.seconds > 0 else ""
    typer.echo(
        f"{label}embedded {s.n_embedded} NeRFs ({per}) into {len(s.written)} shard(s) -> {out}; "
        f"{len(s.skipped)} up to date, {len(s.failed)} failed; {s.seconds:.1f} s{rate}"
    )
    if s.failed:
        raise typer.Exit(code=1)
