"""Every registered architecture fits a tiny procedural scene from its shared init.

The scene is two 32x32 views of one object; PSNR is measured on those views (this checks
that fitting works for every parameter type; held-out quality is measured by the benchmark).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from nfkit.data.multiview import load_object, scan_dataset
from nfkit.data.synth import SynthConfig, generate_dataset
from nfkit.fit.config import PRESETS
from nfkit.fit.trainer import evaluate_params, fit_batch, scene_from_object
from nfkit.nerf.init import create_init
from nfkit.nerf.specs import REGISTRY

CONFIG = PRESETS["tiny"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit_archs") / "data"
    generate_dataset(root, SynthConfig(resolution=32, objects_per_class=1, views=8, classes=("cabinet",), seed=1))
    obj = load_object(scan_dataset(root)[0])
    obj = dataclasses.replace(obj, images=obj.images[:2], c2w=obj.c2w[:2])
    s = scene_from_object(obj, eval_every=0)
    return dataclasses.replace(s, eval_origins=s.train_origins, eval_dirs=s.train_dirs, eval_rgba=s.train_rgba)


@pytest.mark.parametrize("arch", list(REGISTRY))
def test_every_architecture_fits_a_tiny_scene(arch, scene):
    spec = REGISTRY[arch]
    init = create_init(spec, seed=0)
    before = evaluate_params(spec, [init.params], [scene], CONFIG)[0]
    result = fit_batch(spec, init.params, [scene], CONFIG, seed=0)[0]
    assert math.isfinite(result.psnr)
    assert result.psnr > before + 5.0, f"{arch}: {before:.2f} dB -> {result.psnr:.2f} dB"
    assert {k: v.shape for k, v in result.params.items()} == dict(spec.param_shapes())
    assert all(abs(result.params[k] - init.params[k]).max() > 1e-3 for k in init.params)


def _cuda() -> bool:
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")
@pytest.mark.parametrize("sampler", ["grid", "nerfacc"])
def test_fits_on_cuda(sampler, scene):
    from nfkit.render.samplers import nerfacc_cuda_available

    if sampler == "nerfacc" and not nerfacc_cuda_available():
        pytest.skip("nerfacc's CUDA extension does not load here")
    spec = REGISTRY["hash"]
    init = create_init(spec, seed=0)
    config = dataclasses.replace(CONFIG, sampler=sampler)
    cuda_scene = dataclasses.replace(
        scene, **{f: getattr(scene, f).cuda() for f in (
            "train_origins", "train_dirs", "train_rgba", "eval_origins", "eval_dirs", "eval_rgba")}
    )
    before = evaluate_params(spec, [init.params], [scene], CONFIG)[0]
    result = fit_batch(spec, init.params, [cuda_scene, cuda_scene], config, device="cuda", seed=0)
    assert all(r.psnr > before + 5.0 for r in result), [r.psnr for r in result]


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")
def test_tcnn_backend_fits(scene):
    from nfkit.nerf.tcnn_backend import tcnn_available

    if not tcnn_available():
        pytest.skip("tiny-cuda-nn is not installed")
    spec = REGISTRY["mlp"]
    init = create_init(spec, seed=0)
    cuda_scene = dataclasses.replace(
        scene, **{f: getattr(scene, f).cuda() for f in (
            "train_origins", "train_dirs", "train_rgba", "eval_origins", "eval_dirs", "eval_rgba")}
    )
    before = evaluate_params(spec, [init.params], [scene], CONFIG)[0]
    (result,) = fit_batch(spec, init.params, [cuda_scene], CONFIG, device="cuda", backend="tcnn", seed=0)
    assert result.psnr > before + 3.0
    assert {k: v.shape for k, v in result.params.items()} == dict(spec.param_shapes())
