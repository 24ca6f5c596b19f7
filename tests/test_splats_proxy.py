"""Acoustic room proxy: plane fitting on splats, colour-guessed materials, drawn rooms.

Oracles: the synthetic room's known geometry (6 x 5 x 3 m), trimesh for mesh
closure, orientation and volume, analytic polygon areas, and pyroomacoustics'
material tables for the names.
"""

from __future__ import annotations

import numpy as np
import pyroomacoustics as pra
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from soundstage.splats import SplatError
from soundstage.splats.proxy import (
    FACES,
    estimate_room,
    fit_planes,
    guess_material,
    room_from_corners,
    triangulate_polygon,
)
from soundstage.splats.synthetic import LABELS, make_synthetic_room

PRA_NAMES = {name for cat in pra.materials_data["absorption"].values() for name in cat}


def mesh_of(room):
    return trimesh.Trimesh(np.array(room["vertices"]), np.array(room["faces"]), process=False)


@pytest.fixture(scope="module")
def cluttered():
    return make_synthetic_room((6.0, 5.0, 3.0), furniture=True, outlier_fraction=0.05, seed=0)


def test_synthetic_room_has_what_it_claims(cluttered):
    counts = np.bincount(cluttered.labels, minlength=8)
    assert counts[LABELS["outlier"]] / counts.sum() == pytest.approx(0.05, abs=0.002)
    assert counts[LABELS["furniture"]] > 0.08 * counts.sum()
    furn = cluttered.splats.positions[cluttered.labels == LABELS["furniture"]]
    assert furn[:, 2].max() < 1.25  # clutter near the floor
    again = make_synthetic_room((6.0, 5.0, 3.0), seed=0)
    np.testing.assert_array_equal(again.splats.positions, cluttered.splats.positions)


def test_room_dimensions_within_5_percent_with_clutter_and_outliers(cluttered):
    proxy = estimate_room(cluttered.splats)
    assert np.all(np.abs(proxy.size - [6, 5, 3]) / [6, 5, 3] < 0.05)
    room = proxy.to_room()
    assert room["type"] == "shoebox"
    np.testing.assert_allclose(room["min"], [-3, -2.5, 0], atol=0.03)
    np.testing.assert_allclose(room["max"], [3, 2.5, 3], atol=0.03)
    assert all(proxy.faces[f] is not None for f in FACES)
    assert proxy.notes == []


def test_every_face_plane_is_the_true_surface(cluttered):
    proxy = estimate_room(cluttered.splats)
    truth = {"floor": ([0, 0, 1], 0.0), "ceiling": ([0, 0, 1], 3.0), "wall_u_min": ([1, 0, 0], -3.0),
             "wall_u_max": ([1, 0, 0], 3.0), "wall_v_min": ([0, 1, 0], -2.5), "wall_v_max": ([0, 1, 0], 2.5)}
    for face, (n, d) in truth.items():
        p = proxy.faces[face]
        cos = abs(p.normal @ n)
        assert cos > np.cos(np.radians(1.0)), face
        assert abs(p.offset * np.sign(p.normal @ n) - d) < 0.03, face


def test_rotated_room_gives_closed_mesh(tmp_path):
    scene = make_synthetic_room((6.0, 5.0, 3.0), yaw_deg=25.0, seed=1)
    proxy = estimate_room(scene.splats)
    assert np.all(np.abs(proxy.size - [6, 5, 3]) / [6, 5, 3] < 0.05)
    assert abs(((proxy.yaw_deg - 25.0 + 45) % 90) - 45) < 1.0
    room = proxy.to_room()
    assert room["type"] == "mesh"
    mesh = mesh_of(room)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(90.0, rel=0.05)  # positive: normals point out
    # The rotated box's corners are the true ones.
    true = np.array([[x, y, z] for x in (-3, 3) for y in (-2.5, 2.5) for z in (0, 3)]) @ scene.rotation.T
    dist = np.linalg.norm(true[:, None] - np.array(room["vertices"])[None], axis=2).min(axis=1)
    assert dist.max() < 0.05
    assert all(name in PRA_NAMES for name in room["materials"])
    forced = proxy.to_room("shoebox")
    size = np.array(forced["max"]) - np.array(forced["min"])
    assert sorted(size.round(1)) == sorted(proxy.size.round(1))


