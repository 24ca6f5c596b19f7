"""Voxelisation of a prepared mesh into a grid of box cells with volume fractions.

The grid is aligned with the object's minimum-volume oriented bounding box and
its spacing may differ per axis, so a plate or a beam lined up with its box gets
whole cells through its thickness (one cell is enough for the incompatible-modes
element in ``fem``). The cell size comes from a budget on the number of filled
cells, which bounds the cost of the eigenproblem whatever the triangle count.

Filling
-------
* Solids (closed oriented surfaces): rays along the grid's first axis, ``s x s``
  per cell column, and the winding number (signed crossing count) along each ray
  gives exact inside lengths per cell; the cell's fraction is the mean over its
  rays. Hand-written because trimesh's ray voxeliser and containment tests need the
  optional rtree/embree packages, and its surface voxeliser plus ``fill()`` thickens
  thin walls to a whole voxel (which would make them artificially stiff).
* Shells: area-uniform surface samples binned per cell; fraction =
  (surface area in the cell x thickness) / cell volume, capped at 1.

``fill_fractions_reference`` is the slow per-ray, per-triangle version the fast
path is tested against.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from soundstage.errors import GeometryError

#: Default budget of filled cells (about 3 x 1.3 x this many degrees of freedom).
CELL_BUDGET = 3000
#: Rays per cell column edge (s x s rays per column).
RAYS_PER_CELL = 3
#: Cells below this fraction are left out (they carry almost no mass or stiffness).
MIN_FRACTION = 0.02
#: Cells at or above this fraction count as entirely filled.
FULL_FRACTION = 0.999
#: Tiny offsets of the ray lattice so rays never pass exactly through mesh edges or
#: vertices, which are often on the lattice of box-like meshes (values arbitrary).
_JITTER = np.array([1.3e-7, 2.9e-7])


@dataclass
class VoxelGrid:
    """Filled cells of a regular grid in the object's oriented frame.

    A point ``x`` (object frame, metres, shape (..., 3)) has grid coordinates
    ``g = (x - origin) @ axes.T``; cell ``(i, j, k)`` covers
    ``[i, i+1] * spacing[0]`` etc.

    Attributes
    ----------
    origin : ndarray, shape (3,)
    axes : ndarray, shape (3, 3)
        Rows are the grid axes (orthonormal, right-handed) in the object frame.
    spacing : ndarray, shape (3,)
        Cell edge lengths, metres.
    shape : tuple of 3 ints
        Cells per axis.
    cells : ndarray of int, shape (n, 3)
    fraction : ndarray, shape (n,)
        Filled volume fraction of each cell, in (0, 1].
    component : ndarray of int, shape (n,)
        Face-connected part each cell belongs to (0..n_parts-1).
    solid : bool
    full : ndarray of bool, shape (n,)
        Cells entirely inside the material (their element matrices are exact).
    qp_row, qp_local, qp_weight : ndarray, shapes (Q,), (Q, 3), (Q,)
        Quadrature points of the material inside the partly filled cells: row in
        ``cells``, coordinates in the cell scaled to [0, 1], weight (m^3). Only
        present right after ``voxelize`` (not stored in the cache).
    """

    origin: np.ndarray
    axes: np.ndarray
    spacing: np.ndarray
    shape: tuple
    cells: np.ndarray
    fraction: np.ndarray
    component: np.ndarray
    solid: bool
    full: np.ndarray = None
    qp_row: np.ndarray = None
    qp_local: np.ndarray = None
    qp_weight: np.ndarray = None

    @property
    def n_parts(self) -> int:
        return int(self.component.max()) + 1 if len(self.component) else 0

    def to_grid(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=float) - self.origin) @ self.axes.T

    def volume(self) -> float:
        return float(self.fraction.sum() * np.prod(self.spacing))


def oriented_frame(mesh):
    """Axes (rows) of the minimum-volume oriented bounding box, with a PCA fallback.

    Returns
    -------
    axes : ndarray, shape (3, 3), right-handed orthonormal rows
    """
    import trimesh

    try:
        from scipy.spatial import ConvexHull

        # trimesh's box search is quadratic in the hull size, and qhull itself is slow
        # on thousands of co-circular points (a finely tessellated cylinder): a fixed
        # random subset of the vertices and of the hull gives practically the same
        # box in a fraction of the time. (The grid's extent still uses every vertex.)
        rng = np.random.default_rng(0)
        v = np.asarray(mesh.vertices)
        if len(v) > 2000:
            v = v[np.sort(rng.choice(len(v), 2000, replace=False))]
        pts = v[ConvexHull(v, qhull_options="QJ").vertices]
        if len(pts) > 500:
            pts = pts[np.sort(rng.choice(len(pts), 500, replace=False))]
        with warnings.catch_warnings():  # flat point sets: trimesh divides by a zero volume
            warnings.simplefilter("ignore", RuntimeWarning)
            T, _ = trimesh.bounds.oriented_bounds(pts)
        axes = np.asarray(T[:3, :3], dtype=float)
    except Exception:  # qhull fails on flat or degenerate point sets
        v = np.asarray(mesh.vertices) - np.asarray(mesh.vertices).mean(axis=0)
        _, _, vt = np.linalg.svd(v, full_matrices=False)
        axes = vt
    # Snap to the object's own axes when the box is lined up with them (up to
    # rounding), so axis-aligned objects get exactly axis-aligned grids.
    snapped = np.round(axes)
    if np.allclose(axes, snapped, atol=1e-9) and np.allclose(np.abs(np.linalg.det(snapped)), 1):
        axes = snapped
    if np.linalg.det(axes) < 0:
        axes[2] = -axes[2]
    return axes


def _ray_lattice(shape, spacing, s):
    """Ray positions (y, z) in the grid frame: shape (ny*s,), (nz*s,)."""
    ys = (np.arange(shape[1] * s) + 0.5) * spacing[1] / s + _JITTER[0] * spacing[1]
    zs = (np.arange(shape[2] * s) + 0.5) * spacing[2] / s + _JITTER[1] * spacing[2]
    return ys, zs


def _crossings(tri: np.ndarray, ys: np.ndarray, zs: np.ndarray, chunk_pairs: int = 2_000_000):
    """All crossings of x-parallel rays with triangles.

    Parameters
    ----------
    tri : ndarray, shape (T, 3, 3)
        Triangles in grid coordinates.
    ys, zs : ndarray
        Ray lattice coordinates; ray id = iy * len(zs) + iz.

    Returns
    -------
    ray : ndarray of int, shape (c,)
    x : ndarray, shape (c,)
        Crossing position along the ray.
    sign : ndarray of int, shape (c,)
        +1 entering (outward normal against +x), -1 leaving.
    """
    dy = ys[1] - ys[0] if len(ys) > 1 else 1.0
    dz = zs[1] - zs[0] if len(zs) > 1 else 1.0
    y, z = tri[:, :, 1], tri[:, :, 2]
    # Signed doubled area of the projection onto the (y, z) plane: its sign is the
    # sign of the normal's x component for a counter-clockwise (outward) triangle.
    area = (y[:, 1] - y[:, 0]) * (z[:, 2] - z[:, 0]) - (y[:, 2] - y[:, 0]) * (z[:, 1] - z[:, 0])
    keep = area != 0
    tri, y, z, area = tri[keep], y[keep], z[keep], area[keep]
    iy0 = np.clip(np.ceil((y.min(1) - ys[0]) / dy), 0, len(ys)).astype(np.int64)
    iy1 = np.clip(np.floor((y.max(1) - ys[0]) / dy) + 1, 0, len(ys)).astype(np.int64)
    iz0 = np.clip(np.ceil((z.min(1) - zs[0]) / dz), 0, len(zs)).astype(np.int64)
    iz1 = np.clip(np.floor((z.max(1) - zs[0]) / dz) + 1, 0, len(zs)).astype(np.int64)
    ny_t = np.maximum(iy1 - iy0, 0)
    nz_t = np.maximum(iz1 - iz0, 0)
    counts = ny_t * nz_t
    out_r, out_x, out_s = [], [], []
    cum = np.cumsum(counts)
    start = 0
    while start < len(counts):
        base = cum[start - 1] if start else 0
        stop = int(np.searchsorted(cum, base + chunk_pairs, side="right"))
        stop = max(stop, start + 1)
        sl = slice(start, stop)
        c = counts[sl]
        t_id = np.repeat(np.arange(start, stop), c)
        if len(t_id):
            # Local pair index within each triangle's bounding rectangle of rays.
            offs = np.arange(len(t_id)) - np.repeat(np.cumsum(c) - c, c)
            nzt = nz_t[t_id]
            ry = iy0[t_id] + offs // nzt
            rz = iz0[t_id] + offs % nzt
            py, pz = ys[ry], zs[rz]
            yy, zz = y[t_id], z[t_id]
            # Edge functions (barycentric numerators) of the ray point in the projection.
            w0 = (yy[:, 1] - py) * (zz[:, 2] - pz) - (yy[:, 2] - py) * (zz[:, 1] - pz)
            w1 = (yy[:, 2] - py) * (zz[:, 0] - pz) - (yy[:, 0] - py) * (zz[:, 2] - pz)
            w2 = (yy[:, 0] - py) * (zz[:, 1] - pz) - (yy[:, 1] - py) * (zz[:, 0] - pz)
            a = area[t_id]
            inside = ((w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (a > 0)) | ((w0 <= 0) & (w1 <= 0) & (w2 <= 0) & (a < 0))
            w0, w1, w2, a, tt = w0[inside], w1[inside], w2[inside], a[inside], t_id[inside]
            xx = tri[tt, :, 0]
            out_x.append((w0 * xx[:, 0] + w1 * xx[:, 1] + w2 * xx[:, 2]) / a)
            out_r.append(ry[inside] * len(zs) + rz[inside])
            out_s.append(np.where(a > 0, -1, 1))
        start = stop
    if not out_r:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    return np.concatenate(out_r), np.concatenate(out_x), np.concatenate(out_s)


def _inside_intervals(ray, x, sign):
    """Intervals of positive winding number along each ray: (ray, a, b) arrays."""
    order = np.lexsort((x, ray))
    ray, x, sign = ray[order], x[order], sign[order]
    wind = np.cumsum(sign)
    first = np.r_[True, ray[1:] != ray[:-1]]
    # Winding number after each crossing, counted from the start of its own ray.
    start_offset = np.maximum.accumulate(np.where(first, np.arange(len(ray)), 0))
    wind = wind - (wind[start_offset] - sign[start_offset])
    same_next = np.r_[ray[1:] == ray[:-1], False]
    k = np.nonzero(same_next & (wind > 0))[0]
    return ray[k], x[k], x[k + 1]


def fill_fractions(tri_grid: np.ndarray, shape, spacing, s: int = RAYS_PER_CELL, return_points: bool = False):
    """Filled volume fraction of every cell of a solid (vectorised).

    Parameters
    ----------
    tri_grid : ndarray, shape (T, 3, 3)
        Outward-oriented closed surface, in grid coordinates.
    shape : tuple of 3 ints
    spacing : ndarray, shape (3,)
    s : int
        Rays per cell column edge.
    return_points : bool
        Also return quadrature points of the filled region (see below).

    Returns
    -------
    frac : ndarray, shape (nx, ny, nz), values in [0, 1]
    points : tuple (cell, local, weight), only with ``return_points``
        ``cell`` (Q, 3) int cell indices, ``local`` (Q, 3) coordinates in the cell
        scaled to [0, 1], ``weight`` (Q,) volumes in m^3: each ray's inside length in
        each cell gets two Gauss points along the ray (exact for the polynomial
        integrands of the box element), at the ray's position across it.
    """
    nx, ny, nz = shape
    hx = spacing[0]
    ys, zs = _ray_lattice(shape, spacing, s)
    ray, x, sign = _crossings(tri_grid, ys, zs)
    n_rays = len(ys) * len(zs)
    cov = np.zeros((n_rays, nx))
    r = np.zeros(0, np.int64)
    a = b = np.zeros(0)
    if len(ray):
        r, a, b = _inside_intervals(ray, x, sign)
        a = np.clip(a, 0.0, nx * hx)
        b = np.clip(b, 0.0, nx * hx)
        ok = b > a
        r, a, b = r[ok], a[ok], b[ok]
        i0 = np.minimum((a // hx).astype(np.int64), nx - 1)
        i1 = np.minimum((b // hx).astype(np.int64), nx - 1)
        same = i0 == i1
        # Partial first and last cells, whole cells in between (difference array).
        np.add.at(cov, (r[same], i0[same]), b[same] - a[same])
        d = ~same
        np.add.at(cov, (r[d], i0[d]), (i0[d] + 1) * hx - a[d])
        np.add.at(cov, (r[d], i1[d]), b[d] - i1[d] * hx)
        diff = np.zeros((n_rays, nx + 1))
        np.add.at(diff, (r[d], i0[d] + 1), 1.0)
        np.add.at(diff, (r[d], i1[d]), -1.0)
        cov += np.cumsum(diff, axis=1)[:, :nx] * hx
    frac = cov.reshape(ny, s, nz, s, nx).mean(axis=(1, 3)) / hx
    frac = np.clip(np.transpose(frac, (2, 0, 1)), 0.0, 1.0)
    if not return_points:
        return frac
    # Split each inside interval at the cell walls along the ray.
    i0 = np.minimum((a // hx).astype(np.int64), nx - 1)
    i1 = np.minimum((b // hx).astype(np.int64), nx - 1)
    cnt = i1 - i0 + 1
    rep = np.repeat(np.arange(len(r)), cnt)
    ci = i0[rep] + (np.arange(len(rep)) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    lo = np.maximum(a[rep], ci * hx)
    hi = np.minimum(b[rep], (ci + 1) * hx)
    ok = hi > lo
    rep, ci, lo, hi = rep[ok], ci[ok], lo[ok], hi[ok]
    rr = r[rep]
    ry, rz = rr // len(zs), rr % len(zs)
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    g = half / np.sqrt(3.0)
    cell = np.repeat(np.stack([ci, ry // s, rz // s], axis=1), 2, axis=0)
    xl = np.stack([mid - g, mid + g], axis=1).ravel() / hx - cell[:, 0]
    yl = np.repeat((ry % s + 0.5) / s, 2)
    zl = np.repeat((rz % s + 0.5) / s, 2)
    weight = np.repeat(half * spacing[1] * spacing[2] / s**2, 2)
    local = np.clip(np.stack([xl, yl, zl], axis=1), 0.0, 1.0)
    return frac, (cell, local, weight)


def fill_fractions_reference(tri_grid, shape, spacing, s: int = RAYS_PER_CELL) -> np.ndarray:
    """Slow, obviously correct twin of ``fill_fractions``: one ray and one triangle at a time."""
    nx, ny, nz = shape
    hx = spacing[0]
    ys, zs = _ray_lattice(shape, spacing, s)
    frac = np.zeros((nx, ny, nz))
    for iy, py in enumerate(ys):
        for iz, pz in enumerate(zs):
            hits = []
            for t in tri_grid:
                (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = t
                area = (y1 - y0) * (z2 - z0) - (y2 - y0) * (z1 - z0)
                if area == 0:
                    continue
                w0 = (y1 - py) * (z2 - pz) - (y2 - py) * (z1 - pz)
                w1 = (y2 - py) * (z0 - pz) - (y0 - py) * (z2 - pz)
                w2 = (y0 - py) * (z1 - pz) - (y1 - py) * (z0 - pz)
                if (area > 0 and min(w0, w1, w2) >= 0) or (area < 0 and max(w0, w1, w2) <= 0):
                    hits.append(((w0 * x0 + w1 * x1 + w2 * x2) / area, -1 if area > 0 else 1))
            hits.sort()
            wind = 0
            for (xa, sa), (xb, _) in zip(hits[:-1], hits[1:]):
                wind += sa
                if wind <= 0:
                    continue
                for i in range(nx):
                    lo, hi = max(xa, i * hx), min(xb, (i + 1) * hx)
                    if hi > lo:
                        frac[i, iy // s, iz // s] += (hi - lo) / hx / s**2
    return np.clip(frac, 0.0, 1.0)


def shell_fractions(mesh, to_grid, shape, spacing, thickness, seed: int = 0, return_points: bool = False):
    """Volume fraction of a thin shell: surface area per cell times thickness / cell volume.

    Parameters
    ----------
    mesh : trimesh.Trimesh
    to_grid : callable
        Object frame -> grid coordinates, (n, 3) -> (n, 3).
    shape, spacing : grid size and cell edges
    thickness : float, metres
    return_points : bool
        Also return quadrature points (as ``fill_fractions``): area-uniform surface
        samples, each split into two Gauss points at +-t/(2 sqrt 3) along the normal,
        which integrates the shell's bending (through-thickness z^2) exactly.

    Returns
    -------
    frac : ndarray, shape (nx, ny, nz)
    points : tuple (cell, local, weight), only with ``return_points``
    """
    import trimesh

    cell_area = min(spacing[0] * spacing[1], spacing[1] * spacing[2], spacing[0] * spacing[2])
    n = int(np.clip(16 * mesh.area / cell_area, 20_000, 400_000))
    pts, face = trimesh.sample.sample_surface(mesh, n, seed=seed)
    shape_a = np.array(shape)
    idx = np.clip(np.floor(to_grid(pts) / spacing).astype(np.int64), 0, shape_a - 1)
    counts = np.zeros(shape)
    np.add.at(counts, (idx[:, 0], idx[:, 1], idx[:, 2]), 1.0)
    area = counts * (mesh.area / n)
    frac = np.clip(area * thickness / np.prod(spacing), 0.0, 1.0)
    if not return_points:
        return frac
    nrm = np.asarray(mesh.face_normals)[face]
    off = thickness / (2 * np.sqrt(3.0))
    q = np.concatenate([pts - off * nrm, pts + off * nrm])
    g = to_grid(q) / spacing
    cell = np.clip(np.floor(g).astype(np.int64), 0, shape_a - 1)
    local = np.clip(g - cell, 0.0, 1.0)
    weight = np.full(len(q), mesh.area / n * thickness / 2)
    return frac, (cell, local, weight)


def solid_fill(tri_grid: np.ndarray, shape, spacing, s: int = RAYS_PER_CELL):
    """Fractions and quadrature points of a solid, from rays along all three axes.

    Rays give exact inside lengths along their own direction but sample the two
    other directions only at ``s`` positions per cell, so a thin wall running
    parallel to the rays can be hit by a single ray, whose points then have no
    spread across the wall and no bending stiffness (a spurious hinge). Each partly
    filled cell therefore takes its points from the direction whose rays cross its
    material in the shortest pieces (the one most across the wall); the fractions
    are the mean of the three directions.

    Returns
    -------
    frac : ndarray, shape (nx, ny, nz)
    points : tuple (cell, local, weight), as ``fill_fractions``
    """
    shape = np.asarray(shape)
    spacing = np.asarray(spacing, dtype=float)
    fracs, pts, rel_len = [], [], []
    for d in range(3):
        perm = [(d + i) % 3 for i in range(3)]
        inv = np.argsort(perm)
        f, (c, lc, w) = fill_fractions(tri_grid[:, :, perm], tuple(shape[perm]), spacing[perm], s,
                                       return_points=True)
        fracs.append(np.transpose(f, inv))
        c, lc = c[:, inv], lc[:, inv]
        pts.append((c, lc, w))
        # Mean piece length along the ray relative to the cell's edge, per cell.
        flat = np.ravel_multi_index(c.T, tuple(shape))
        n = np.bincount(flat, minlength=int(np.prod(shape)))
        piece = 2 * w / (spacing[perm[1]] * spacing[perm[2]] / s**2) / spacing[d]
        tot = np.bincount(flat, weights=piece, minlength=int(np.prod(shape)))
        rel_len.append(np.where(n > 0, tot / np.maximum(n, 1) * 2, np.inf))  # two points per piece
    frac = np.mean(fracs, axis=0)
    best = np.argmin(np.stack(rel_len), axis=0)  # per flat cell
    cells, locs, ws = [], [], []
    for d in range(3):
        c, lc, w = pts[d]
        keep = best[np.ravel_multi_index(c.T, tuple(shape))] == d
        cells.append(c[keep])
        locs.append(lc[keep])
        ws.append(w[keep])
    return frac, (np.concatenate(cells), np.concatenate(locs), np.concatenate(ws))


def _grid_for(pitch, lo, hi, min_extent):
    ext = np.maximum(hi - lo, min_extent)
    n = np.maximum(1, np.round(ext / pitch)).astype(np.int64)
    n = np.minimum(n, 400)  # bounds the ray lattice on very elongated objects
    return n, ext / n


def voxelize(prepared, budget: int = CELL_BUDGET, name: str = "mesh") -> VoxelGrid:
    """Fill a prepared mesh with about ``budget`` cells (at most 1.25 x budget).

    Parameters
    ----------
    prepared : soundstage.impact.mesh.PreparedMesh
    budget : int
        Target number of filled cells.
    name : str
        Object name for messages.

    Returns
    -------
    VoxelGrid

    Raises
    ------
    GeometryError
        When no cell is filled (a degenerate or inside-out surface).
    """
    mesh = prepared.mesh
    axes = getattr(prepared, "axes", None)
    if axes is None:
        axes = prepared.axes = oriented_frame(mesh)  # kept: coarse and fine grids share it
    v = np.asarray(mesh.vertices) @ axes.T
    lo, hi = v.min(axis=0), v.max(axis=0)
    t = prepared.shell_thickness
    # Axes thinner than the shell thickness (a flat object) get the thickness,
    # centred on the surface.
    mid = (lo + hi) / 2
    thin = (hi - lo) < t
    lo = np.where(thin, mid - t / 2, lo)
    hi = np.where(thin, mid + t / 2, hi)
    origin = lo @ axes  # back to the object frame (axes orthonormal)
    tri = (np.asarray(mesh.triangles) - origin) @ axes.T
    vol = float(mesh.volume) if prepared.solid else float(mesh.area) * t
    pitch = (vol / budget) ** (1.0 / 3.0)
    frac = None
    for _ in range(8):
        shape, spacing = _grid_for(pitch, lo, hi, t)
        if prepared.solid:
            frac = fill_fractions(tri, tuple(shape), spacing)
        else:
            frac = shell_fractions(mesh, lambda x: (x - origin) @ axes.T, tuple(shape), spacing, t)
        count = int((frac >= MIN_FRACTION).sum())
        if count == 0:
            pitch *= 0.5
            continue
        if count <= 1.25 * budget and (count >= 0.5 * budget or np.all(shape == 1)):
            break
        if count > 1.25 * budget:
            pitch *= (count / budget) ** (1.0 / 3.0) * 1.02
        else:
            # Too few cells; thin axes pinned at one cell make this less than cubic.
            pitch *= (count / budget) ** (1.0 / 3.0)
            if np.all(np.round((hi - lo) / pitch) <= 1):
                break
    if prepared.solid:
        frac, (qc, ql, qw) = solid_fill(tri, tuple(shape), spacing)
    else:
        frac, (qc, ql, qw) = shell_fractions(mesh, lambda x: (x - origin) @ axes.T, tuple(shape), spacing, t,
                                             return_points=True)
    occ = frac >= MIN_FRACTION
    if not occ.any():
        raise GeometryError(f"{name}: voxelisation filled no cell (degenerate or inside-out surface)")
    # Face-connected parts; specks under 1 % of the largest part are dropped, they
    # would only add spurious rigid or very high modes.
    labels, n_lab = ndimage.label(occ)
    sizes = np.bincount(labels.ravel())[1:]
    keep_lab = np.nonzero(sizes >= max(1, 0.01 * sizes.max()))[0] + 1
    relabel = np.full(n_lab + 1, -1)
    relabel[keep_lab] = np.arange(len(keep_lab))
    comp_grid = relabel[labels]
    cells = np.argwhere(comp_grid >= 0)
    fraction = frac[cells[:, 0], cells[:, 1], cells[:, 2]]
    full = fraction >= FULL_FRACTION
    row_of = np.full(tuple(shape), -1, dtype=np.int64)
    row_of[cells[:, 0], cells[:, 1], cells[:, 2]] = np.arange(len(cells))
    qrow = row_of[qc[:, 0], qc[:, 1], qc[:, 2]]
    keep = qrow >= 0
    keep[keep] &= ~full[qrow[keep]]
    return VoxelGrid(
        origin=origin,
        axes=axes,
        spacing=np.asarray(spacing, dtype=float),
        shape=tuple(int(x) for x in shape),
        cells=cells,
        fraction=fraction,
        component=comp_grid[cells[:, 0], cells[:, 1], cells[:, 2]],
        solid=prepared.solid,
        full=full,
        qp_row=qrow[keep],
        qp_local=ql[keep],
        qp_weight=qw[keep],
    )
