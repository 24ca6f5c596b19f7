"""A room made of a triangle mesh (a furnished room modelled in Blender).

``MeshRoom`` answers the renderer's questions (``soundstage.rooms.base.Room``)
for any triangle mesh in Blender's world frame (metres, Z up):

* ``early_images``: image sources of order 1..3 for every frame, with the
  classic visibility test (the path traced back from the listener must hit
  each reflecting polygon in turn and nothing else on the way).
* ``energy_histogram``: stochastic ray tracing of the whole response
  (specular and scattered, absorption, air) into a receiver sphere.
* ``contains``: which points are in the air of the room.

How the mesh is read
--------------------
1. Vertices closer than a millionth of the model's size are merged (Blender
   exports often split vertices along seams); zero-area and duplicate faces
   are dropped (with a ``GeometryWarning``).
2. Faces are grouped into edge-connected components and wound consistently
   inside each one (an edge shared by two closed objects that touch is split
   between them, by the input's own vertex connectivity). Each closed component is then oriented so its normals
   face the air: the outermost closed surfaces enclose air (a room shell gets
   inward normals), a closed surface inside one of them is furniture (outward
   normals), one inside that is air again, and so on. Give ``air_point`` (a
   point known to be in the air, e.g. the listener) for models where the air
   is *outside* every closed surface (walls modelled as solid slabs).
3. A mesh with boundary or non-manifold edges is not fatal: it is used as is
   (sound escapes through the holes) and the surfaces of its open components
   reflect on both sides; a ``GeometryWarning`` says how many edges are open
   and ``notes`` keeps the message for the sidecar.
4. Coplanar faces of the same material (normals within ``plane_angle``,
   vertices within ``plane_distance`` of the plane, facing the same way) are
   merged into one reflecting plane: a wall made of two or of two hundred
   triangles gives one image per reflection order. Faces need not be adjacent
   to merge: an image depends only on the plane, and a reflection point is
   valid when it lies on any of the plane's triangles. Planes smaller than
   ``min_plane_area`` give no images (they still block and scatter).

Image-source visibility
-----------------------
For a sequence of planes ``p1 .. pk`` the image is the source mirrored across
``p1``, then ``p2``, ...; it exists in a frame when the source lies in front
of ``p1``, each intermediate image in front of the next plane and the listener
in front of ``pk``. It is valid when the straight line from the listener to the
image crosses ``pk`` inside one of its triangles, the line from that point to
the previous image crosses ``p(k-1)`` inside its triangles, and so on down to
the source, and no leg of that path crosses any other triangle (vectorised
Moeller-Trumbore; surfaces whose plane has the whole model on one side, such
as the walls of a convex room, cannot block a leg between two points on that
side and are skipped). A path through a corner edge is found for both orders
of the two walls; it is kept once. The cost is dominated by the number of
plane sequences: P planes give about P**2/4 candidates of order 2 per frame
and P**3/8 of order 3, pruned with those side tests, a static
plane-to-plane test and polygon bounding boxes before any leg is traced.
Measured on a shared 2-core machine (``benchmarks/bench_mesh_room.py``): a
furnished 6 x 5 x 3 m room of 204 triangles (75 planes), 900 frames, takes
about 1-2 s at order 2 and 10-18 s at order 3; 1,800 triangles in 865
planes take about 25 s at order 2.

Each returned image slot is one plane sequence in every frame (its position
moves continuously with the source), valid only in the frames where it is
visible, so the renderer can follow one reflection from frame to frame.

Energy histogram
----------------
``energy_histogram`` traces rays (``soundstage.rooms.raytrace.trace_energy``)
and by default records every path, as ``Room`` specifies; with
``exclude_order=K`` it leaves out the direct sound and the specular paths of
up to K reflections, which are exactly what the renderer plays from the
image sources, so the late part carries no ray noise where the early part is.
4,000 rays to -80 dB in the room above take 1-3 s.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from soundstage.errors import GeometryError
from soundstage.rooms.base import ImageSet, Room
from soundstage.rooms.raytrace import BARY_TOL, TriangleClusters, trace_energy, winding_number

#: Work budget per block of frames in ``early_images`` (candidate pairs).
_CANDIDATE_BUDGET = 1 << 21


class GeometryWarning(UserWarning):
    """The room mesh is usable but not as expected (open, degenerate faces dropped)."""


class MeshRoom(Room):
    """A room given by a triangle mesh with per-face octave-band materials.

    Parameters
    ----------
    vertices : array_like, shape (V, 3)
        Vertex positions, metres, Blender world frame.
    faces : array_like of int, shape (F, 3)
        Triangles as vertex indices, wound either way.
    face_absorption : array_like, shape (F, B) or (B,)
        Energy absorption per octave band (``soundstage.materials.BANDS``,
        B = 7) of each face, in [0, 1]; a single row applies to every face.
    face_scattering : array_like, shape (F, B) or (B,), optional
        Scattering coefficient per band in [0, 1] (default 0: specular).
    name : str
        Object name used in messages.
    air_point : array_like, shape (3,), optional
        A point known to be in the room's air; decides which side of the
        closed surfaces is air (see the module docstring).
    n_rays : int
        Default number of rays of ``energy_histogram``.
    receiver_radius : float
        Default radius of the receiver sphere of ``energy_histogram``, metres.
        Larger is less noisy but blurs arrivals by ``2 R / c``; keep it well
        below the source-listener distance.
    plane_angle : float
        Largest angle between normals of faces merged into one plane, radians.
    plane_distance : float
        Largest distance of a merged face's vertices from the plane, metres.
    min_plane_area : float
        Planes with less area than this (m^2) give no image sources (they
        still block paths and reflect rays). A reflector smaller than the
        wavelength scatters rather than mirrors (10 cm is the wavelength at
        3.4 kHz), and detailed meshes have many tiny facets whose images
        would multiply the cost for nothing audible.

    Attributes
    ----------
    vertices : ndarray, shape (V', 3)
        Welded vertices.
    faces : ndarray of int, shape (F', 3)
        Usable faces, wound so their normals face the air.
    face_index : ndarray of int, shape (F',)
        Row of each usable face in the input ``faces``.
    normals : ndarray, shape (F', 3)
        Unit normals facing the air.
    absorption, scattering : ndarray, shape (F', B)
    two_sided : ndarray of bool, shape (F',)
        Faces of open components (reflect on both sides).
    plane_normal : ndarray, shape (P, 3)
    plane_offset : ndarray, shape (P,)
        Reflecting planes ``{x : plane_normal . x = plane_offset}``; the front
        (air) side is where ``plane_normal . x > plane_offset``.
    plane_faces : list of ndarray of int
        Faces (rows of ``faces``) making up each plane's polygon.
    notes : list of str
        Everything worth reporting about the mesh (open edges, faces dropped).
    """

    kind = "mesh"

    def __init__(
        self,
        vertices,
        faces,
        face_absorption,
        face_scattering=None,
        *,
        name: str = "room",
        air_point=None,
        n_rays: int = 4000,
        receiver_radius: float = 0.4,
        plane_angle: float = 1e-3,
        plane_distance: float = 1e-3,
        min_plane_area: float = 0.01,
    ):
        self.name = name
        self.notes: list[str] = []
        self._warnings: list[str] = []  # the notes that are also warned about
        self.n_rays = int(n_rays)
        self.receiver_radius = float(receiver_radius)
        v, f = self._check_arrays(vertices, faces)
        absorption = self._check_coefficients(face_absorption, "face_absorption", len(f))
        n_bands = absorption.shape[1]
        if face_scattering is None:
            scattering = np.zeros_like(absorption)
        else:
            scattering = self._check_coefficients(face_scattering, "face_scattering", len(f))
            if scattering.shape[1] != n_bands:
                raise GeometryError(
                    f"{name}: face_scattering has {scattering.shape[1]} bands but face_absorption has {n_bands}"
                )
        self.n_bands = n_bands
        diag = float(np.linalg.norm(v.max(axis=0) - v.min(axis=0)))
        self._scale = max(diag, 1.0)
        self._eps = 1e-9 * self._scale  # "strictly in front" of a plane, metres

        # Objects as the input connects them (by vertex index, before welding):
        # where welded objects touch along an edge, each keeps its own faces.
        n_in = len(f)
        incidence = sparse.coo_matrix(
            (np.ones(3 * n_in), (np.repeat(np.arange(n_in), 3), n_in + f.ravel())), shape=(n_in + len(v),) * 2
        )
        objects = csgraph.connected_components(incidence, directed=False)[1][:n_in]
        v, f = self._weld(v, f, 1e-6 * self._scale)
        keep = self._usable_faces(v, f, diag)
        self.face_index = np.flatnonzero(keep)
        f = f[keep]
        if len(f) < 4:
            raise GeometryError(
                f"{name}: only {len(f)} usable (non-degenerate) faces; a room needs at least 4 faces enclosing a volume"
            )
        self.vertices = v
        self.absorption = absorption[keep]
        self.scattering = scattering[keep]

        self.faces, self.two_sided, self._component, self._counting = self._orient(v, f, objects[keep], air_point)
        tri = v[self.faces]
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        self.areas = 0.5 * np.linalg.norm(cross, axis=1)
        self.normals = cross / (2.0 * self.areas[:, None])
        self._tri = tri
        self._build_planes(plane_angle, plane_distance, min_plane_area)
        self._build_occluders()
        self._all_clusters: TriangleClusters | None = None
        for note in self._warnings:
            warnings.warn(GeometryWarning(note), stacklevel=2)

    # ------------------------------------------------------------------ input
    def _check_arrays(self, vertices, faces) -> tuple[np.ndarray, np.ndarray]:
        name = self.name
        try:
            v = np.asarray(vertices, dtype=np.float64)
        except (TypeError, ValueError):
            raise GeometryError(f"{name}: vertices must be a list of [x, y, z] numbers") from None
        if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
            raise GeometryError(f"{name}: vertices must have shape (V, 3), got {v.shape}")
        bad = np.flatnonzero(~np.isfinite(v).all(axis=1))
        if len(bad):
            raise GeometryError(
                f"{name}: vertex {bad[0]} is not finite ({v[bad[0]].tolist()}); "
                f"{len(bad)} vertices are NaN or infinite, fix them in the model"
            )
        try:
            fa = np.asarray(faces)
            fi = fa.astype(np.int64)
        except (TypeError, ValueError):
            raise GeometryError(f"{name}: faces must be a list of [i, j, k] vertex indices") from None
        if fa.ndim != 2 or fa.shape[1] != 3:
            raise GeometryError(f"{name}: faces must have shape (F, 3) (triangles), got {fa.shape}; triangulate the mesh")
        if fa.dtype.kind == "f" and not np.array_equal(fi, fa):
            raise GeometryError(f"{name}: face indices must be whole numbers")
        if len(fi) < 4:
            raise GeometryError(f"{name}: {len(fi)} faces; a room needs at least 4 faces enclosing a volume")
        out = (fi < 0) | (fi >= len(v))
        if out.any():
            j = int(np.flatnonzero(out.any(axis=1))[0])
            raise GeometryError(
                f"{name}: face {j} uses vertex index {fi[j][out[j]][0]} but the mesh has {len(v)} vertices (0..{len(v) - 1})"
            )
        return v, fi

    def _check_coefficients(self, values, field: str, n_faces: int) -> np.ndarray:
        try:
            a = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise GeometryError(f"{self.name}: {field} must be numbers per face and octave band") from None
        if a.ndim == 1:
            a = np.broadcast_to(a, (n_faces, len(a)))
        if a.ndim != 2 or a.shape[0] != n_faces or a.shape[1] == 0:
            raise GeometryError(f"{self.name}: {field} must have shape ({n_faces}, bands), got {a.shape}")
        bad = ~(np.isfinite(a) & (a >= 0.0) & (a <= 1.0))
        if bad.any():
            i, b = np.argwhere(bad)[0]
            raise GeometryError(f"{self.name}: {field}[{i}, {b}] = {a[i, b]} is outside [0, 1]; give energy coefficients")
        return np.array(a)

    @staticmethod
    def _weld(v: np.ndarray, f: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
        """Merge vertices closer than ``tol`` (metres); keeps the first of each cluster."""
        pairs = cKDTree(v).query_pairs(tol, output_type="ndarray")
        if len(pairs) == 0:
            return v, f
        g = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(v), len(v)))
        _, label = csgraph.connected_components(g, directed=False)
        first = np.full(label.max() + 1, len(v))
        np.minimum.at(first, label, np.arange(len(v)))
        return v, first[label][f]

    def _usable_faces(self, v: np.ndarray, f: np.ndarray, diag: float) -> np.ndarray:
        tri = v[f]
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        good = area > 1e-10 * max(diag, 1e-3) ** 2
        if not good.any():
            raise GeometryError(f"{self.name}: all {len(f)} faces have zero area (degenerate mesh); check the model's scale")
        # Exact duplicates (same three vertices) would make every edge non-manifold.
        key = np.sort(f, axis=1)
        _, first = np.unique(key, axis=0, return_index=True)
        unique = np.zeros(len(f), dtype=bool)
        unique[first] = True
        n_degenerate, n_dup = int((~good).sum()), int((good & ~unique).sum())
        if n_degenerate or n_dup:
            self._warnings.append(
                f"{self.name}: ignored {n_degenerate} zero-area and {n_dup} duplicate faces of {len(f)}"
            )
            self.notes.append(self._warnings[-1])
        return good & unique

    # ---------------------------------------------------------- orientation
    def _orient(self, v: np.ndarray, f: np.ndarray, objects: np.ndarray, air_point):
        """Wind faces consistently and make normals face the air.

        ``objects`` (F,) labels the faces by input object (vertex-index
        connectivity before welding).

        Returns
        -------
        faces : ndarray, shape (F, 3)
        two_sided : ndarray of bool, shape (F,)
        component : ndarray of int, shape (F,)
        counting : ndarray of bool, shape (C,)
            Components used by ``contains`` (closed or open, but not flat).
        """
        n = len(f)
        he = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)  # half-edges, 3 per face
        _, inv, cnt = np.unique(np.sort(he, axis=1), axis=0, return_inverse=True, return_counts=True)
        inv = inv.ravel()
        order = np.argsort(inv, kind="stable")
        start = np.r_[0, np.cumsum(cnt)[:-1]]
        two = np.flatnonzero(cnt == 2)
        h1, h2 = order[start[two]], order[start[two] + 1]
        # An edge shared by more than two faces is often two closed objects
        # touching along it (welded): pair the two half-edges each object has there.
        nm_he = np.flatnonzero(cnt[inv] > 2)
        unpaired = nm_he
        if len(nm_he):
            _, kinv, kcnt = np.unique(
                np.column_stack([inv[nm_he], objects[nm_he // 3]]), axis=0, return_inverse=True, return_counts=True
            )
            kinv = kinv.ravel()
            paired = kcnt[kinv] == 2
            hp = nm_he[paired][np.argsort(kinv[paired], kind="stable")]
            h1, h2 = np.r_[h1, hp[0::2]], np.r_[h2, hp[1::2]]
            unpaired = nm_he[~paired]
        f1, f2 = h1 // 3, h2 // 3
        n_boundary = int((cnt == 1).sum())
        n_nonmanifold = len(np.unique(inv[unpaired]))
        # Two faces are wound consistently when they traverse their shared edge in opposite directions.
        rel = (he[h1, 0] == he[h2, 0]).astype(np.int8)  # 1: one of them must flip
        graph = sparse.coo_matrix((np.ones(len(f1)), (f1, f2)), shape=(n, n)).tocsr()
        n_comp, comp = csgraph.connected_components(graph, directed=False)

        # Flip parity of each face relative to its component's root: the
        # parity to its parent in a breadth-first tree (one search covers every
        # component through an extra node joined to each component's first
        # face), then pointer jumping up the tree.
        roots = np.unique(comp, return_index=True)[1]
        forest = sparse.coo_matrix(
            (np.ones(len(f1) + n_comp), (np.r_[f1, np.full(n_comp, n)], np.r_[f2, roots])), shape=(n + 1, n + 1)
        ).tocsr()
        _, pred = csgraph.breadth_first_order(forest, n, directed=False, return_predecessors=True)
        parent = np.where(pred[:n] >= n, np.arange(n), pred[:n])
        nodes = np.flatnonzero(parent != np.arange(n))
        pair_key, first = np.unique(np.r_[f1 * n + f2, f2 * n + f1], return_index=True)
        pair_rel = np.r_[rel, rel][first]
        par = np.zeros(n, dtype=np.int8)
        par[nodes] = pair_rel[np.searchsorted(pair_key, nodes * n + parent[nodes])]
        anc = parent.copy()
        for _ in range(int(np.ceil(np.log2(max(n, 2)))) + 1):
            par = par ^ par[anc]
            anc = anc[anc]
        flip = par.astype(bool)
        conflict = (flip[f1] ^ flip[f2]) != rel.astype(bool)
        f = np.where(flip[:, None], f[:, ::-1], f)

        # Open components: any boundary or non-manifold edge, or winding conflicts.
        open_faces = np.unique(np.r_[np.flatnonzero(cnt[inv] == 1), unpaired] // 3)
        is_open = np.zeros(n_comp, dtype=bool)
        is_open[comp[open_faces]] = True
        is_open[comp[f1[conflict]]] = True
        if n_boundary or n_nonmanifold or conflict.any():
            msg = (
                f"{self.name}: mesh is not closed ({n_boundary + n_nonmanifold} open edges: {n_boundary} boundary, "
                f"{n_nonmanifold} non-manifold"
                + (f", {int(conflict.sum())} with inconsistent winding" if conflict.any() else "")
                + "); treated as a room anyway: sound escapes through the holes and open surfaces reflect on both sides"
            )
            self._warnings.append(msg)
            self.notes.append(msg)

        # Signed volume per component about its own centroid, and flatness.
        tri = v[f]
        cen = np.zeros((n_comp, 3))
        np.add.at(cen, comp, tri.mean(axis=1))
        cen /= np.bincount(comp, minlength=n_comp)[:, None]
        rel_tri = tri - cen[comp][:, None, :]
        vol = np.bincount(comp, weights=np.einsum("ij,ij->i", rel_tri[:, 0], np.cross(rel_tri[:, 1], rel_tri[:, 2])) / 6.0,
                          minlength=n_comp)
        # Flat: the corner cloud's smallest principal spread is (almost) zero.
        corners = tri.reshape(-1, 3)
        owner = np.repeat(comp, 3)
        rel_c = corners - cen[owner]  # cen is also the mean of the corners (3 per face)
        cov = np.zeros((n_comp, 3, 3))
        np.add.at(cov, owner, rel_c[:, :, None] * rel_c[:, None, :])
        cov /= np.bincount(owner, minlength=n_comp)[:, None, None]
        flat = np.sqrt(np.maximum(np.linalg.eigvalsh(cov)[:, 0], 0.0)) < 1e-6 * self._scale
        # Outward winding for every solid component first.
        outward_flip = (vol < 0) & ~flat
        f = np.where(outward_flip[comp][:, None], f[:, ::-1], f)
        tri = v[f]

        # Nesting depth: how many other components enclose each one, judged
        # by up to 8 sample points per component (centroids of its largest
        # faces; a majority decides, so faces resting on another surface do
        # not spoil the verdict).
        solid = np.flatnonzero(~flat)
        by_comp = np.argsort(comp, kind="stable")
        comp_start = np.r_[0, np.cumsum(np.bincount(comp, minlength=n_comp))]
        pts = tri.reshape(len(tri), 9)
        lo = np.minimum.reduceat(pts[by_comp].reshape(-1, 3, 3).min(axis=1), comp_start[:-1])
        hi = np.maximum.reduceat(pts[by_comp].reshape(-1, 3, 3).max(axis=1), comp_start[:-1])
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        rank = np.lexsort((-area, comp))  # faces by component, largest first
        pos_in_comp = np.arange(n) - comp_start[comp[rank]]
        pick = rank[(pos_in_comp < 8) & ~flat[comp[rank]]]
        sample, owner = tri[pick].mean(axis=1), comp[pick]
        n_samples = np.bincount(owner, minlength=n_comp)
        depth = np.zeros(n_comp, dtype=int)
        for k in solid:
            near = np.all((sample >= lo[k] - self._eps) & (sample <= hi[k] + self._eps), axis=1) & (owner != k)
            if not near.any():
                continue
            w = winding_number(sample[near], tri[by_comp[comp_start[k] : comp_start[k + 1]]])
            votes = np.bincount(owner[near][w > 0.5], minlength=n_comp)
            depth += 2 * votes > n_samples
        if air_point is None:
            air_parity = 1
        else:
            p = np.asarray(air_point, dtype=np.float64).reshape(1, 3)
            count = sum(int(winding_number(p, tri[comp == k])[0] > 0.5) for k in solid)  # once: a plain loop
            air_parity = count % 2
        # Inside a component of depth d the enclosure count is d + 1: air there
        # means normals point inward (flip the outward winding).
        inward = ((depth + 1) % 2 == air_parity) & ~flat
        f = np.where(inward[comp][:, None], f[:, ::-1], f)
        self._air_parity = air_parity
        return f, is_open[comp], comp, ~flat

    # ------------------------------------------------------------- planes
    def _build_planes(self, max_angle: float, max_dist: float, min_area: float) -> None:
        """Merge coplanar faces of one material, facing one way, into planes."""
        nf = len(self.faces)
        side_face = np.r_[np.arange(nf), np.flatnonzero(self.two_sided)]
        side_sign = np.r_[np.ones(nf), -np.ones(int(self.two_sided.sum()))]
        sn = self.normals[side_face] * side_sign[:, None]
        stri = self._tri[side_face]
        _, material = np.unique(np.hstack([self.absorption, self.scattering]), axis=0, return_inverse=True)
        smat = material.ravel()[side_face]
        cos_tol = np.cos(max_angle)
        group = np.full(len(side_face), -1)
        normals, offsets, members = [], [], []
        for i in np.argsort(-self.areas[side_face], kind="stable"):
            if group[i] >= 0:
                continue
            n0 = sn[i]
            d0 = float(n0 @ stri[i].mean(axis=0))
            cand = np.flatnonzero((group < 0) & (smat == smat[i]) & (sn @ n0 > cos_tol))
            dist = np.abs(stri[cand] @ n0 - d0).max(axis=1)
            cand = cand[dist <= max_dist]
            g = len(normals)
            group[cand] = g
            w = self.areas[side_face[cand]]
            n = (sn[cand] * w[:, None]).sum(axis=0)
            n /= np.linalg.norm(n)
            normals.append(n)
            offsets.append(float(np.sum(w * (stri[cand].mean(axis=1) @ n)) / w.sum()))
            members.append(side_face[cand])
        big = [k for k, m in enumerate(members) if self.areas[m].sum() >= min_area]
        if len(big) < len(members):
            self.notes.append(
                f"{self.name}: {len(members) - len(big)} of {len(members)} planes are smaller than {min_area} m^2 "
                "and give no image sources (they still block and scatter sound)"
            )
        normals, offsets, members = [normals[k] for k in big], [offsets[k] for k in big], [members[k] for k in big]
        self.plane_normal = np.array(normals).reshape(-1, 3)
        self.plane_offset = np.array(offsets)
        self.plane_faces = members
        first = np.array([m[0] for m in members], dtype=np.int64)
        self.plane_gain = np.sqrt(1.0 - self.absorption[first]) * np.sqrt(1.0 - self.scattering[first])
        n_planes = len(members)
        sizes = np.array([len(m) for m in members], dtype=np.int64)
        self._gptr = np.r_[0, np.cumsum(sizes)]
        self._gsize = sizes
        self._gfaces = np.concatenate(members) if members else np.zeros(0, dtype=np.int64)
        # Bounding box of each plane's polygon, padded for points computed on the plane.
        pad = 1e-6 * self._scale + max_dist
        self._glo = np.array([self._tri[m].reshape(-1, 3).min(axis=0) for m in members]).reshape(-1, 3) - pad
        self._ghi = np.array([self._tri[m].reshape(-1, 3).max(axis=0) for m in members]).reshape(-1, 3) + pad
        # Barycentric tables of every face (for "is this point on the polygon").
        a = self._tri[:, 0]
        e1 = self._tri[:, 1] - a
        e2 = self._tri[:, 2] - a
        d11, d12, d22 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
        self._bary = (a, e1, e2, d11, d12, d22, 1.0 / (d11 * d22 - d12 * d12))
        # Static pruning: a path can go from plane a to plane b only if some of
        # b's polygon is in front of a and some of a's polygon in front of b.
        front = np.full((n_planes, n_planes), -np.inf)
        for b in range(n_planes):
            pts = self._tri[members[b]].reshape(-1, 3)
            front[:, b] = (pts @ self.plane_normal.T - self.plane_offset).max(axis=0)
        eps = 1e-6 * self._scale
        self._feasible = (front > eps) & (front.T > eps)
        np.fill_diagonal(self._feasible, False)

    def _in_plane_polygon(self, x: np.ndarray, plane: np.ndarray) -> np.ndarray:
        """Whether points lying on their planes fall on one of the plane's faces.

        Parameters
        ----------
        x : ndarray, shape (n, 3)
        plane : ndarray of int, shape (n,)

        Returns
        -------
        ndarray of bool, shape (n,)
        """
        # Most candidate points miss the polygon's bounding box: test that first.
        near = np.all((x >= self._glo[plane]) & (x <= self._ghi[plane]), axis=1)
        idx = np.flatnonzero(near)
        cnt = self._gsize[plane[idx]]
        rep = np.repeat(np.arange(len(idx)), cnt)
        off = np.arange(len(rep)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        face = self._gfaces[self._gptr[plane[idx]][rep] + off]
        a, e1, e2, d11, d12, d22, inv = self._bary
        w = x[idx][rep] - a[face]
        p1 = np.einsum("ij,ij->i", w, e1[face])
        p2 = np.einsum("ij,ij->i", w, e2[face])
        u = (d22[face] * p1 - d12[face] * p2) * inv[face]
        v = (d11[face] * p2 - d12[face] * p1) * inv[face]
        inside = (u >= -BARY_TOL) & (v >= -BARY_TOL) & (u + v <= 1.0 + BARY_TOL)
        out = np.zeros(len(x), dtype=bool)
        out[idx[rep[inside]]] = True
        return out

    # ----------------------------------------------------------- occluders
    def _build_occluders(self) -> None:
        """Find faces that cannot block a path leg between points on their front.

        A face whose plane has every vertex of the model on one side (a wall of
        a convex room) can only be crossed by a segment with an end on the
        other side; reflection points always lie on the model, so it can block
        a leg only if a source or listener is on the far side.
        """
        pts = self.vertices[np.unique(self.faces)]
        off = np.einsum("ij,ij->i", self.normals, self._tri[:, 0])
        tol = 1e-6 * self._scale
        self._support = np.zeros(len(self.faces), dtype=np.int64)
        step = max(1, _CANDIDATE_BUDGET // len(pts))
        for f0 in range(0, len(self.faces), step):
            d = pts @ self.normals[f0 : f0 + step].T - off[None, f0 : f0 + step]  # every vertex vs these planes
            self._support[f0 : f0 + step] = np.where((d >= -tol).all(axis=0), 1, np.where((d <= tol).all(axis=0), -1, 0))
        self._occluder_cache: dict[bytes, TriangleClusters] = {}

    def _occluders(self, points: np.ndarray) -> TriangleClusters:
        """Clusters of the faces that may block legs for these sources and listeners."""
        sup = np.flatnonzero(self._support != 0)
        off = np.einsum("ij,ij->i", self.normals[sup], self._tri[sup, 0])
        far = np.zeros(len(sup), dtype=bool)
        step = max(1, _CANDIDATE_BUDGET // max(len(sup), 1))
        for p0 in range(0, len(points), step):
            signed = (points[p0 : p0 + step] @ self.normals[sup].T - off) * self._support[sup]
            far |= (signed < -1e-6 * self._scale).any(axis=0)
        needed = self._support == 0
        needed[sup[far]] = True
        key = np.packbits(needed).tobytes()
        if key not in self._occluder_cache:
            idx = np.flatnonzero(needed)
            self._occluder_cache[key] = TriangleClusters(self._tri[idx], idx)
        return self._occluder_cache[key]

    # -------------------------------------------------------------- queries
    def contains(self, points: np.ndarray) -> np.ndarray:
        """Whether each point is in the air of the room.

        Counts the closed (or open but not flat) surfaces enclosing the point
        with generalised winding numbers, which stay exact close to walls and
        degrade gracefully through holes; air is where that count has the
        parity of the room's air (see the module docstring). Points exactly on
        a surface are ambiguous.

        Parameters
        ----------
        points : ndarray, shape (n, 3)
            Metres.

        Returns
        -------
        ndarray of bool, shape (n,)
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        counted = self._counting[self._component]
        comp = self._component[counted]
        if not counted.any():
            return np.zeros(len(points), dtype=bool)
        order = np.argsort(comp, kind="stable")
        labels = np.unique(comp[order], return_inverse=True)[1].ravel()
        # Winding numbers need one orientation for every surface: outward.
        tri = self._tri[counted][order]
        outward = self._outward_sign()[counted][order]
        tri = np.where(outward[:, None, None] > 0, tri, tri[:, ::-1])
        w = winding_number(points, tri, labels)
        count = (w > 0.5).sum(axis=1)
        return count % 2 == self._air_parity

    def _outward_sign(self) -> np.ndarray:
        """+1 for faces whose air-facing normal is also their component's outward normal."""
        n_comp = self._component.max() + 1
        cen = np.zeros((n_comp, 3))
        np.add.at(cen, self._component, self._tri.mean(axis=1))
        cen /= np.bincount(self._component, minlength=n_comp)[:, None]
        rel = self._tri - cen[self._component][:, None, :]
        vol = np.bincount(
            self._component,
            weights=np.einsum("ij,ij->i", rel[:, 0], np.cross(rel[:, 1], rel[:, 2])),
            minlength=n_comp,
        )
        return np.where(vol[self._component] >= 0, 1, -1)

    def early_images(self, source: np.ndarray, listener: np.ndarray, max_order: int) -> ImageSet:
        """Visible image sources up to ``max_order`` reflections for every frame.

        Parameters
        ----------
        source, listener : ndarray, shape (F, 3) (or (3,) for one frame)
            Positions per frame, metres.
        max_order : int
            Highest reflection order (0 gives no images; 1..3 are practical,
            the cost grows with the number of planes to this power).

        Returns
        -------
        ImageSet
            ``positions`` (F, I, 3), ``gains`` (F, I, B) amplitude factors
            ``prod sqrt(1 - a) * sqrt(1 - s)`` over the reflections, ``order``
            (I,), ``valid`` (F, I). Slot ``i`` is the same plane sequence in
            every frame (its position follows the source), ordered by order;
            only sequences visible in at least one frame get a slot.
        """
        src, lis = self._frames(source, listener)
        n_frames = len(src)
        max_order = int(max_order)
        if max_order < 0:
            raise ValueError(f"max_order must be >= 0, got {max_order}")
        n_planes = len(self.plane_offset)
        found = []  # (frames, sequences padded with -1 to max_order)
        if max_order > 0 and n_planes:
            occl = self._occluders(np.vstack([src, lis]))
            per_frame = max(1, n_planes**max_order // 2 ** (max_order - 1))
            step = max(1, _CANDIDATE_BUDGET // per_frame)
            for f0 in range(0, n_frames, step):
                for frames, seq in self._visible(src[f0 : f0 + step], lis[f0 : f0 + step], max_order, occl):
                    pad = np.full((len(seq), max_order), -1, dtype=np.int64)
                    pad[:, : seq.shape[1]] = seq
                    found.append((frames + f0, pad))
        if found:
            frames = np.concatenate([fr for fr, _ in found])
            seqs = np.concatenate([s for _, s in found])
            orders = (seqs >= 0).sum(axis=1)
            keyed = np.column_stack([orders, seqs])
            slots, which = np.unique(keyed, axis=0, return_inverse=True)
            which = which.ravel()
        else:
            frames = np.zeros(0, dtype=np.int64)
            slots = np.zeros((0, max_order + 1), dtype=np.int64)
            which = np.zeros(0, dtype=np.int64)
        planes = slots[:, 1:]
        positions = self._mirror(src, planes)
        # A path through a corner edge is found once per order of the two
        # walls, with the same image: keep the first slot in each frame.
        srt = np.lexsort((which, frames))
        frames, which = frames[srt], which[srt]
        key = np.column_stack([frames, np.round(positions[frames, which] / (1e3 * self._eps)).astype(np.int64)])
        _, first = np.unique(key, axis=0, return_index=True)
        valid = np.zeros((n_frames, len(slots)), dtype=bool)
        valid[frames[first], which[first]] = True
        used_slot = valid.any(axis=0)
        slots, planes, positions, valid = slots[used_slot], planes[used_slot], positions[:, used_slot], valid[:, used_slot]
        order = slots[:, 0].astype(np.int64)
        gains = np.ones((len(slots), self.n_bands))
        for k in range(planes.shape[1]):
            used = planes[:, k] >= 0
            gains[used] *= self.plane_gain[planes[used, k]]
        return ImageSet(
            positions=positions,
            gains=np.repeat(gains[None], n_frames, axis=0),
            order=order,
            valid=valid,
        )

    def _frames(self, source, listener) -> tuple[np.ndarray, np.ndarray]:
        src = np.asarray(source, dtype=np.float64)
        lis = np.asarray(listener, dtype=np.float64)
        src = src.reshape(1, 3) if src.shape == (3,) else src
        lis = lis.reshape(1, 3) if lis.shape == (3,) else lis
        if src.ndim != 2 or src.shape[1] != 3 or lis.shape != src.shape:
            raise ValueError(f"source and listener must both have shape (F, 3), got {src.shape} and {lis.shape}")
        if not (np.isfinite(src).all() and np.isfinite(lis).all()):
            raise ValueError("source and listener positions must be finite")
        return src, lis

    def _mirror(self, points: np.ndarray, planes: np.ndarray) -> np.ndarray:
        """Image of each point across each plane sequence.

        Parameters
        ----------
        points : ndarray, shape (F, 3)
        planes : ndarray of int, shape (I, k)
            Plane indices in reflection order, -1 padding at the end.

        Returns
        -------
        ndarray, shape (F, I, 3)
        """
        img = np.repeat(points[:, None, :], len(planes), axis=1)
        for k in range(planes.shape[1]):
            used = planes[:, k] >= 0
            p = planes[used, k]
            n = self.plane_normal[p]
            dist = np.einsum("fij,ij->fi", img[:, used], n) - self.plane_offset[p]
            img[:, used] -= 2.0 * dist[..., None] * n[None]
        return img

    def _visible(self, src: np.ndarray, lis: np.ndarray, max_order: int, occl: TriangleClusters):
        """Yield (frame index, plane sequences) of visible images, order by order.

        Parameters
        ----------
        src, lis : ndarray, shape (Fc, 3)

        Yields
        ------
        frames : ndarray of int, shape (m,)
        sequences : ndarray of int, shape (m, k)
        """
        N, D, eps = self.plane_normal, self.plane_offset, self._eps
        d_src = src @ N.T - D
        d_lis = lis @ N.T - D
        f, a = np.nonzero(d_src > eps)
        seq = a[:, None]
        imgs = (src[f] - 2.0 * d_src[f, a, None] * N[a])[:, None, :]
        for k in range(1, max_order + 1):
            m = d_lis[f, seq[:, -1]] > eps
            ok = self._trace_back(f[m], seq[m], imgs[m], src, lis, occl)
            yield f[m][ok], seq[m][ok]
            if k == max_order or len(f) == 0:
                break
            last = imgs[:, -1]
            d_img = last @ N.T - D
            r, b = np.nonzero((d_img > eps) & self._feasible[seq[:, -1]])
            new = last[r] - 2.0 * d_img[r, b, None] * N[b]
            f, seq = f[r], np.column_stack([seq[r], b])
            imgs = np.concatenate([imgs[r], new[:, None, :]], axis=1)

    def _trace_back(self, f, seq, imgs, src, lis, occl) -> np.ndarray:
        """Visibility of candidate images; returns a bool mask over candidates."""
        N, D, eps = self.plane_normal, self.plane_offset, self._eps
        k = seq.shape[1]
        alive = np.arange(len(f))
        q = lis[f]
        pts = np.empty((len(f), k, 3))
        for j in range(k - 1, -1, -1):
            p = seq[alive, j]
            img = imgs[alive, j]
            dq = np.einsum("ij,ij->i", q, N[p]) - D[p]
            di = np.einsum("ij,ij->i", img, N[p]) - D[p]
            # A previous reflection point may lie on this plane too (a path
            # through a corner edge): allowed, the leg between them is empty.
            ok = (dq > -eps) & (di < 0.0)
            t = dq / np.where(ok, dq - di, 1.0)
            x = q + t[:, None] * (img - q)
            ok[ok] = self._in_plane_polygon(x[ok], p[ok])
            alive, q = alive[ok], x[ok]
            pts = pts[ok]
            pts[:, j] = q
        if len(alive) == 0:
            return np.zeros(len(f), dtype=bool)
        # Legs: listener -> last reflection point -> ... -> first -> source.
        ends = np.concatenate([lis[f[alive]][:, None], pts[:, ::-1], src[f[alive]][:, None]], axis=1)
        blocked = occl.any_hit(ends[:, :-1].reshape(-1, 3), ends[:, 1:].reshape(-1, 3)).reshape(len(alive), k + 1)
        out = np.zeros(len(f), dtype=bool)
        out[alive[~blocked.any(axis=1)]] = True
        return out

    def energy_histogram(
        self,
        source: np.ndarray,
        listener: np.ndarray,
        *,
        air: np.ndarray,
        speed_of_sound: float,
        bin_width: float,
        t_max: float,
        rng: np.random.Generator | None = None,
        n_rays: int | None = None,
        receiver_radius: float | None = None,
        exclude_order: int | None = None,
    ) -> np.ndarray:
        """Energy at the listener per band and time bin, by stochastic ray tracing.

        Every path is included: the direct sound, specular and scattered
        reflections (see ``soundstage.rooms.raytrace.trace_energy``). A lone
        path of length r with reflection factors g contributes, on average,
        ``g**2 * exp(-air * r) / r**2`` at time ``r / c``, the unit of
        ``soundstage.rooms.base``; single bins are noisy (fewer rays reach a
        far image), sums over time are not.

        Parameters
        ----------
        source, listener : ndarray, shape (3,)
            Metres. Keep them further apart than ``receiver_radius``.
        air : ndarray, shape (B,)
            Air energy attenuation per band, 1/m.
        speed_of_sound : float
            m/s.
        bin_width : float
            Seconds.
        t_max : float
            Seconds.
        rng : numpy Generator, optional
            Source of randomness; the same generator state gives the same
            histogram (default: a generator seeded with 0).
        n_rays : int, optional
            Default ``self.n_rays``.
        receiver_radius : float, optional
            Metres, default ``self.receiver_radius``.
        exclude_order : int, optional
            Leave out the direct sound and the purely specular paths of at
            most this many reflections, i.e. what the direct path and
            ``early_images(..., max_order=exclude_order)`` render (up to the
            planes below ``min_plane_area``), so nothing needs subtracting and
            no ray noise is left where the early part is. Default: every
            path, as ``Room`` specifies.

        Returns
        -------
        ndarray, shape (B, ceil(t_max / bin_width))
        """
        src = np.asarray(source, dtype=np.float64).reshape(3)
        lis = np.asarray(listener, dtype=np.float64).reshape(3)
        air = np.asarray(air, dtype=np.float64).reshape(-1)
        if air.shape != (self.n_bands,):
            raise ValueError(f"air must have {self.n_bands} bands, got {air.shape}")
        if not (bin_width > 0 and t_max > 0 and speed_of_sound > 0):
            raise ValueError("bin_width, t_max and speed_of_sound must be positive")
        if self._all_clusters is None:
            self._all_clusters = TriangleClusters(self._tri)
        return trace_energy(
            self._all_clusters,
            self.normals,
            self.absorption,
            self.scattering,
            src,
            lis,
            air=air,
            speed_of_sound=float(speed_of_sound),
            bin_width=float(bin_width),
            t_max=float(t_max),
            n_rays=int(n_rays or self.n_rays),
            receiver_radius=float(receiver_radius or self.receiver_radius),
            rng=np.random.default_rng(0) if rng is None else rng,
            exclude_order=-1 if exclude_order is None else int(exclude_order),
        )


def box_mesh(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """A closed axis-aligned box as 8 vertices and 12 triangles.

    Parameters
    ----------
    lo, hi : array_like, shape (3,)
        Opposite corners, metres.

    Returns
    -------
    vertices : ndarray, shape (8, 3)
    faces : ndarray of int, shape (12, 3)
        Wound with outward normals (counter-clockwise seen from outside).
    """
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    v = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    # Vertex k has x = bit 2, y = bit 1, z = bit 0 of k.
    f = np.array(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5],  # x = lo, x = hi
         [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],  # y = lo, y = hi
         [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]  # z = lo, z = hi
    )
    return v, f


def early_images_reference(room: MeshRoom, source, listener, max_order: int) -> dict[tuple[int, ...], np.ndarray]:
    """Slow, obviously correct twin of ``MeshRoom.early_images`` for one frame.

    Tries every sequence of planes (no pruning), traces each path back with
    plain loops, tests "on the polygon" with edge cross products and
    occlusion against every face of the model (no clusters, no skipped walls).

    Parameters
    ----------
    room : MeshRoom
    source, listener : array_like, shape (3,)
    max_order : int

    Returns
    -------
    dict
        Plane sequence (tuple of plane indices, first reflection first) ->
        image position, shape (3,), for every visible image.
    """
    s = np.asarray(source, dtype=float)
    lis = np.asarray(listener, dtype=float)
    N, D = room.plane_normal, room.plane_offset
    eps = room._eps
    margin = 1e-6

    def on_face(x, face):
        a, b, c = room._tri[face]
        n = np.cross(b - a, c - a)
        tol = -BARY_TOL * np.dot(n, n)
        return all(np.dot(np.cross(q - p, x - p), n) >= tol for p, q in ((a, b), (b, c), (c, a)))

    def blocked(p0, p1):
        for face in range(len(room.faces)):
            a = room._tri[face, 0]
            n = room.normals[face]
            h0, h1 = np.dot(p0 - a, n), np.dot(p1 - a, n)
            if h0 == h1:
                continue
            t = h0 / (h0 - h1)
            length = np.linalg.norm(p1 - p0)
            if margin / length < t < 1 - margin / length and on_face(p0 + t * (p1 - p0), face):
                return True
        return False

    out = {}
    for k in range(1, max_order + 1):
        for seq in itertools.product(range(len(D)), repeat=k):
            if any(seq[i] == seq[i + 1] for i in range(k - 1)):
                continue
            imgs, x = [], s
            for p in seq:
                h = np.dot(N[p], x) - D[p]
                if h <= eps:
                    break
                x = x - 2 * h * N[p]
                imgs.append(x)
            if len(imgs) < k:
                continue
            q, path, ok = lis, [lis], True
            for j in range(k - 1, -1, -1):
                p = seq[j]
                hq, hi = np.dot(N[p], q) - D[p], np.dot(N[p], imgs[j]) - D[p]
                if not (hq > -eps and hi < 0):
                    ok = False
                    break
                x = q + hq / (hq - hi) * (imgs[j] - q)
                if not any(on_face(x, face) for face in room.plane_faces[p]):
                    ok = False
                    break
                path.append(x)
                q = x
            if not ok:
                continue
            path.append(s)
            if any(blocked(path[i], path[i + 1]) for i in range(len(path) - 1)):
                continue
            if any(np.linalg.norm(imgs[-1] - other) < 1e3 * eps for other in out.values()):
                continue  # the same path through a corner edge, walls taken in the other order
            out[seq] = imgs[-1]
    return out