def test_colmap_style_up_axis():
    """A capture still in COLMAP's frame has -Y up; the proxy is told so."""
    scene = make_synthetic_room((6.0, 5.0, 3.0), seed=2)
    # Rotate +Z to -Y: x_colmap = R x_world.
    rot = Rotation.from_euler("x", 90, degrees=True).as_matrix()
    assert np.allclose(rot @ [0, 0, 1], [0, -1, 0])
    s = scene.splats
    s.positions = (s.positions @ rot.T).astype(np.float32)
    q = Rotation.from_matrix(rot) * Rotation.from_quat(s.rotations[:, [1, 2, 3, 0]])
    s.rotations = q.as_quat()[:, [3, 0, 1, 2]].astype(np.float32)
    proxy = estimate_room(s, up=(0, -1, 0))
    assert np.all(np.abs(np.sort(proxy.size[:2]) - [5, 6]) / [5, 6] < 0.05)
    assert proxy.size[2] == pytest.approx(3.0, rel=0.05)
    assert proxy.to_room()["type"] == "mesh"  # up is not +Z: not a world shoebox


def test_missing_ceiling_is_noted_and_estimated():
    scene = make_synthetic_room((6.0, 5.0, 3.0), seed=3)
    s = scene.splats.subset(scene.labels != LABELS["ceiling"])
    proxy = estimate_room(s)
    assert proxy.faces["ceiling"] is None
    assert any("ceiling" in note for note in proxy.notes)
    assert proxy.size[2] == pytest.approx(3.0, rel=0.05)


def test_materials_follow_colour():
    scene = make_synthetic_room(seed=4, colors={"floor": (0.5, 0.5, 0.5), "walls": (0.6, 0.25, 0.18),
                                                "ceiling": (0.95, 0.95, 0.95)})
    proxy = estimate_room(scene.splats)
    assert proxy.materials == {"floor": "concrete_floor", "walls": "brickwork", "ceiling": "ceiling_plasterboard"}
    assert "brick" in proxy.reasons["walls"]
    room = proxy.to_room(materials={"walls": "curtains_velvet"})
    assert room["materials"]["walls"] == "curtains_velvet"


@pytest.mark.parametrize("rgb,surface,name", [
    ((0.55, 0.38, 0.22), "floor", "audience_floor"),
    ((0.2, 0.3, 0.7), "floor", "carpet_cotton"),
    ((0.9, 0.9, 0.88), "floor", "ceramic_tiles"),
    ((0.15, 0.15, 0.15), "floor", "linoleum_on_concrete"),
    ((0.88, 0.86, 0.82), "wall", "plasterboard"),
    ((0.35, 0.35, 0.36), "wall", "rough_concrete"),
    ((0.5, 0.35, 0.2), "wall", "wooden_lining"),
    ((0.95, 0.95, 0.95), "ceiling", "ceiling_plasterboard"),
])
def test_guess_material_table(rgb, surface, name):
    got, reason = guess_material(rgb, surface)
    assert got == name and got in PRA_NAMES and reason


def test_fit_planes_finds_two_noisy_planes():
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.uniform(0, 4, 3000), rng.uniform(0, 4, 3000), rng.normal(0, 0.005, 3000)])
    b = np.column_stack([rng.normal(2, 0.005, 2000), rng.uniform(0, 4, 2000), rng.uniform(0, 3, 2000)])
    noise = rng.uniform(-1, 5, (500, 3))
    planes = fit_planes(np.vstack([a, b, noise]), threshold=0.03, min_inliers=200)
    assert len(planes) == 2
    assert abs(planes[0].normal[2]) > 0.9999 and abs(planes[0].offset) < 0.003
    assert abs(planes[1].normal[0]) > 0.9999 and abs(abs(planes[1].offset) - 2) < 0.003


def test_too_few_opaque_gaussians_is_a_clear_error():
    scene = make_synthetic_room(seed=5)
    s = scene.splats
    s.opacities[:] = 0.1
    with pytest.raises(SplatError, match="opacity >= 0.5"):
        estimate_room(s)


# --------------------------------------------------------------------------- drawn rooms

