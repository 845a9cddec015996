"""Shared fixtures of the fitting tests."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: OpenMP threads only add waiting on a busy machine
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def car_scene(tmp_path_factory):
    """One procedural car at 32×32, 12 views, every 4th held out."""
    from nfkit.data.multiview import load_object, scan_dataset
    from nfkit.data.synth import SynthConfig, generate_dataset
    from nfkit.fit.trainer import scene_from_object

    root = tmp_path_factory.mktemp("car") / "data"
    generate_dataset(root, SynthConfig(resolution=32, objects_per_class=1, views=12, classes=("car",), seed=5))
    return scene_from_object(load_object(scan_dataset(root)[0]), eval_every=4)
