"""Interpolation: endpoints equal the inputs in both spaces; other inits are refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nfkit.cli import app
from nfkit.encoder.embed import embed_records, load_encoder
from nfkit.errors import IncompatibleError
from nfkit.generate.interpolate import (
    find_record,
    gammas,
    interpolate_pair,
    interpolate_params,
    lerp,
)
from nfkit.generate.render import ViewSettings, embedding_views, seeded
from nfkit.render.views import render_views
from tests.encoder.conftest import make_nerfs

SETTINGS = ViewSettings(views=1, resolution=8, n_samples=8, grid_res=8)


def test_lerp_endpoints_are_exact():
    a, b = np.random.default_rng(0).normal(size=(2, 7)).astype(np.float32)
    np.testing.assert_array_equal(lerp(a, b, 0.0), a)
    np.testing.assert_array_equal(lerp(a, b, 1.0), b)
    np.testing.assert_allclose(lerp(a, b, 0.25), 0.75 * a + 0.25 * b, rtol=1e-6)
    assert gammas(3) == [0.0, 0.5, 1.0]


def test_endpoints_equal_the_inputs_in_both_spaces(gen_workspace):
    enc = load_encoder(gen_workspace / "encoder" / "best.h5")
    a = find_record(gen_workspace / "nerfs", "tri-16w:chair/ch0")
    b = find_record(gen_workspace / "nerfs", "tri-16w:lamp/la2")
    res = interpolate_pair(enc, a, b, 3, SETTINGS)
    es = embed_records(enc, [a, b])
    np.testing.assert_array_equal(res.embeddings[0], es.embedding[0])
    np.testing.assert_array_equal(res.embeddings[-1], es.embedding[1])
    assert not np.array_equal(res.embeddings[1], res.embeddings[0])
    for k in a.params:
        np.testing.assert_array_equal(interpolate_params(a, b, 0.0)[k], a.params[k])
        np.testing.assert_array_equal(interpolate_params(a, b, 1.0)[k], b.params[k])
    cams = SETTINGS.cameras()
    np.testing.assert_allclose(res.decoded[0], embedding_views(enc.model.decoder, es.embedding[0], SETTINGS, cams), atol=1e-6)
    with seeded():
        nerf_b = render_views(b.arch, b.params, cams, 8, 8, SETTINGS.focal, 8, 8)
    np.testing.assert_allclose(res.weights[-1], np.clip(nerf_b, 0, 1), atol=1e-6)
    assert res.decoded.shape == (3, 1, 8, 8, 3) and res.weights.shape == (3, 1, 8, 8, 3)


def test_other_inits_are_refused_other_architectures_only_in_embedding_space(gen_workspace, tmp_path):
    other = make_nerfs(tmp_path / "other", archs=("mlp-32h",), init_seed=1)
    a = find_record(gen_workspace / "nerfs", "mlp-32h:chair/ch0")
    b = find_record(other, "mlp-32h:lamp/la0")
    with pytest.raises(IncompatibleError, match="different inits"):
        interpolate_params(a, b, 0.5)
    enc = load_encoder(gen_workspace / "encoder" / "best.h5")
    with pytest.raises(IncompatibleError, match="init"):  # not even its embedding: embed refuses foreign inits
        interpolate_pair(enc, a, b, 2, SETTINGS, weights=False)
    base = ["--workspace", str(gen_workspace), "generate", "interpolate", "mlp-32h:chair/ch0", "tri-16w:lamp/la1",
            "--steps", "2", "--resolution", "8", "--render-samples", "8", "--out", str(tmp_path / "e.png"), "--no-progress"]
    r = CliRunner().invoke(app, base)
    assert r.exit_code == 1 and "different architectures" in r.output
    r = CliRunner().invoke(app, [*base, "--embeddings-only"])
    assert r.exit_code == 0, r.output
    w, h = Image.open(tmp_path / "e.png").size
    assert (w, h) == (2 * 8 + 2, 8)
