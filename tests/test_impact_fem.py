"""Finite elements, voxelisation and mesh preparation of soundstage.impact.

Oracles: continuum mechanics (rigid-body modes, the patch test: a uniform strain
stores exactly 1/2 eps.D.eps per unit volume), exact integrals, slow reference
implementations kept beside the fast paths.
"""

from __future__ import annotations

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")

from soundstage.errors import GeometryError  # noqa: E402
from soundstage.impact import fem, voxel  # noqa: E402
from soundstage.impact.mesh import (  # noqa: E402
    closest_surface_point,
    cluster_vertices,
    is_closed_cycle,
    load_mesh,
    prepare_mesh,
)

E, NU, RHO = 200e9, 0.3, 7800.0
H = np.array([0.01, 0.02, 0.005])


def _uniform_strain_displacements(eps, h):
    """Nodal displacements of the linear field u = G x with symmetric part eps (Voigt, engineering shear)."""
    G = np.array([[eps[0], eps[3] / 2, eps[5] / 2], [eps[3] / 2, eps[1], eps[4] / 2], [eps[5] / 2, eps[4] / 2, eps[2]]])
    x = fem.CORNERS * h
    return (x @ G.T).ravel()


@pytest.mark.parametrize("incompatible", [True, False])
def test_element_has_exactly_six_rigid_modes(incompatible):
    K = fem.hex8_stiffness(H, E, NU, incompatible)
    w = np.linalg.eigvalsh(K)
    assert np.all(np.abs(w[:6]) < 1e-9 * w[-1])
    assert w[6] > 1e-6 * w[-1]


@pytest.mark.parametrize("incompatible", [True, False])
def test_patch_test_uniform_strain_energy(incompatible):
    rng = np.random.default_rng(1)
    K = fem.hex8_stiffness(H, E, NU, incompatible)
    D = fem.elasticity_matrix(E, NU)
    for _ in range(5):
        eps = rng.standard_normal(6) * 1e-4
        u = _uniform_strain_displacements(eps, H)
        assert 0.5 * u @ K @ u == pytest.approx(0.5 * eps @ D @ eps * np.prod(H), rel=1e-10)


def test_consistent_mass_integrates_total_mass():
    M = fem.hex8_mass(H, RHO)
    ones_x = np.tile([1.0, 0.0, 0.0], 8)
    assert ones_x @ M @ ones_x == pytest.approx(RHO * np.prod(H), rel=1e-12)


def test_finite_cell_matrices_of_a_full_cell_equal_the_closed_form():
    # 2x2x2 Gauss points with weights V/8 integrate the polynomials exactly.
    g = (np.array([-1, 1]) / np.sqrt(3) + 1) / 2
    local = np.array(np.meshgrid(g, g, g, indexing="ij")).reshape(3, -1).T
    w = np.full(8, np.prod(H) / 8)
    K, M = fem.cell_matrices(H, E, NU, RHO, np.zeros(8, int), local, w, 1, void_stiffness=0.0)
    np.testing.assert_allclose(K[0], fem.hex8_stiffness(H, E, NU), rtol=1e-9, atol=1e-9 * np.abs(K).max())
    np.testing.assert_allclose(M[0], fem.hex8_mass(H, RHO), rtol=1e-12)


def test_partly_filled_cell_passes_the_patch_test():
    # Regression: without centring the bubbles on the material, a slab filling a
    # third of a cell lost membrane stiffness to the incompatible modes (curved thin
    # walls came out far too soft).
    rng = np.random.default_rng(2)
    g = (np.array([-1, 1]) / np.sqrt(3) + 1) / 2
    pts = np.array(np.meshgrid(g, g, g, indexing="ij")).reshape(3, -1).T
    local = pts * [1.0 / 3.0, 1.0, 1.0]  # the slab 0 <= x <= h/3
    vol = np.prod(H) / 3
    K, _ = fem.cell_matrices(H, E, NU, RHO, np.zeros(8, int), local, np.full(8, vol / 8), 1, void_stiffness=0.0)
    D = fem.elasticity_matrix(E, NU)
    for _ in range(5):
        eps = rng.standard_normal(6) * 1e-4
        u = _uniform_strain_displacements(eps, H)
        assert 0.5 * u @ K[0] @ u == pytest.approx(0.5 * eps @ D @ eps * vol, rel=1e-8)


