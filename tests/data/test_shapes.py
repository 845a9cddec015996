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


# Per class: part groups only that class's builder makes, and the proportions of its bounding
# box (x = length, y = height, z = depth, each over the longest side) a real object of the
# class has. A builder wired to the wrong class (an airplane built by the car builder) fails both.
SIGNATURES = {
    "airplane": ({"wing", "tail"}, lambda x, y, z: y < 0.4 and z > 0.8),  # flat, wide wingspan
    "bench": ({"seat", "leg"}, lambda x, y, z: x == 1 and z < 0.35),  # long and shallow
    "cabinet": ({"door", "plinth"}, lambda x, y, z: y == 1 and z < 0.6),
    "car": ({"wheel", "hub"}, lambda x, y, z: x == 1 and y < 0.55 and z < 0.6),
    "chair": ({"seat", "back", "leg"}, lambda x, y, z: y == 1 and x < 0.6),
    "display": ({"screen", "stand"}, lambda x, y, z: x == 1 and y > 0.75 and z < 0.5),
    "lamp": ({"shade", "stem"}, lambda x, y, z: y > 0.55),
    "speaker": ({"cone", "ring"}, lambda x, y, z: y == 1 and x < 0.6),
    "rifle": ({"barrel", "stock"}, lambda x, y, z: x == 1 and y < 0.3 and z < 0.06),  # long and thin
    "sofa": ({"cushion", "arm"}, lambda x, y, z: x == 1 and y < 0.6),
    "table": ({"top", "leg"}, lambda x, y, z: x == 1 and y < 0.8),
    "phone": ({"screen", "camera"}, lambda x, y, z: y == 1 and z < 0.12),  # a thin slab
    "watercraft": ({"hull"}, lambda x, y, z: x == 1 and z < 0.35),
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_each_class_has_its_own_shape_signature(name):
    groups, proportions = SIGNATURES[name]
    for index in range(4):
        parts = make_object(NAME_TO_SYNSET[name], index, seed=0)
        lo, hi = object_bounds(parts)
        x, y, z = ((hi - lo) / (hi - lo).max()).round(6)
        found = {p.group for p in parts}
        assert groups <= found, f"{name} #{index}: parts {sorted(found)} lack {sorted(groups - found)}"
        assert proportions(x, y, z), f"{name} #{index}: box proportions {x:.2f} {y:.2f} {z:.2f}"


def test_class_signatures_tell_the_classes_apart():
    """Each class's set of part groups is its own (no two classes build the same kinds of parts)."""
    group_sets = {}
    for name in SIGNATURES:
        group_sets[name] = frozenset(p.group for i in range(4) for p in make_object(NAME_TO_SYNSET[name], i, seed=0))
    assert len(set(group_sets.values())) == len(group_sets)
