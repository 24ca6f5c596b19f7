"""Ray casting against splats.

Oracles: the brute-force reference (every gaussian tested) for the grid
index, the analytic single-gaussian case, and the synthetic room's known
walls for click accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soundstage.splats import SplatError, read_ply
from soundstage.splats.model import Splats
from soundstage.splats.raycast import SplatRaycaster, cast_rays_reference
from soundstage.splats.synthetic import LABELS, make_synthetic_room

DONUT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "splats" / "donut_sh0.ply"


def one_gaussian(sigma=0.1, opacity=0.9, flat=False):
    scales = np.array([[sigma, sigma, 0.001 if flat else sigma]], np.float32)
    return Splats(np.zeros((1, 3), np.float32), scales, np.array([[1, 0, 0, 0]], np.float32),
                  np.array([opacity], np.float32), np.full((1, 3), 0.5, np.float32))


def test_single_gaussian_analytic_hit_and_miss():
    sigma, opacity = 0.1, 0.9
    # alpha = opacity * exp(-m^2 / 2) reaches 0.5 while m < sqrt(2 ln(opacity / 0.5)).
    m_edge = np.sqrt(2 * np.log(opacity / 0.5))
    offsets = sigma * np.array([0.0, 0.5, 0.99 * m_edge, 1.01 * m_edge, 2.0])
    origins = np.column_stack([np.full(5, -10.0), offsets, np.zeros(5)])
    hits = SplatRaycaster(one_gaussian(sigma, opacity)).cast(origins, [1, 0, 0])
    np.testing.assert_array_equal(hits.hit, [True, True, True, False, False])
    np.testing.assert_allclose(hits.distance[:3], 10.0, rtol=1e-12)  # t* = closest approach to the centre
    np.testing.assert_array_equal(hits.index, [0, 0, 0, -1, -1])
    assert np.all(np.isnan(hits.point[3:]))


def test_flat_gaussian_normal_faces_the_ray():
    g = one_gaussian(flat=True)
    rc = SplatRaycaster(g)
    up = rc.pick([0.01, 0.02, 5.0], [0, 0, -1])
    down = rc.pick([0.01, 0.02, -5.0], [0, 0, 1])
    np.testing.assert_allclose(up["normal"], [0, 0, 1], atol=1e-6)
    np.testing.assert_allclose(down["normal"], [0, 0, -1], atol=1e-6)
    np.testing.assert_allclose(up["point"], [0.01, 0.02, 0.0], atol=1e-9)
    assert rc.pick([0.01, 0.02, 5.0], [0, 0, 1]) is None  # pointing away
    assert rc.pick([0.01, 0.02, 5.0], [0, 0, -1], t_max=4.0) is None  # too far


@pytest.mark.parametrize("options", [{}, {"max_cells_per_gaussian": 2}, {"cell_size": 0.05}])
def test_grid_matches_reference_on_synthetic_room(options):
    """Default grid; most gaussians in the per-ray 'big' list; a fine grid with many cells per ray."""
    scene = make_synthetic_room(seed=11, density=120)
    rng = np.random.default_rng(2)
    origins = rng.uniform([-4, -3.5, -1], [4, 3.5, 4], (150, 3))  # some outside the room
    dirs = rng.normal(size=(150, 3))
    caster = SplatRaycaster(scene.splats, **options)
    if "max_cells_per_gaussian" in options:
        assert len(caster.big) > len(caster) / 2
    fast = caster.cast(origins, dirs)
    ref = cast_rays_reference(scene.splats, origins, dirs)
    np.testing.assert_array_equal(fast.hit, ref.hit)
    np.testing.assert_array_equal(fast.index, ref.index)
    np.testing.assert_array_equal(fast.distance, ref.distance)
    np.testing.assert_array_equal(fast.normal[fast.hit], ref.normal[ref.hit])
    assert 0.5 < fast.hit.mean() < 1.0  # both hits and misses were exercised


@pytest.mark.skipif(not DONUT.exists(), reason="shared data not available")
def test_grid_matches_reference_on_real_donut():
    s = read_ply(DONUT)
    rng = np.random.default_rng(0)
    centre = s.positions.mean(axis=0)
    d = rng.normal(size=(60, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    origins = centre - 0.5 * d + rng.normal(0, 0.02, (60, 3))
    fast = SplatRaycaster(s).cast(origins, d)
    ref = cast_rays_reference(s, origins, d)
    np.testing.assert_array_equal(fast.index, ref.index)
    np.testing.assert_array_equal(fast.distance, ref.distance)
    assert fast.hit.mean() > 0.3


def wall_targets(scene, n, rng, z_min=1.35):
    """Random points on the four walls above the furniture, in the room frame."""
    lo, hi = scene.room_min, scene.room_max
    face = rng.integers(0, 4, n)
    u = rng.uniform(0.05, 0.95, n)
    z = rng.uniform(z_min, hi[2] - 0.1, n)
    x = np.where(face < 2, np.where(face == 0, lo[0], hi[0]), lo[0] + u * (hi[0] - lo[0]))
    y = np.where(face < 2, lo[1] + u * (hi[1] - lo[1]), np.where(face == 2, lo[1], hi[1]))
    return np.column_stack([x, y, z])


@pytest.mark.parametrize("yaw", [0.0, 30.0])
def test_clicks_on_walls_land_within_2cm_clean_room(yaw):
    scene = make_synthetic_room(yaw_deg=yaw, outlier_fraction=0.0, seed=3)
    rng = np.random.default_rng(1)
    eye = np.array([0.3, -0.2, 1.6])
    target = wall_targets(scene, 300, rng)
    rot = scene.rotation
    hits = SplatRaycaster(scene.splats).cast(eye @ rot.T, (target - eye) @ rot.T)
    assert hits.hit.all()
    err = np.linalg.norm(hits.point - target @ rot.T, axis=1)
    assert err.max() < 0.02
    # The normal is the wall's (pointing back into the room).
    inward = -(target - eye)
    wall_normal = np.where(np.abs(target[:, :1] - scene.room_min[0]) < 1e-9, [[1, 0, 0]],
                           np.where(np.abs(target[:, :1] - scene.room_max[0]) < 1e-9, [[-1, 0, 0]],
                                    np.where(np.abs(target[:, 1:2] - scene.room_min[1]) < 1e-9, [[0, 1, 0]],
                                             [[0, -1, 0]])))
    assert np.all(np.sum(wall_normal * inward, axis=1) > 0)
    cos = np.sum(hits.normal * (wall_normal @ rot.T), axis=1)
    assert cos.min() > np.cos(np.radians(5))


def test_clicks_with_outliers_and_furniture():
    """With 5 % floaters some clicks stop on a floater in front of the wall (as
    the render shows); every click that reaches the wall is within 2 cm."""
    scene = make_synthetic_room(outlier_fraction=0.05, seed=3)
    rng = np.random.default_rng(1)
    eye = np.array([0.3, -0.2, 1.6])
    target = wall_targets(scene, 300, rng)
    hits = SplatRaycaster(scene.splats).cast(eye, target - eye)
    assert hits.hit.all()
    label = scene.labels[hits.index]
    on_wall = label <= LABELS["wall_y_max"]
    assert on_wall.mean() > 0.85
    assert set(np.unique(label[~on_wall])) <= {LABELS["outlier"]}
    err = np.linalg.norm(hits.point - target, axis=1)
    assert err[on_wall].max() < 0.02
    # Floater hits are in front of the wall, never behind it.
    assert np.all(hits.distance[~on_wall] < np.linalg.norm(target - eye, axis=1)[~on_wall])


def test_bad_rays_and_empty_scene():
    g = one_gaussian()
    with pytest.raises(SplatError, match="non-zero"):
        SplatRaycaster(g).cast([0, 0, 0], [0, 0, 0])
    with pytest.raises(SplatError, match="finite"):
        SplatRaycaster(g).cast([np.nan, 0, 0], [1, 0, 0])
    faint = one_gaussian(opacity=0.001)
    with pytest.raises(SplatError, match="opaque enough"):
        SplatRaycaster(faint)
