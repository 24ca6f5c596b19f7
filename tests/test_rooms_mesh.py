"""Tests of the triangle-mesh room (soundstage.rooms.mesh) and its ray kernels.

Oracles: pyroomacoustics' image-source model (shoebox and polyhedral rooms with
obstacles) and impulse responses, trimesh's mesh topology, the unfolded
straight-line paths of a shoebox (independent of any ray/triangle test), and
the slow reference implementations kept beside the fast paths.
"""

from __future__ import annotations

import warnings

import numpy as np
import pyroomacoustics as pra
import pytest
import trimesh
from scipy.signal import butter, sosfiltfilt
from scipy.spatial import Delaunay
from scipy.spatial.distance import cdist

from soundstage.errors import GeometryError
from soundstage.rooms.base import ImageSet
from soundstage.rooms.mesh import GeometryWarning, MeshRoom, box_mesh, early_images_reference
from soundstage.rooms.raytrace import (
    TriangleClusters,
    any_hit_reference,
    moller_trumbore,
    nearest_reference,
    winding_number,
)

CENTERS = [125, 250, 500, 1000, 2000, 4000, 8000]
DIM = np.array([6.0, 5.0, 3.0])
C = 343.0
# pyroomacoustics' shoebox wall names, in the order of its walls, and the
# outward normal of each (west: x = 0, east: x = 6, ...).
PRA_WALLS = {
    "west": (0, 0.0), "east": (0, 1.0), "south": (1, 0.0), "north": (1, 1.0), "floor": (2, 0.0), "ceiling": (2, 1.0)
}


def combine(*meshes):
    """Concatenate (vertices, faces) pairs into one mesh."""
    verts, faces, n = [], [], 0
    for v, f in meshes:
        verts.append(v)
        faces.append(f + n)
        n += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def wall_name(centroid, dim=DIM):
    """pyroomacoustics' name of the shoebox wall a face centroid lies on."""
    for name, (axis, side) in PRA_WALLS.items():
        if abs(centroid[axis] - side * dim[axis]) < 1e-9:
            return name
    raise AssertionError(f"{centroid} is on no wall")


def quiet_room(*args, **kwargs) -> MeshRoom:
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeometryWarning)  # these meshes are clean: any warning is a bug
        return MeshRoom(*args, **kwargs)


def visible(images: ImageSet, frame: int = 0):
    ok = images.valid[frame]
    return images.positions[frame][ok], images.gains[frame][ok], np.broadcast_to(images.order, images.valid.shape)[frame][ok]


def match(a: np.ndarray, b: np.ndarray, tol: float):
    """Index j[i] of the point of b equal to a[i]; asserts a one-to-one match."""
    assert len(a) == len(b), f"{len(a)} images vs {len(b)} in the oracle"
    if len(a) == 0:
        return np.zeros(0, dtype=int)
    d = cdist(a, b)
    j = d.argmin(axis=1)
    assert d[np.arange(len(a)), j].max() < tol
    assert len(set(j.tolist())) == len(a)
    return j


# --------------------------------------------------------------- the oracle: pyroomacoustics
@pytest.mark.parametrize(
    "src, lis",
    [
        ([1.5, 2.0, 1.2], [4.0, 3.0, 1.6]),
        ([0.4, 4.3, 2.6], [5.1, 0.9, 0.5]),
        ([3.3, 2.2, 0.9], [2.7, 2.9, 2.1]),
    ],
)
@pytest.mark.parametrize("max_order", [2, 3])
def test_box_images_match_pyroomacoustics(src, lis, max_order):
    rng = np.random.default_rng(7)
    absorption = {w: rng.uniform(0.05, 0.6, 7) for w in PRA_WALLS}
    scattering = {w: rng.uniform(0.0, 0.3, 7) for w in PRA_WALLS}
    mats = {
        w: pra.Material(
            energy_absorption={"coeffs": list(absorption[w]), "center_freqs": CENTERS},
            scattering={"coeffs": list(scattering[w]), "center_freqs": CENTERS},
        )
        for w in PRA_WALLS
    }
    # ray_tracing=True makes pyroomacoustics include sqrt(1 - scattering) in the image damping.
    ref = pra.ShoeBox(DIM, fs=48000, materials=mats, max_order=max_order, air_absorption=False, ray_tracing=True)
    ref.add_source(src)
    ref.add_microphone(lis)
    ref.image_source_model()
    s = ref.sources[0]
    keep = s.orders > 0
    ref_pos, ref_gain, ref_order = s.images.T[keep], s.damping[:7].T[keep], s.orders[keep]

    v, f = box_mesh([0, 0, 0], DIM)
    names = [wall_name(c) for c in v[f].mean(axis=1)]
    room = quiet_room(v, f, np.array([absorption[n] for n in names]), np.array([scattering[n] for n in names]))
    images = room.early_images(np.array([src]), np.array([lis]), max_order)
    pos, gain, order = visible(images)
    j = match(pos, ref_pos, 1e-4)  # pyroomacoustics stores float32 positions
    np.testing.assert_allclose(gain, ref_gain[j], rtol=1e-5)
    np.testing.assert_array_equal(order, ref_order[j])


