"""Loading and preparing object meshes for modal analysis.

* ``load_mesh``: .obj, .ply, .stl, .glb/.gltf (and anything else trimesh reads) as one
  triangle mesh; a multi-object file is flattened with its node transforms applied.
* ``prepare_mesh``: merge split vertices, drop degenerate faces, simplify very large
  meshes, try to close holes, orient the surface outwards, and decide whether the
  object is a *solid* (closed surface enclosing volume) or must be treated as a *thin
  shell* (open or non-manifold surface that could not be repaired, or zero volume).
* ``closest_surface_point``: nearest point on the surface and its face normal.

Policy for bad geometry (also in docs/impact.md):
* non-finite coordinates, no faces, or no surface area -> ``GeometryError``;
* open surfaces: ``trimesh.repair.fill_holes`` first; if that fails the object is
  modelled as a shell of ``shell_thickness`` (2 mm unless told otherwise);
* zero-volume closed surfaces (a double-sided plane) -> shell of the same thickness;
* more than ``max_faces`` triangles (200,000 by default) -> vertex-clustering
  simplification down to at most ``max_faces`` before voxelisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundstage.errors import GeometryError

#: File types the impact tools read (trimesh reads more; these are the ones we test).
MESH_SUFFIXES = (".obj", ".ply", ".stl", ".glb", ".gltf", ".off")
#: Default cap on triangles before simplification.
MAX_FACES = 200_000
#: Default thickness of open or zero-volume surfaces, metres.
SHELL_THICKNESS = 0.002


def _trimesh():
    try:
        import trimesh
    except ImportError as e:  # the meshes extra is optional in pyproject
        raise GeometryError("reading meshes needs trimesh: pip install 'soundstage[meshes]'") from e
    return trimesh


def load_mesh(path) -> "trimesh.Trimesh":
    """Read a mesh file as one triangle mesh (scene nodes flattened with their transforms).

    Raises
    ------
    GeometryError
        Missing or unreadable file, or a file with no triangles.
    """
    trimesh = _trimesh()
    p = Path(path)
    if not p.is_file():
        raise GeometryError(f"{p}: mesh file not found")
    try:
        loaded = trimesh.load(str(p), force="mesh", process=False)
    except Exception as e:  # trimesh raises many types for corrupt files
        raise GeometryError(f"{p}: cannot read mesh ({type(e).__name__}: {str(e)[:120]})") from e
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise GeometryError(f"{p}: no triangles found (point clouds and empty files cannot ring)")
    return loaded


@dataclass
class PreparedMesh:
    """A mesh ready for voxelisation.

    Attributes
    ----------
    mesh : trimesh.Trimesh
        Cleaned, outward-oriented when solid.
    solid : bool
        True: closed surface enclosing volume (filled by inside/outside ray casts).
        False: modelled as a shell of ``shell_thickness`` metres.
    shell_thickness : float
    notes : list of str
        What was done to the input, in words (shown to the user).
    axes : ndarray, shape (3, 3) or None
        Grid axes, filled in by the voxeliser on first use.
    """

    mesh: object
    solid: bool
    shell_thickness: float
    notes: list = field(default_factory=list)
    axes: object = None


def is_closed_cycle(faces: np.ndarray) -> bool:
    """True when every edge is used equally often in both directions.

    That is the condition for counting signed ray crossings (the winding number) to
    tell inside from outside; it holds for watertight consistently oriented meshes,
    and still holds after vertex clustering or with non-manifold edges where trimesh's
    ``is_watertight`` does not.
    """
    f = np.asarray(faces, dtype=np.int64)
    a = f.ravel()
    b = f[:, [1, 2, 0]].ravel()
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * (int(f.max()) + 1) + hi
    sign = np.where(a < b, 1, -1)
    _, inv = np.unique(key, return_inverse=True)
    return bool(np.all(np.bincount(inv, weights=sign) == 0))


def cluster_vertices(vertices: np.ndarray, faces: np.ndarray, cell: float):
    """Simplify by snapping vertices to a grid of ``cell`` metres (vertex clustering).

    Hand-written because trimesh's quadric decimation needs an extra package that
    the project does not install. Clustering keeps a closed oriented surface closed
    and oriented in the sense of ``is_closed_cycle`` (collapsed triangles are
    dropped, the rest keep their orientation), which is what the voxeliser needs.

    Returns
    -------
    vertices : ndarray, shape (m, 3)
        Mean position of the vertices of each occupied grid cell.
    faces : ndarray of int, shape (k, 3)
    """
    key = np.floor((vertices - vertices.min(axis=0)) / cell).astype(np.int64)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    new_v = np.zeros((len(counts), 3))
    np.add.at(new_v, inv, vertices)
    new_v /= counts[:, None]
    f = inv[faces]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    return new_v, f[ok]


def prepare_mesh(mesh, max_faces: int = MAX_FACES, shell_thickness: float = SHELL_THICKNESS,
                 name: str = "mesh") -> PreparedMesh:
    """Clean a mesh and decide solid or shell (see the module docstring for the policy).

    Parameters
    ----------
    mesh : trimesh.Trimesh
    max_faces : int
        Simplify above this many triangles.
    shell_thickness : float
        Thickness in metres given to open or zero-volume surfaces.
    name : str
        Object name used in messages.

    Returns
    -------
    PreparedMesh

    Raises
    ------
    GeometryError
        Non-finite coordinates, no triangles, or no surface area.
    """
    trimesh = _trimesh()
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    if len(f) == 0:
        raise GeometryError(f"{name}: mesh has no triangles")
    if not np.all(np.isfinite(v)):
        raise GeometryError(f"{name}: mesh has non-finite vertex coordinates (NaN or inf); fix the export")
    if not shell_thickness > 0:
        raise GeometryError(f"{name}: shell thickness must be positive, got {shell_thickness}")
    notes = []
    m = trimesh.Trimesh(v, f, process=False)
    m.merge_vertices(merge_tex=True, merge_norm=True)
    m.update_faces(m.nondegenerate_faces())
    m.remove_unreferenced_vertices()
    if len(m.faces) == 0 or m.area <= 0:
        raise GeometryError(f"{name}: mesh has no surface area (all triangles degenerate); nothing can ring")
    if len(m.faces) > max_faces:
        n0 = len(m.faces)
        diag = float(np.linalg.norm(m.extents))
        cell = diag / 1000.0
        for _ in range(30):
            nv, nf = cluster_vertices(np.asarray(m.vertices), np.asarray(m.faces), cell)
            if len(nf) <= max_faces:
                break
            cell *= 1.3
        m = trimesh.Trimesh(nv, nf, process=False)
        notes.append(f"simplified from {n0} to {len(nf)} triangles (vertex clustering, cell {cell * 1000:.2g} mm)")
    if not is_closed_cycle(m.faces):
        if m.is_watertight:
            trimesh.repair.fix_normals(m)
            notes.append("fixed inconsistent face orientation")
        else:
            before = len(m.faces)
            trimesh.repair.fill_holes(m)
            if is_closed_cycle(m.faces) or m.is_watertight:
                trimesh.repair.fix_normals(m)
                notes.append(f"closed holes ({len(m.faces) - before} triangles added)")
    closed = is_closed_cycle(m.faces)
    solid = False
    if closed:
        tri = np.asarray(m.triangles)
        # Signed volume by the divergence theorem (trimesh's own warns on zero volume).
        vol = float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)
        if vol < 0:
            m.invert()
            vol = -vol
        # Mean thickness volume/area; below a micrometre-scale fraction of the size it is
        # a zero-volume object (a double-sided plane), not a solid.
        solid = vol / m.area > 1e-4 * float(np.linalg.norm(m.extents))
        if not solid:
            notes.append(f"zero volume: modelled as a {shell_thickness * 1000:g} mm thick shell")
    else:
        notes.append(f"open or non-manifold surface that could not be closed: modelled as a "
                     f"{shell_thickness * 1000:g} mm thick shell")
    return PreparedMesh(m, solid, float(shell_thickness), notes)


def closest_surface_point(mesh, point):
    """Nearest point on the mesh surface to ``point``, with that face's unit normal.

    Brute force over all triangles (vectorised): trimesh's own nearest-point query
    needs the optional rtree package, and one query per click is cheap anyway.

    Parameters
    ----------
    mesh : trimesh.Trimesh
    point : array_like, shape (3,)

    Returns
    -------
    closest : ndarray, shape (3,)
    normal : ndarray, shape (3,)
    distance : float
    face : int
    """
    trimesh = _trimesh()
    p = np.asarray(point, dtype=np.float64).reshape(3)
    tris = np.asarray(mesh.triangles)
    best = (np.inf, None, None)
    for a in range(0, len(tris), 65536):  # chunks bound memory on huge meshes
        t = tris[a : a + 65536]
        c = trimesh.triangles.closest_point(t, np.broadcast_to(p, (len(t), 3)))
        d = np.linalg.norm(c - p, axis=1)
        i = int(np.argmin(d))
        if d[i] < best[0]:
            best = (float(d[i]), c[i], a + i)
    dist, closest, face = best
    return closest, np.asarray(mesh.face_normals[face]), dist, face
