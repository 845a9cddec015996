"""The workspace: one folder whose sub-folders are the stages' default inputs and outputs.

``nfkit`` runs in a workspace (the current folder, or ``--workspace DIR`` / ``NFKIT_WORKSPACE``)
so that the stages chain without paths: each stage's default output is the next stage's default
input, and every path can still be given explicitly. Layout (``data_specs/workspace.md``)::

    <workspace>/
        nerfs/        fit-nerfs, import-nerfs   NeRF shards (+ nerfs/inits/: shared inits)
        graphs/       build-graphs              graph shards
        encoder/      pretrain-encoder          encoder checkpoints (best.h5, last.h5)
        embeddings/   embed                     embedding shards
        clip/         map-clip                  CLIP caches and mapping networks
        classify/     classify                  classifier + metrics
        retrieve/     retrieve                  rankings, metrics, pictures
        generate/     generate                  generated embeddings, NeRFs and views
        views/        render                    PNG views
"""

from __future__ import annotations

import os
from pathlib import Path

#: stage folder name -> what it holds (the order is the pipeline's)
LAYOUT: dict[str, str] = {
    "nerfs": "NeRF shards and their shared inits (fit-nerfs, import-nerfs)",
    "graphs": "parameter-graph shards (build-graphs)",
    "encoder": "encoder + decoder checkpoints (pretrain-encoder)",
    "embeddings": "embedding shards (embed)",
    "clip": "CLIP embedding caches and nerf2clip / clip2nerf maps (map-clip)",
    "classify": "classifiers and their metrics (classify)",
    "retrieve": "retrieval rankings, metrics and pictures (retrieve)",
    "generate": "generated embeddings, NeRFs and views (generate)",
    "views": "rendered PNG views (render)",
}

ENV_VAR = "NFKIT_WORKSPACE"

_current: Path | None = None


def set_workspace(path: str | os.PathLike | None) -> None:
    """Set the workspace for this process (the CLI's ``--workspace``); None = default."""
    global _current
    _current = None if path is None else Path(path)


def workspace() -> Path:
    """The workspace folder: ``--workspace``, else ``$NFKIT_WORKSPACE``, else the current folder."""
    if _current is not None:
        return _current
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path(".")


def stage_dir(name: str) -> Path:
    """The default folder of a stage in the workspace (not created here)."""
    if name not in LAYOUT:
        raise KeyError(f"unknown workspace folder {name!r}; expected one of {', '.join(LAYOUT)}")
    return workspace() / name


def default(path: str | os.PathLike | None, name: str) -> Path:
    """``path`` when given, else the workspace's folder ``name``."""
    return Path(path) if path is not None else stage_dir(name)


def default_input(paths: list | None, name: str) -> list[Path]:
    """``paths`` when given, else ``[<workspace>/name]``, which must exist (FileNotFoundError
    with a one-line message naming the folder otherwise)."""
    if paths:
        return [Path(p) for p in paths]
    folder = stage_dir(name)
    label = "NeRF" if name == "nerfs" else name
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no {label} folder in the workspace {workspace().resolve()} "
            "(give the input paths, or --workspace DIR)"
        )
    return [folder]


__all__ = ["LAYOUT", "ENV_VAR", "set_workspace", "workspace", "stage_dir", "default", "default_input"]