def test_box_images_per_frame_match_single_frames():
    """Frames are independent: a 4-frame call equals four 1-frame calls."""
    v, f = box_mesh([0, 0, 0], DIM)
    room = quiet_room(v, f, np.full(7, 0.3))
    src = np.array([[1.0, 1.0, 1.0], [2.0, 3.0, 1.5], [5.5, 4.5, 2.5], [3.0, 2.5, 1.5]])
    lis = np.array([[5.0, 4.0, 2.0], [4.0, 1.0, 1.7], [0.5, 0.5, 0.5], [3.0, 2.6, 1.5]])
    many = room.early_images(src, lis, 2)
    assert many.positions.shape == (4, many.n_images, 3) and many.gains.shape == (4, many.n_images, 7)
    assert many.order.shape == (many.n_images,) and many.valid.shape == (4, many.n_images)
    for k in range(4):
        one = room.early_images(src[k : k + 1], lis[k : k + 1], 2)
        match(visible(many, k)[0], visible(one)[0], 1e-9)
        assert many.valid[k].sum() == 24  # 6 first-order + 18 second-order images in a shoebox


def test_image_slots_follow_the_source():
    """One slot is one reflection: its position moves continuously from frame to frame."""
    v, f = box_mesh([0, 0, 0], DIM)
    room = quiet_room(v, f, np.full(7, 0.3))
    n = 50
    src = np.column_stack([np.linspace(1, 5, n), np.full(n, 2.0), np.full(n, 1.5)])
    lis = np.tile([3.0, 4.0, 1.2], (n, 1))
    im = room.early_images(src, lis, 2)
    step = np.linalg.norm(np.diff(im.positions, axis=0), axis=2)
    # A mirror image moves exactly as fast as the source (4 m over n - 1 frames).
    np.testing.assert_allclose(step, 4.0 / (n - 1), rtol=1e-9)


def test_coplanar_triangles_make_one_plane():
    v, f = box_mesh([0, 0, 0], DIM)
    room = quiet_room(v, f, np.full(7, 0.2))
    assert len(room.plane_offset) == len(trimesh.Trimesh(v, f, process=False).facets) == 6
    # The same room with the floor cut into many triangles (Delaunay of its
    # corners and interior points, so its outline keeps the walls' edges).
    rng = np.random.default_rng(1)
    pts = np.vstack([[[0, 0], [6, 0], [6, 5], [0, 5]], rng.uniform([0.5, 0.5], [5.5, 4.5], (8, 2))])
    floor = Delaunay(pts).simplices
    assert len(floor) > 10
    walls = f[~np.all(v[f][:, :, 2] == 0.0, axis=1)]
    v2, f2 = combine((v, walls), (np.column_stack([pts, np.zeros(len(pts))]), floor))
    room2 = quiet_room(v2, f2, np.full(7, 0.2))
    assert len(room2.plane_offset) == 6
    s, lis = np.array([[1.5, 2.0, 1.2]]), np.array([[4.0, 3.0, 1.6]])
    match(visible(room2.early_images(s, lis, 2))[0], visible(room.early_images(s, lis, 2))[0], 1e-9)


# ------------------------------------------------------------------------ occlusion
OBSTACLE = ([2.6, 2.2, 0.0], [3.4, 2.8, 1.0])


def furnished_box():
    return combine(box_mesh([0, 0, 0], DIM), box_mesh(*OBSTACLE))


def fold(x, dim=DIM):
    """Fold unfolded (image-space) coordinates back into the room (a triangle wave)."""
    y = np.mod(x, 2 * dim)
    return np.where(y > dim, 2 * dim - y, y)


def unfolded_path(lis, image):
    """Reflection points of a shoebox image path, by unfolding: no mesh, no ray test.

    The path from the listener to an image of order k is a straight line in
    image space; it reflects where it crosses the lattice planes x = i * 6,
    y = j * 5, z = k * 3.
    """
    ts = []
    for ax in range(3):
        a, b = lis[ax], image[ax]
        lo, hi = sorted((a, b))
        for m in range(int(np.floor(lo / DIM[ax])) + 1, int(np.ceil(hi / DIM[ax]))):
            ts.append((m * DIM[ax] - a) / (b - a))
    pts = [lis] + [fold(lis + t * (image - lis)) for t in sorted(ts)] + [fold(image)]
    return np.array(pts)


def segment_hits_box(p0, p1, lo, hi):
    """Slab test of a segment against an axis-aligned box (independent of Moeller-Trumbore)."""
    d = p1 - p0
    t0, t1 = 0.0, 1.0
    for ax in range(3):
        if abs(d[ax]) < 1e-15:
            if not lo[ax] <= p0[ax] <= hi[ax]:
                return False
            continue
        a, b = sorted(((lo[ax] - p0[ax]) / d[ax], (hi[ax] - p0[ax]) / d[ax]))
        t0, t1 = max(t0, a), min(t1, b)
    return t0 < t1


