"""``nfkit status``: the workspace's artifacts, their items, and which are stale."""

from __future__ import annotations

from pathlib import Path

import typer

from nfkit.cli._app import app, user_errors

#: modules that define artifact kinds (each registers its kinds and readers on import); status
#: imports them all so it can read every kind. Add a new kind's module here.
KIND_MODULES = (
    "nfkit.nerf.init",
    "nfkit.nerf.store",
    "nfkit.graphs.shard_reader",
    "nfkit.embed.store",
    "nfkit.encoder.checkpoint",
    "nfkit.encoder.targets",
    "nfkit.tasks.classifier",
    "nfkit.clip.cache",
    "nfkit.clip.maps",
    "nfkit.generate.gan",
)


def register_all_kinds() -> None:
    """Import every module of :data:`KIND_MODULES` (a missing optional one is skipped)."""
    import importlib

    for name in KIND_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise


@app.command("status")
@user_errors
def status(
    workspace_dir: Path | None = typer.Argument(
        None, metavar="[WORKSPACE]", help="Workspace folder (default: --workspace, $NFKIT_WORKSPACE or the current folder).",
        show_default=False,
    ),
    files: bool = typer.Option(False, "--files", help="List every artifact, not only a line per kind."),
    check: bool = typer.Option(
        True, "--check/--no-check", help="Compare each artifact's recorded input fingerprints with its inputs as they are now."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """List the workspace's artifacts per stage folder (nerfs/, graphs/, embeddings/, ...), how many
    items each holds, and which are stale: an input changed since the artifact was written
    (content fingerprints, not timestamps). Exit code 1 when something is stale or unreadable."""
    from nfkit.io.status import (
        MISSING_INPUT,
        STALE,
        UNREADABLE,
        format_status,
        status_json,
        workspace_status,
    )
    from nfkit.workspace import workspace

    register_all_kinds()
    root = workspace_dir if workspace_dir is not None else workspace()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such workspace folder")
    folders = workspace_status(root, check=check)
    typer.echo(status_json(folders) if as_json else format_status(root, folders, files=files))
    if any(a.state in (STALE, MISSING_INPUT, UNREADABLE) for f in folders for a in f.artifacts):
        raise typer.Exit(code=1)
