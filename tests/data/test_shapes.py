"""Class builders, normalisation, augmentation, and the synset <-> name mapping."""

import numpy as np
import pytest

from nfkit.data.classes import (
    CLASS_NAMES,
    NAME_TO_SYNSET,
    SYNSET_TO_NAME,
    class_name,
    resolve_class,
    resolve_classes,
)
from nfkit.data.primitives import deform, interior_point, normalize, object_bounds, recolor
from nfkit.data.shapes import BUILDERS
from nfkit.data.synth import make_object

from .test_raycast import inside


def test_class_mapping_is_the_shapenet_one():
    assert len(SYNSET_TO_NAME) == 13 and len(NAME_TO_SYNSET) == 13
    assert SYNSET_TO_NAME["03001627"] == "chair" and NAME_TO_SYNSET["airplane"] == "02691156"
    assert resolve_class("Chair") == resolve_class("03001627") == "03001627"
    assert class_name("04379243") == "table" and class_name("my_class") == "my_class"
    assert resolve_classes("lamp, 02691156") == ["02691156", "03636649"]
    assert resolve_classes(None) == list(SYNSET_TO_NAME)
    with pytest.raises(ValueError, match="valid classes: airplane, bench"):
        resolve_class("spaceship")


@pytest.mark.parametrize("synset", sorted(BUILDERS))
def test_every_class_builds_normalised_objects_inside_the_box(synset):
    assert set(BUILDERS) == set(SYNSET_TO_NAME)
    for index in range(3):
        for aug in (0, 1):
            parts = make_object(synset, index, seed=0, augmentation=aug, max_extent=1.25)
            lo, hi = object_bounds(parts)
            assert np.allclose((lo + hi) / 2, 0, atol=1e-9)
            assert (hi - lo).max() == pytest.approx(1.25)
            assert np.all(lo >= -0.7) and np.all(hi <= 0.7)
            assert len(parts) >= 3  # assembled from several primitives
            for p in parts:
                assert np.all((p.color >= 0) & (p.color <= 1))
                assert abs(np.linalg.det(p.matrix)) > 1e-9
            point = interior_point(parts)
            assert np.all(point >= lo) and np.all(point <= hi)
            assert any(inside(p, point[None], tol=-1e-3)[0] for p in parts)  # strictly inside


def test_objects_are_upright_and_deterministic():
    chair = make_object(NAME_TO_SYNSET["chair"], 0, seed=4)
    again = make_object(NAME_TO_SYNSET["chair"], 0, seed=4)
    other = make_object(NAME_TO_SYNSET["chair"], 1, seed=4)
    assert all(
        np.array_equal(a.matrix, b.matrix) and np.array_equal(a.color, b.color)
        for a, b in zip(chair, again, strict=True)
    )
    assert not np.allclose(object_bounds(chair)[1], object_bounds(other)[1])
    # y-up: the seat (first part) is above the legs, the backrest above the seat
    seat, legs, back = (
        chair[0],
        [p for p in chair if p.group == "leg"],
        [p for p in chair if p.group == "back"],
    )
    assert all(leg.offset[1] < seat.offset[1] for leg in legs)
    assert back[0].offset[1] > seat.offset[1]


def test_augmentation_deforms_and_recolours_but_keeps_the_structure():
    synset = NAME_TO_SYNSET["table"]
    base = make_object(synset, 2, seed=0)
    aug = make_object(synset, 2, seed=0, augmentation=1)
    assert [p.kind for p in base] == [p.kind for p in aug]
    assert [p.group for p in base] == [p.group for p in aug]
    assert not np.allclose(base[0].matrix, aug[0].matrix)  # deformed
    assert not np.allclose(base[0].color, aug[0].color)  # recoloured
    # parts of one group share the new colour
    legs = [p.color for p in aug if p.group == "leg"]
    assert all(np.array_equal(c, legs[0]) for c in legs)
    # the deformation is smooth and small: part centres move by a fraction of the size
    moved = np.array([p.offset for p in normalize(base, 1.0)]) - np.array(
        [p.offset for p in normalize(aug, 1.0)]
    )
    assert np.abs(moved).max() < 0.35


def test_deform_and_recolor_are_reproducible():
    parts = BUILDERS[NAME_TO_SYNSET["car"]](np.random.default_rng(0))
    a = recolor(deform(parts, np.random.default_rng(9)), np.random.default_rng(9))
    b = recolor(deform(parts, np.random.default_rng(9)), np.random.default_rng(9))
    assert all(
        np.array_equal(x.matrix, y.matrix) and np.array_equal(x.color, y.color)
        for x, y in zip(a, b, strict=True)
    )
    assert tuple(CLASS_NAMES)[0] == "airplane"