@pytest.mark.parametrize(
    "src, lis",
    [([1.0, 2.5, 1.5], [5.0, 2.4, 1.3]), ([1.2, 2.3, 1.2], [4.9, 2.6, 1.4]), ([0.8, 1.0, 2.0], [5.2, 4.1, 0.4])],
)
def test_obstacle_removes_exactly_the_blocked_images(src, lis):
    src, lis = np.array(src), np.array(lis)
    empty = quiet_room(*box_mesh([0, 0, 0], DIM), np.full(7, 0.2))
    room = quiet_room(*furnished_box(), np.full(7, 0.2))
    before = visible(empty.early_images(src[None], lis[None], 2))[0]
    after = visible(room.early_images(src[None], lis[None], 2))[0]
    d = cdist(before, after)
    survived = d.min(axis=1) < 1e-9
    blocked = np.array([
        any(segment_hits_box(p, q, *map(np.array, OBSTACLE)) for p, q in zip(path[:-1], path[1:]))
        for path in (unfolded_path(lis, img) for img in before)
    ])
    assert blocked.any(), "the test geometry should block something"
    np.testing.assert_array_equal(survived, ~blocked)
    # Hand check, first order: the floor reflection point lies under the obstacle.
    floor_image = src * [1, 1, -1]
    assert np.linalg.norm(before - floor_image, axis=1).min() < 1e-9
    assert np.linalg.norm(after - floor_image, axis=1).min() > 0.1


def test_obstacle_top_reflects():
    """Source and listener above the obstacle: its top gives a first-order image."""
    room = quiet_room(*furnished_box(), np.full(7, 0.2))
    src, lis = np.array([2.0, 2.5, 1.5]), np.array([4.0, 2.5, 1.5])
    pos = visible(room.early_images(src[None], lis[None], 1))[0]
    top = src * [1, 1, -1] + [0, 0, 2 * OBSTACLE[1][2]]  # mirror across z = 1
    floor = src * [1, 1, -1]
    assert np.linalg.norm(pos - top, axis=1).min() < 1e-9
    assert np.linalg.norm(pos - floor, axis=1).min() > 0.1  # the floor reflection is behind the obstacle
    assert len(pos) == 6


def _pra_polyhedral(shell_lo, shell_hi, obstacles, absorption):
    """pyroomacoustics room from box walls (normals out of the air, as it expects)."""
    def quads(lo, hi, flip):
        v, f = box_mesh(lo, hi)
        out = []
        for k in range(6):
            a, b = f[2 * k], f[2 * k + 1]
            pts = v[[a[0], a[1], a[2], b[2]]]
            out.append(pts[::-1] if flip else pts)
        return out

    polys = quads(shell_lo, shell_hi, False) + [q for lo, hi in obstacles for q in quads(lo, hi, True)]
    walls = [pra.wall_factory(p.T, [absorption], [0.0]) for p in polys]
    return pra.Room(walls, fs=8000, max_order=2, air_absorption=False)


@pytest.mark.parametrize(
    "src, lis",
    [([1.0, 2.5, 1.5], [5.0, 2.4, 1.3]), ([2.0, 2.5, 1.5], [4.0, 2.5, 1.5]), ([0.8, 1.0, 2.0], [5.2, 4.1, 0.4])],
)
def test_furnished_room_matches_pyroomacoustics_polyhedral_room(src, lis):
    obstacles = [OBSTACLE, ([4.5, 0.5, 0.0], [5.5, 1.5, 2.0])]
    ref = _pra_polyhedral([0, 0, 0], DIM, obstacles, 0.2)
    ref.add_source(src)
    ref.add_microphone(lis)
    ref.image_source_model()
    s = ref.sources[0]
    seen = ref.visibility[0][0].astype(bool) & (s.orders > 0)
    # Where a path runs exactly through a corner edge (the second case: source
    # and listener at the same height and depth), pyroomacoustics lists the
    # image once per order of the two walls; it is one path: keep one.
    ref_pos = s.images.T
    dup = np.triu(cdist(ref_pos, ref_pos) < 1e-4, 1).any(axis=0)
    seen &= ~dup
    room = quiet_room(*combine(box_mesh([0, 0, 0], DIM), *(box_mesh(*o) for o in obstacles)), np.full(7, 0.2))
    pos, gain, order = visible(room.early_images(np.array([src]), np.array([lis]), 2))
    j = match(pos, ref_pos[seen], 1e-4)
    np.testing.assert_array_equal(order, s.orders[seen][j])
    np.testing.assert_allclose(gain[:, 0], s.damping[0, seen][j], rtol=1e-5)