def test_drawn_rectangle_is_a_shoebox():
    room = room_from_corners([[0, 0], [4, 0], [4, 3], [0, 3]], floor=0.0, height=2.5)
    assert room == {"type": "shoebox", "min": [0.0, 0.0, 0.0], "max": [4.0, 3.0, 2.5],
                    "materials": {"floor": "linoleum_on_concrete", "ceiling": "ceiling_plasterboard",
                                  "walls": "plasterboard"}}


@pytest.mark.parametrize("clockwise", [False, True])
def test_drawn_l_shape_is_a_closed_mesh(clockwise):
    corners = [[0, 0, 0.1], [6, 0, 0.1], [6, 2, 0.1], [3, 2, 0.1], [3, 5, 0.1], [0, 5, 0.1]]
    if clockwise:
        corners = corners[::-1]
    room = room_from_corners(corners, ceiling=2.6, materials={"floor": "carpet_cotton"})
    assert room["type"] == "mesh"
    mesh = mesh_of(room)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx((6 * 5 - 3 * 3) * 2.5)  # floor from the corners' z = 0.1
    floor_faces = [i for i, m in enumerate(room["face_materials"]) if room["materials"][m] == "carpet_cotton"]
    normals = mesh.face_normals[floor_faces]
    np.testing.assert_allclose(normals, [[0, 0, -1]] * len(floor_faces), atol=1e-12)


def test_drawn_rotated_rectangle_is_a_mesh():
    c, s = np.cos(0.3), np.sin(0.3)
    corners = np.array([[0, 0], [4, 0], [4, 3], [0, 3]]) @ np.array([[c, s], [-s, c]])
    room = room_from_corners(corners, floor=0.0, height=3.0)
    assert room["type"] == "mesh"
    assert mesh_of(room).volume == pytest.approx(36.0)


def test_drawn_room_errors():
    with pytest.raises(SplatError, match="crosses itself"):
        room_from_corners([[0, 0], [2, 2], [2, 0], [0, 2]], floor=0, height=2)
    with pytest.raises(SplatError, match="ceiling height"):
        room_from_corners([[0, 0], [2, 0], [2, 2]], floor=0)
    with pytest.raises(SplatError, match="floor height"):
        room_from_corners([[0, 0], [2, 0], [2, 2]], height=2)
    with pytest.raises(SplatError, match="at least 3"):
        room_from_corners([[0, 0], [2, 0], [0, 0]], floor=0, height=2)
    with pytest.raises(SplatError, match="above the floor"):
        room_from_corners([[0, 0], [2, 0], [2, 2]], floor=2, ceiling=1)
    with pytest.raises(SplatError, match="zero area"):
        room_from_corners([[0, 0], [1, 0], [2, 0]], floor=0, height=2)


def test_ear_clipping_covers_random_star_polygons():
    rng = np.random.default_rng(7)
    for _ in range(20):
        k = int(rng.integers(3, 25))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(0.3, 1.0, k)
        xy = np.column_stack([r * np.cos(ang), r * np.sin(ang)])
        tri = triangulate_polygon(xy)
        assert len(tri) == k - 2
        a, b, c = xy[tri[:, 0]], xy[tri[:, 1]], xy[tri[:, 2]]
        areas = 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
        assert np.all(areas > 0)
        shoelace = 0.5 * np.sum(xy[:, 0] * np.roll(xy[:, 1], -1) - np.roll(xy[:, 0], -1) * xy[:, 1])
        assert areas.sum() == pytest.approx(shoelace)


def test_proxy_rooms_load_as_engine_rooms():
    """The room dicts are valid job rooms: the engine's own factory accepts them."""
    from soundstage.materials import material_names
    from soundstage.rooms.factory import room_from_spec

    names = set(material_names())
    for yaw in (0.0, 20.0):
        proxy = estimate_room(make_synthetic_room(yaw_deg=yaw, seed=6).splats)
        room = proxy.to_room()
        assert room["type"] == ("shoebox" if yaw == 0 else "mesh")
        assert room_from_spec(room) is not None
        assert set(proxy.materials.values()) <= names and set(proxy.face_materials.values()) <= names
    drawn = room_from_corners([[0, 0], [6, 0], [6, 2], [3, 2], [3, 5], [0, 5]], floor=0, height=2.5)
    assert room_from_spec(drawn) is not None
