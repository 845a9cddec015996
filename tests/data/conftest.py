"""Fixtures for the data tests: a small generated dataset (built once through the CLI) and a
hand-written NeRF-synthetic style scene."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.data.cameras import look_at, orbit_eyes

SYNTH_ARGS = [
    "--objects-per-class",
    "2",
    "--views",
    "8",
    "--resolution",
    "64",
    "--seed",
    "3",
    "--no-progress",
]


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """``nfkit synth data/ --objects-per-class 2 --views 8 --resolution 64`` (all 13 classes)."""
    root = tmp_path_factory.mktemp("synth") / "data"
    result = CliRunner().invoke(app, ["synth", str(root), *SYNTH_ARGS])
    assert result.exit_code == 0, result.output
    return root


def write_scene(
    folder: Path, n_views: int = 4, size: int = 16, extension: bool = False, seed: int = 0
) -> dict:
    """A NeRF-synthetic style scene: transforms_{train,val,test}.json with ``./<split>/r_<i>``
    file paths and random RGBA images. Returns the train transforms dict."""
    rng = np.random.default_rng(seed)
    angle = 0.6911112070083618  # the NeRF-synthetic lego scene's camera_angle_x
    train = None
    for split in ("train", "val", "test"):
        (folder / split).mkdir(parents=True)
        eyes = orbit_eyes(
            np.linspace(0, 2 * math.pi, n_views, endpoint=False),
            np.full(n_views, 0.5),
            np.full(n_views, 4.0),
        )
        poses = look_at(eyes)
        frames = []
        for i in range(n_views):
            image = rng.integers(0, 256, size=(size, size, 4), dtype=np.uint8)
            Image.fromarray(image).save(folder / split / f"r_{i}.png")
            name = f"./{split}/r_{i}" + (".png" if extension else "")
            frames.append(
                {"file_path": name, "rotation": 0.0, "transform_matrix": poses[i].tolist()}
            )
        meta = {"camera_angle_x": angle, "frames": frames}
        (folder / f"transforms_{split}.json").write_text(json.dumps(meta))
        if split == "train":
            train = meta
    return train