def test_fast_images_match_reference():
    """The vectorised search equals the slow loop over every plane sequence, orders 1-3."""
    v, f = combine(
        box_mesh([0, 0, 0], DIM), box_mesh(*OBSTACLE), box_mesh([4.5, 0.5, 0.0], [5.5, 1.5, 2.0]),
        box_mesh([0.5, 3.5, 1.8], [1.5, 4.5, 2.2]),  # a floating shelf
    )
    rng = np.random.default_rng(3)
    room = quiet_room(v, f, np.repeat(rng.uniform(0.1, 0.5, (len(f) // 12, 7)), 12, axis=0))  # one material per box
    src = np.array([[1.0, 2.5, 1.5], [2.0, 4.0, 0.5], [5.8, 4.8, 2.9]])
    lis = np.array([[5.0, 2.4, 1.3], [3.9, 1.1, 2.5], [0.3, 0.2, 0.2]])
    images = room.early_images(src, lis, 3)
    for k in range(len(src)):
        ref = early_images_reference(room, src[k], lis[k], 3)
        pos, _, order = visible(images, k)
        j = match(pos, np.array(list(ref.values())), 1e-9)
        np.testing.assert_array_equal(order, [len(list(ref)[i]) for i in j])


def test_listener_behind_furniture_face_and_wall_with_doorway():
    """Two rooms joined by a doorway: only paths through the doorway survive."""
    # Partition wall at x = 3 (0.2 m thick) with a 1 m wide, 2 m high doorway at y in [2, 3].
    parts = [
        box_mesh([2.9, 0.0, 0.0], [3.1, 2.0, 3.0]),
        box_mesh([2.9, 3.0, 0.0], [3.1, 5.0, 3.0]),
        box_mesh([2.9, 2.0, 2.0], [3.1, 3.0, 3.0]),
    ]
    room = quiet_room(*combine(box_mesh([0, 0, 0], DIM), *parts), np.full(7, 0.2))
    src, lis = np.array([1.0, 1.0, 1.0]), np.array([5.0, 4.0, 1.0])
    pos, _, order = visible(room.early_images(src[None], lis[None], 2))
    ref = early_images_reference(room, src, lis, 2)
    match(pos, np.array(list(ref.values())), 1e-9)
    # Every surviving path passes through the doorway: check by unfolding the
    # first-order paths of the empty room and keeping those through the opening.
    empty = quiet_room(*box_mesh([0, 0, 0], DIM), np.full(7, 0.2))
    first = visible(empty.early_images(src[None], lis[None], 1))[0]
    boxes = [(p[0].min(axis=0), p[0].max(axis=0)) for p in parts]

    def through_doorway(img):
        path = unfolded_path(lis, img)
        return not any(segment_hits_box(p, q, lo, hi) for p, q in zip(path[:-1], path[1:]) for lo, hi in boxes)

    expect = [img for img in first if through_doorway(img)]
    got_first = pos[order == 1]
    shell_first = got_first[cdist(got_first, first).min(axis=1) < 1e-9]
    match(shell_first, np.array(expect).reshape(-1, 3), 1e-9)
    assert 0 < len(expect) < 6


def test_source_outside_the_room_is_heard_through_no_wall():
    """Walls skipped as occluders for inside paths must block a source outside."""
    room = quiet_room(*box_mesh([0, 0, 0], DIM), np.full(7, 0.2))
    src, lis = np.array([-1.0, 2.0, 1.5]), np.array([4.0, 3.0, 1.6])
    images = room.early_images(np.array([src, SRC]), np.array([lis, LIS]), 2)
    assert images.valid[0].sum() == 0 and early_images_reference(room, src, lis, 2) == {}
    assert images.valid[1].sum() == 24  # the same call, a frame inside: unaffected


def test_small_reflectors_give_no_images_but_still_block():
    """A 5 cm cube on a stand: below min_plane_area it mirrors nothing, yet it occludes."""
    cube = box_mesh([2.95, 2.45, 1.35], [3.05, 2.55, 1.45])
    v, f = combine(box_mesh([0, 0, 0], DIM), cube)
    src, lis = np.array([1.0, 2.5, 1.4]), np.array([1.5, 2.5, 1.4])  # the east wall's path runs through the cube
    room = quiet_room(v, f, np.full(7, 0.2))
    assert len(room.plane_offset) == 6 and any("smaller than 0.01" in n for n in room.notes)
    pos = visible(room.early_images(src[None], lis[None], 1))[0]
    east = src * [-1, 1, 1] + [12, 0, 0]
    assert len(pos) == 5 and np.linalg.norm(pos - east, axis=1).min() > 0.1
    detailed = quiet_room(v, f, np.full(7, 0.2), min_plane_area=0.0)
    assert len(detailed.plane_offset) == 12
    cube_west = src * [-1, 1, 1] + [2 * 2.95, 0, 0]
    pos = visible(detailed.early_images(src[None], lis[None], 1))[0]
    assert len(pos) == 6 and np.linalg.norm(pos - cube_west, axis=1).min() < 1e-9


# ----------------------------------------------------------------------- energy histogram
def _pra_image_energy(src, lis, absorption, max_order):
    ref = pra.ShoeBox(DIM, fs=8000, materials=pra.Material(absorption), max_order=max_order, air_absorption=False)
    ref.add_source(src)
    ref.add_microphone(lis)
    ref.image_source_model()
    s = ref.sources[0]
    dist = np.linalg.norm(s.images.T - lis, axis=1)
    return dist, s.damping[0] ** 2 / dist**2


def _t30(energy, fs):
    """T30 (extrapolated to 60 dB) by pyroomacoustics' Schroeder fit, from energy per sample."""
    return pra.experimental.measure_rt60(np.sqrt(energy), fs=fs, decay_db=30)


SRC, LIS = np.array([1.5, 2.0, 1.2]), np.array([4.0, 3.0, 1.6])


def test_histogram_direct_and_early_energy_match_image_sources():
    room = quiet_room(*box_mesh([0, 0, 0], DIM), np.full(7, 0.2))
    air = np.array([0.0, 0.0, 0.0, 0.001, 0.002, 0.005, 0.02])
    hist = room.energy_histogram(SRC, LIS, air=air, speed_of_sound=C, bin_width=1e-3, t_max=0.2,
                                 rng=np.random.default_rng(0), n_rays=4000)
    assert hist.shape == (7, 200)
    r = np.linalg.norm(SRC - LIS)
    first = int(r / C / 1e-3)
    assert np.all(hist[:, :first] == 0.0)  # nothing arrives before the direct sound
    # The direct bin holds 1/r^2 times the air loss (stratified rays: within a few %).
    np.testing.assert_allclose(hist[:, first] * r**2, np.exp(-air * r), rtol=0.05)
    # Cumulative energy (every path) against pyroomacoustics' image sources.
    dist, e = _pra_image_energy(SRC, LIS, 0.2, 20)
    for t in (0.02, 0.05, 0.1, 0.2):
        ref = np.sum(e[dist < C * t])
        got = hist[0, : int(round(t / 1e-3))].sum()
        assert got == pytest.approx(ref, rel=0.06), t


def test_histogram_t30_matches_pyroomacoustics_impulse_response():
    room = quiet_room(*box_mesh([0, 0, 0], DIM), np.full(7, 0.2))
    hist = room.energy_histogram(SRC, LIS, air=np.zeros(7), speed_of_sound=C, bin_width=1e-3, t_max=1.2,
                                 rng=np.random.default_rng(1), n_rays=3000)
    t30 = _t30(hist[3], 1000)
    # Reference 1: pyroomacoustics' full image-source impulse response, 1 kHz octave band.
    fs = 16000
    ref = pra.ShoeBox(DIM, fs=fs, materials=pra.Material(0.2), max_order=60, air_absorption=False)
    ref.add_source(SRC)
    ref.add_microphone(LIS)
    ref.compute_rir()
    sos = butter(4, [1000 / np.sqrt(2), 1000 * np.sqrt(2)], btype="band", fs=fs, output="sos")
    t30_rir = pra.experimental.measure_rt60(sosfiltfilt(sos, ref.rir[0][0]), fs=fs, decay_db=30)
    assert t30 == pytest.approx(t30_rir, rel=0.15)
    # Reference 2 (tighter): the same images' energies binned like the histogram.
    dist, e = _pra_image_energy(SRC, LIS, 0.2, 60)
    bins = (dist / C / 1e-3).astype(int)
    ism = np.bincount(bins[bins < 1200], weights=e[bins < 1200], minlength=1200)
    assert t30 == pytest.approx(_t30(ism, 1000), rel=0.06)


def test_histogram_without_rendered_paths_plus_images_is_the_whole():
    """exclude_order=2 leaves out exactly the direct sound and the images up to order 2."""
    room = quiet_room(*combine(box_mesh([0, 0, 0], DIM), box_mesh(*OBSTACLE)), np.full(7, 0.2), np.full(7, 0.1))
    kw = dict(air=np.zeros(7), speed_of_sound=C, bin_width=1e-3, t_max=0.15, n_rays=8000)
    whole = room.energy_histogram(SRC, LIS, rng=np.random.default_rng(3), **kw)
    rest = room.energy_histogram(SRC, LIS, rng=np.random.default_rng(3), exclude_order=2, **kw)
    pos, gain, _ = visible(room.early_images(SRC[None], LIS[None], 2))
    r = np.linalg.norm(pos - LIS, axis=1)
    explicit = np.zeros(150)
    np.add.at(explicit, (r / C / 1e-3).astype(int), gain[:, 3] ** 2 / r**2)
    explicit[int(np.linalg.norm(SRC - LIS) / C / 1e-3)] += 1 / np.sum((SRC - LIS) ** 2)
    assert rest[3, : int(np.linalg.norm(SRC - LIS) / C / 1e-3) + 1].sum() == 0.0
    for t in (0.03, 0.06, 0.15):
        k = int(t / 1e-3)
        assert rest[3, :k].sum() + explicit[:k].sum() == pytest.approx(whole[3, :k].sum(), rel=0.06), t
    assert rest[3].sum() < 0.8 * whole[3].sum()


def test_scattering_room_t30_matches_pyroomacoustics_ray_tracer():
    """Scattering 0.5: the decay shortens toward Eyring, as pyroomacoustics' hybrid simulator finds."""
    room = quiet_room(*box_mesh([0, 0, 0], DIM), np.full(7, 0.2), np.full(7, 0.5))
    hist = room.energy_histogram(SRC, LIS, air=np.zeros(7), speed_of_sound=C, bin_width=1e-3, t_max=1.2,
                                 rng=np.random.default_rng(0), n_rays=3000)
    t30 = _t30(hist[3], 1000)
    pra.random.seed(1)
    fs = 16000
    ref = pra.ShoeBox(DIM, fs=fs, materials=pra.Material(0.2, 0.5), max_order=3, air_absorption=False, ray_tracing=True)
    ref.set_ray_tracing(n_rays=20000, receiver_radius=0.4, energy_thres=1e-9)
    ref.add_source(SRC)
    ref.add_microphone(LIS)
    ref.compute_rir()
    sos = butter(4, [1000 / np.sqrt(2), 1000 * np.sqrt(2)], btype="band", fs=fs, output="sos")
    t30_ref = pra.experimental.measure_rt60(sosfiltfilt(sos, ref.rir[0][0]), fs=fs, decay_db=30)
    assert t30 == pytest.approx(t30_ref, rel=0.15)
    volume, area = np.prod(DIM), 2 * (DIM[0] * DIM[1] + DIM[1] * DIM[2] + DIM[0] * DIM[2])
    eyring = 0.161 * volume / (-area * np.log(1 - 0.2))
    assert t30 == pytest.approx(eyring, rel=0.15)
    assert t30 < 0.9 * _t30(_specular_box_hist(), 1000)  # and shorter than the purely specular decay


def _specular_box_hist():
    room = quiet_room(*box_mesh([0, 0, 0], DIM), np.full(7, 0.2))
    return room.energy_histogram(SRC, LIS, air=np.zeros(7), speed_of_sound=C, bin_width=1e-3, t_max=1.2,
                                 rng=np.random.default_rng(0), n_rays=3000)[3]


def test_histogram_is_deterministic_and_open_rooms_lose_energy():
    v, f = box_mesh([0, 0, 0], DIM)
    room = quiet_room(v, f, np.full(7, 0.2))
    kw = dict(air=np.zeros(7), speed_of_sound=C, bin_width=1e-3, t_max=0.5, n_rays=1000)
    a = room.energy_histogram(SRC, LIS, rng=np.random.default_rng(5), **kw)
    b = room.energy_histogram(SRC, LIS, rng=np.random.default_rng(5), **kw)
    np.testing.assert_array_equal(a, b)
    ceiling = np.all(v[f][:, :, 2] == 3.0, axis=1)
    with pytest.warns(GeometryWarning):
        open_room = MeshRoom(v, f[~ceiling], np.full(7, 0.2))
    c = open_room.energy_histogram(SRC, LIS, rng=np.random.default_rng(5), **kw)
    assert c.sum() < 0.8 * a.sum()
    # Same rays: the direct sound and the early reflections off the walls left are unchanged.
    first_ceiling = int(np.linalg.norm(SRC * [1, 1, -1] + [0, 0, 6] - LIS) / C / 1e-3)
    np.testing.assert_array_equal(c[:, :first_ceiling], a[:, :first_ceiling])


def test_scattering_keeps_energy_and_shortens_nothing_early():
    """Scattering redistributes energy but (without absorption change) conserves its total."""
    v, f = box_mesh([0, 0, 0], DIM)
    kw = dict(air=np.zeros(7), speed_of_sound=C, bin_width=1e-3, t_max=0.3, n_rays=3000, rng=np.random.default_rng(2))
    spec = quiet_room(v, f, np.full(7, 0.2)).energy_histogram(SRC, LIS, **kw)
    kw["rng"] = np.random.default_rng(2)
    scat = quiet_room(v, f, np.full(7, 0.2), np.linspace(0.0, 0.9, 7)).energy_histogram(SRC, LIS, **kw)
    # Energy per band is the same in expectation (absorption is the same); it is a sum over many rays.
    np.testing.assert_allclose(scat.sum(axis=1), spec.sum(axis=1), rtol=0.08)


# ---------------------------------------------------------------- mesh reading
def test_open_mesh_warns_counts_edges_and_still_works():
    v, f = box_mesh([0, 0, 0], DIM)
    for drop in ([1], [0, 1]):  # one triangle of the west wall, then the whole wall
        keep = np.setdiff1d(np.arange(12), drop)
        tm = trimesh.Trimesh(v, f[keep], process=False)
        n_open = len(trimesh.grouping.group_rows(tm.edges_sorted, require_count=1))
        with pytest.warns(GeometryWarning, match=rf"not closed \({n_open} open edges"):
            room = MeshRoom(v, f[keep], np.full(7, 0.2), name="Room")
        assert any(f"{n_open} open edges" in note for note in room.notes)
        assert room.two_sided.all()
        # The west reflection point (0, 2.27, 1.31) falls in the hole both times
        # (the triangle dropped first, (0,0,0) (0,5,3) (0,5,0), is the one holding it).
        pos = visible(room.early_images(SRC[None], LIS[None], 1))[0]
        west = SRC * [-1, 1, 1]
        assert len(pos) == 5 and np.linalg.norm(pos - west, axis=1).min() > 0.1
        assert room.contains(np.array([[3.0, 2.5, 1.5]]))[0]


def test_touching_furniture_is_not_an_open_mesh():
    """Closed objects sharing an edge (welded) are not open: no warning, one-sided faces."""
    bed = box_mesh([4.0, 3.0, 0.0], [5.9, 4.9, 0.5])
    head = box_mesh([5.8, 3.0, 0.5], [5.9, 4.9, 1.2])
    room = quiet_room(*combine(box_mesh([0, 0, 0], DIM), bed, head), np.full(7, 0.2))
    assert room.notes == [] and not room.two_sided.any()


def test_split_vertices_are_welded():
    """A box exported with every triangle's corners duplicated (Blender seams) is still closed."""
    v, f = box_mesh([0, 0, 0], DIM)
    room = quiet_room(v[f].reshape(-1, 3), np.arange(36).reshape(12, 3), np.full(7, 0.2))
    assert not room.two_sided.any() and len(room.plane_offset) == 6


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda v, f, a: (np.where(np.arange(8)[:, None] == 3, np.nan, v), f, a), "vertex 3 is not finite"),
        (lambda v, f, a: (v, np.where(f == 7, 8, f), a), "vertex index 8"),
        (lambda v, f, a: (v, f[:3], a[:3]), "at least 4 faces"),
        (lambda v, f, a: (v * 0.0, f, a), "zero area"),
        (lambda v, f, a: (v * [1, 1, 0], f, a), "only 2 usable"),
        (lambda v, f, a: (v, f, np.where(np.arange(12)[:, None] == 5, 1.2, a)), r"face_absorption\[5, 0\] = 1.2"),
        (lambda v, f, a: (v, f, -a), "outside"),
        (lambda v, f, a: (v, f, a[:, :3].T), "face_absorption must have shape"),
        (lambda v, f, a: (v[:, :2], f, a), "shape"),
        (lambda v, f, a: (v, f[:, :2], a), "triangulate"),
    ],
)
def test_bad_meshes_raise_one_line(mutate, message):
    v, f = box_mesh([0, 0, 0], DIM)
    v, f, a = mutate(v, f, np.full((12, 7), 0.2))
    with pytest.raises(GeometryError, match=message) as err:
        MeshRoom(v, f, a, name="Room.001")
    assert "\n" not in str(err.value) and "Room.001" in str(err.value)


def test_degenerate_faces_are_dropped_with_a_warning():
    v, f = box_mesh([0, 0, 0], DIM)
    v2 = np.vstack([v, [[1.0, 1.0, 0.0], [2.0, 2.0, 0.0], [3.0, 3.0, 0.0]]])  # collinear: zero area
    f2 = np.vstack([f, [[8, 9, 10]]])
    with pytest.warns(GeometryWarning, match="ignored 1 zero-area"):
        room = MeshRoom(v2, f2, np.full(7, 0.2))
    assert len(room.faces) == 12 and not room.two_sided.any()
    np.testing.assert_array_equal(room.face_index, np.arange(12))


@pytest.mark.parametrize("flip", ["all", "random"])
def test_winding_is_fixed_to_face_the_air(flip):
    v, f = box_mesh([0, 0, 0], DIM)
    obstacle = box_mesh(*OBSTACLE)
    v, f = combine((v, f), obstacle)
    rng = np.random.default_rng(0)
    rev = np.ones(len(f), bool) if flip == "all" else rng.random(len(f)) < 0.5
    f = np.where(rev[:, None], f[:, ::-1], f)
    room = quiet_room(v, f, np.full(7, 0.2))
    shell = np.arange(len(room.faces)) < 12
    # trimesh's repair (outward normals for a closed body) is the oracle for each part.
    for part, sign in ((shell, -1.0), (~shell, 1.0)):
        tm = trimesh.Trimesh(v, f[part], process=False)
        trimesh.repair.fix_normals(tm)
        np.testing.assert_allclose(room.normals[part], sign * tm.face_normals, atol=1e-12)
    # Shell normals point to the room's centre; the obstacle's away from its own.
    cen = room._tri.mean(axis=1)
    to_room = np.einsum("ij,ij->i", room.normals[shell], DIM / 2 - cen[shell])
    from_obstacle = np.einsum("ij,ij->i", room.normals[~shell], cen[~shell] - np.mean(OBSTACLE, axis=0))
    assert (to_room > 0).all() and (from_obstacle > 0).all()


def test_air_point_for_solid_walls():
    """Walls modelled as solid slabs: the air is outside every closed body."""
    slabs = [box_mesh([-0.2, 0, 0], [0, 5, 3]), box_mesh([6, 0, 0], [6.2, 5, 3]), box_mesh([0, -0.2, 0], [6, 0, 3]),
             box_mesh([0, 5, 0], [6, 5.2, 3]), box_mesh([0, 0, -0.2], [6, 5, 0]), box_mesh([0, 0, 3], [6, 5, 3.2])]
    # The slabs touch along edges (welded, non-manifold there) but each is closed.
    room = quiet_room(*combine(*slabs), np.full(7, 0.2), air_point=[3.0, 2.5, 1.5])
    assert room.contains(np.array([[3.0, 2.5, 1.5], [-0.1, 2.0, 1.0]])).tolist() == [True, False]
    pos = visible(room.early_images(SRC[None], LIS[None], 1))[0]
    assert len(pos) == 6


def test_contains():
    room = quiet_room(*furnished_box(), np.full(7, 0.2))
    pts = np.array([
        [3.0, 1.0, 1.5],  # in the air
        [1e-7, 1e-7, 1e-7],  # a hair inside a corner
        [6.0 - 1e-7, 2.0, 1.0],  # a hair inside a wall
        [6.0 + 1e-7, 2.0, 1.0],  # a hair outside it
        [3.0, 2.5, 0.5],  # inside the obstacle
        [3.0, 2.5, 1.0 + 1e-6],  # just above it
        [10.0, 2.0, 1.0],  # outside
        [-1.0, -1.0, -1.0],
    ])
    assert room.contains(pts).tolist() == [True, True, True, False, False, True, False, False]


# ------------------------------------------------------------------------ ray kernels
def test_clusters_match_reference():
    rng = np.random.default_rng(4)
    tri = rng.uniform(-5, 5, (300, 1, 3)) + rng.normal(0, 0.7, (300, 3, 3))
    tri = np.concatenate([tri, box_mesh([-6, -6, -6], [6, 6, 6])[0][box_mesh([-6, -6, -6], [6, 6, 6])[1]]])
    cl = TriangleClusters(tri, leaf=8)
    o = rng.uniform(-5, 5, (3000, 3))
    d = rng.normal(size=(3000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t, k = cl.nearest(o, d, 1e-9, 30.0)
    t_ref, k_ref = nearest_reference(o, d, tri, 1e-9, 30.0)
    np.testing.assert_array_equal(k, k_ref)
    np.testing.assert_allclose(t, t_ref)
    assert np.isfinite(t).all()  # the big box encloses every origin
    p1 = o + 2.0 * d
    np.testing.assert_array_equal(cl.any_hit(o, p1), any_hit_reference(o, p1, tri))


def test_rays_never_leak_out_of_a_closed_furnished_room():
    """200 specular bounces of 2000 rays: every ray hits something every time."""
    room = quiet_room(*combine(box_mesh([0, 0, 0], DIM), box_mesh(*OBSTACLE)), np.full(7, 0.2))
    cl = TriangleClusters(room._tri)
    rng = np.random.default_rng(8)
    o = np.tile([[1.0, 1.0, 1.0]], (2000, 1))
    d = rng.normal(size=(2000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    for _ in range(200):
        t, tri = cl.nearest(o, d, 1e-7 * 10, np.inf)
        assert np.isfinite(t).all() and (tri >= 0).all()
        o = o + t[:, None] * d
        n = room.normals[tri]
        d = d - 2.0 * np.einsum("ij,ij->i", d, n)[:, None] * n
    assert room.contains(o + 1e-6 * d).all()  # still in the air, just after leaving the last wall


def test_moller_trumbore_known_hits():
    a = np.array([[0.0, 0.0, 0.0]] * 3)
    e1 = np.array([[1.0, 0.0, 0.0]] * 3)
    e2 = np.array([[0.0, 1.0, 0.0]] * 3)
    o = np.array([[0.2, 0.2, 1.0], [0.2, 0.2, -2.0], [0.8, 0.8, 1.0]])
    d = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 2.0], [0.0, 0.0, -1.0]])
    t, hit = moller_trumbore(o, d, a, e1, e2)
    assert hit.tolist() == [True, True, False]
    np.testing.assert_allclose(t[:2], [1.0, 1.0])


def test_winding_number_of_a_box():
    v, f = box_mesh([0, 0, 0], [1, 1, 1])
    w = winding_number(np.array([[0.5, 0.5, 0.5], [2, 0.5, 0.5], [0.999999, 0.5, 0.5]]), v[f])
    np.testing.assert_allclose(w, [1.0, 0.0, 1.0], atol=1e-9)