def test_fast_assembly_equals_element_loop():
    rng = np.random.default_rng(3)
    cells = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1], [2, 1, 1]])
    gid = fem.cell_node_ids(cells, (3, 2, 2))
    uniq, conn = np.unique(gid, return_inverse=True)
    conn = conn.reshape(-1, 8)
    ke = rng.standard_normal((len(cells), 24, 24))
    me = rng.standard_normal((len(cells), 24, 24))
    scale = rng.uniform(0.1, 1, len(cells))
    K, M = fem.assemble(conn, scale, ke, me, len(uniq))
    Kr, Mr = fem.assemble_reference(conn, scale, ke, me, len(uniq))
    np.testing.assert_allclose(K.toarray(), Kr, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(M.toarray(), Mr, rtol=1e-12, atol=1e-12)


def test_nested_dissection_is_a_permutation():
    c = np.array(np.meshgrid(np.arange(9), np.arange(5), np.arange(3), indexing="ij")).reshape(3, -1).T
    p = fem.nested_dissection(c, leaf=8)
    assert sorted(p.tolist()) == list(range(len(c)))


def _grid_frame(mesh, shape):
    axes = voxel.oriented_frame(mesh)
    v = np.asarray(mesh.vertices) @ axes.T
    lo, hi = v.min(0), v.max(0)
    tri = (np.asarray(mesh.triangles) - lo @ axes) @ axes.T
    return tri, (hi - lo) / np.array(shape)


def test_fill_fractions_fast_equals_reference():
    m = trimesh.creation.icosphere(subdivisions=1, radius=0.1)
    m.apply_transform(trimesh.transformations.random_rotation_matrix(np.random.default_rng(4).random(3)))
    shape = (4, 5, 3)
    tri, spacing = _grid_frame(m, shape)
    np.testing.assert_allclose(voxel.fill_fractions(tri, shape, spacing),
                               voxel.fill_fractions_reference(tri, shape, spacing), atol=1e-12)


@pytest.mark.parametrize("kind", ["box", "sphere"])
def test_voxelised_volume_matches_the_mesh(kind):
    m = trimesh.creation.box(extents=[0.3, 0.2, 0.1]) if kind == "box" else trimesh.creation.icosphere(3, radius=0.1)
    g = voxel.voxelize(prepare_mesh(m), budget=800)
    assert g.volume() == pytest.approx(m.volume, rel=2e-3)
    # Quadrature points of the partial cells plus the full cells hold the volume too.
    qvol = g.qp_weight.sum() + g.full.sum() * np.prod(g.spacing)
    assert qvol == pytest.approx(m.volume, rel=2e-3)


def test_thin_plate_gets_one_whole_cell_through_its_thickness():
    m = trimesh.creation.box(extents=[0.2, 0.1, 0.002])
    m.apply_transform(trimesh.transformations.rotation_matrix(0.4, [1, 2, 3]))
    g = voxel.voxelize(prepare_mesh(m), budget=500)
    assert min(g.shape) == 1 and np.min(g.spacing) == pytest.approx(0.002, rel=1e-6)
    assert np.all(g.full)


def test_closed_cycle_and_open_meshes():
    box = trimesh.creation.box()
    assert is_closed_cycle(box.faces)
    assert not is_closed_cycle(box.faces[1:])
    cup = trimesh.creation.cylinder(0.05, 0.1, sections=32)
    cup = trimesh.Trimesh(cup.vertices, cup.faces[cup.triangles_center[:, 2] < 0.0499])
    prep = prepare_mesh(cup)
    assert not prep.solid and "shell" in prep.notes[-1]
    g = voxel.voxelize(prep, budget=600)
    assert g.volume() == pytest.approx(cup.area * prep.shell_thickness, rel=0.05)


def test_single_missing_triangle_is_repaired():
    m = trimesh.creation.box(extents=[0.1, 0.1, 0.1])
    prep = prepare_mesh(trimesh.Trimesh(m.vertices, m.faces[1:]))
    assert prep.solid and any("closed holes" in n for n in prep.notes)


def test_zero_volume_surface_becomes_a_shell():
    quad = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2], [0, 2, 3], [0, 2, 1], [0, 3, 2]])
    prep = prepare_mesh(quad, shell_thickness=0.003)
    assert not prep.solid
    g = voxel.voxelize(prep, budget=400)
    assert min(g.shape) == 1 and np.min(g.spacing) == pytest.approx(0.003)


@pytest.mark.parametrize("verts,msg", [
    ([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]], "non-finite"),
    ([[0, 0, 0], [1, 0, 0], [2, 0, 0]], "no surface area"),
])
def test_degenerate_meshes_raise_geometry_error(verts, msg):
    with pytest.raises(GeometryError, match=msg):
        prepare_mesh(trimesh.Trimesh(verts, [[0, 1, 2]], process=False), name="thing")


def test_large_meshes_are_simplified_within_the_bound_and_stay_closed():
    m = trimesh.creation.icosphere(subdivisions=5, radius=0.1)  # 20480 faces
    prep = prepare_mesh(m, max_faces=3000)
    assert len(prep.mesh.faces) <= 3000
    assert prep.solid and any("simplified" in n for n in prep.notes)
    assert prep.mesh.volume == pytest.approx(m.volume, rel=0.03)


def test_vertex_clustering_keeps_closed_cycles():
    m = trimesh.creation.torus(major_radius=0.1, minor_radius=0.03)
    v, f = cluster_vertices(np.asarray(m.vertices), np.asarray(m.faces), 0.02)
    assert len(f) < len(m.faces) and is_closed_cycle(f)


def test_load_mesh_errors(tmp_path):
    with pytest.raises(GeometryError, match="not found"):
        load_mesh(tmp_path / "missing.obj")
    bad = tmp_path / "bad.stl"
    bad.write_bytes(b"solid nonsense\nthis is not an stl\n")
    with pytest.raises(GeometryError):
        load_mesh(bad)


def test_load_mesh_formats_round_trip(tmp_path):
    m = trimesh.creation.box(extents=[0.1, 0.2, 0.3])
    for ext in ("obj", "ply", "stl", "glb"):
        p = tmp_path / f"box.{ext}"
        m.export(p)
        got = load_mesh(p)
        assert got.area == pytest.approx(m.area, rel=1e-6), ext


def test_closest_surface_point_and_normal():
    m = trimesh.creation.box(extents=[1, 1, 1])
    c, n, d, _ = closest_surface_point(m, [0.1, 0.2, 0.9])
    np.testing.assert_allclose(c, [0.1, 0.2, 0.5], atol=1e-12)
    np.testing.assert_allclose(n, [0, 0, 1], atol=1e-12)
    assert d == pytest.approx(0.4)
