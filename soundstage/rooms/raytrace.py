"""Vectorised ray and segment queries against triangle soups, and a stochastic ray tracer.

Everything here works on plain numpy arrays in metres (Blender's world frame):

* ``moller_trumbore``: ray/segment against triangle for paired arrays
  (one triangle per query), two-sided.
* ``TriangleClusters``: triangles grouped into small spatial clusters with
  bounding boxes, so a query only tests the triangles of the clusters its
  segment passes (a flat, one-level bounding-volume hierarchy). Answers
  ``nearest`` (first hit along each ray) and ``any_hit`` (is a segment
  blocked). Written by hand because trimesh's ray queries need rtree or
  embree, which this project does not ship; the clusters are enough for
  rooms of a few hundred to a few thousand triangles.
* ``nearest_reference`` / ``any_hit_reference``: the slow, obviously correct
  twins (every ray against every triangle) that the tests hold the fast
  paths to.
* ``winding_number``: generalised winding number of points with respect to
  an oriented triangle soup (exactly +-1 or 0 for closed meshes, graceful
  for meshes with holes).
* ``trace_energy``: stochastic acoustic ray tracing into an energy
  histogram (see its docstring for the estimator and units).
"""

from __future__ import annotations

import numpy as np

#: Relative tolerance on barycentric coordinates: a hit exactly on a shared
#: edge counts for both triangles, so rays never slip between them.
BARY_TOL = 1e-9
#: Work arrays are processed in blocks of about this many elements.
_BLOCK = 1 << 19


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Column-wise cross product: faster than np.cross for (n, 3) arrays.
    out = np.empty_like(a)
    out[:, 0] = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    out[:, 1] = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    out[:, 2] = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return out


def _mt_soa(o, d, a, e1, e2, tri_scale, dir_scale, tol):
    """Moeller-Trumbore on component arrays: every argument of shape (3, n) or (n,).

    Structure-of-arrays layout keeps every numpy operation contiguous, which
    is several times faster than working on the columns of (n, 3) arrays.
    """
    px = d[1] * e2[2] - d[2] * e2[1]
    py = d[2] * e2[0] - d[0] * e2[2]
    pz = d[0] * e2[1] - d[1] * e2[0]
    det = e1[0] * px + e1[1] * py + e1[2] * pz
    # Parallel (or nearly) rays never hit; the scale makes the test unit-free.
    ok = np.abs(det) > 1e-12 * np.sqrt(tri_scale * dir_scale)
    inv = 1.0 / np.where(ok, det, 1.0)
    sx, sy, sz = o[0] - a[0], o[1] - a[1], o[2] - a[2]
    u = (sx * px + sy * py + sz * pz) * inv
    qx = sy * e1[2] - sz * e1[1]
    qy = sz * e1[0] - sx * e1[2]
    qz = sx * e1[1] - sy * e1[0]
    v = (d[0] * qx + d[1] * qy + d[2] * qz) * inv
    t = (e2[0] * qx + e2[1] * qy + e2[2] * qz) * inv
    hit = ok & (u >= -tol) & (v >= -tol) & (u + v <= 1.0 + tol)
    return np.where(hit, t, np.inf), hit


def moller_trumbore(
    origin: np.ndarray, direction: np.ndarray, a: np.ndarray, e1: np.ndarray, e2: np.ndarray, tol: float = BARY_TOL
) -> tuple[np.ndarray, np.ndarray]:
    """Ray/triangle intersection (Moeller & Trumbore 1997) for paired arrays, two-sided.

    Parameters
    ----------
    origin, direction : ndarray, shape (n, 3)
        Ray origins (m) and directions (any length; ``t`` is in units of it).
    a, e1, e2 : ndarray, shape (n, 3)
        Triangle corner ``A`` and edges ``B - A``, ``C - A`` (m), one triangle per ray.
    tol : float
        Barycentric tolerance: the triangle is grown by this fraction.

    Returns
    -------
    t : ndarray, shape (n,)
        Ray parameter of the intersection with the triangle's plane
        (``origin + t * direction``); ``inf`` where there is no hit.
    hit : ndarray of bool, shape (n,)
        Whether the ray's line crosses the triangle (any sign of ``t``).
    """
    o, d, a, e1, e2 = (np.ascontiguousarray(np.asarray(x, dtype=np.float64).T) for x in (origin, direction, a, e1, e2))
    tri_scale = (e1 * e1).sum(0) * (e2 * e2).sum(0)
    return _mt_soa(o, d, a, e1, e2, tri_scale, (d * d).sum(0), tol)


class TriangleClusters:
    """Triangles grouped into spatial clusters with axis-aligned bounding boxes.

    Clusters come from recursive median splits of the triangle centroids along
    the longest box axis until at most ``leaf`` triangles remain.

    Parameters
    ----------
    tri : ndarray, shape (T, 3, 3)
        Triangle corners, metres.
    ids : ndarray of int, shape (T,), optional
        Identifier reported for each triangle (default ``arange(T)``).
    leaf : int
        Largest cluster size.
    """

    def __init__(self, tri: np.ndarray, ids: np.ndarray | None = None, leaf: int = 16):
        tri = np.asarray(tri, dtype=np.float64).reshape(-1, 3, 3)
        ids = np.arange(len(tri)) if ids is None else np.asarray(ids, dtype=np.int64)
        self.n = len(tri)
        # Large triangles (room walls) get a cluster each: mixed with small
        # ones they would stretch a cluster's box over the whole room.
        ext = tri.max(axis=1) - tri.min(axis=1)
        scene = (tri.reshape(-1, 3).max(axis=0) - tri.reshape(-1, 3).min(axis=0)) if len(tri) else np.ones(3)
        large = np.flatnonzero(np.linalg.norm(ext, axis=1) > 0.4 * np.linalg.norm(scene))
        small = np.setdiff1d(np.arange(len(tri)), large)
        order, bounds = self._split(tri[small], leaf)
        order = np.r_[large, small[order]].astype(np.int64)
        bounds = list(range(len(large))) + [len(large) + b for b in bounds]
        self.n_large = len(large)
        tri = tri[order]
        self.ids = ids[order]
        # Corner and edges as (3, T) component arrays (see _mt_soa).
        self.a = np.ascontiguousarray(tri[:, 0].T)
        self.e1 = np.ascontiguousarray((tri[:, 1] - tri[:, 0]).T)
        self.e2 = np.ascontiguousarray((tri[:, 2] - tri[:, 0]).T)
        self.scale = (self.e1**2).sum(0) * (self.e2**2).sum(0)
        self.ptr = np.asarray(bounds, dtype=np.int64)  # cluster k holds [ptr[k], ptr[k+1])
        self.sizes = np.diff(self.ptr)
        n_clusters = len(self.sizes)
        lo = np.minimum.reduceat(tri.min(axis=1), self.ptr[:-1]) if n_clusters else np.zeros((0, 3))
        hi = np.maximum.reduceat(tri.max(axis=1), self.ptr[:-1]) if n_clusters else np.zeros((0, 3))
        # Pad the boxes a little so hits on a box face are never lost to rounding.
        pad = 1e-9 * (1.0 + np.abs(np.concatenate([lo, hi])).max()) if n_clusters else 0.0
        self.lo, self.hi = lo - pad, hi + pad

    @staticmethod
    def _split(tri: np.ndarray, leaf: int) -> tuple[np.ndarray, list[int]]:
        cen = tri.mean(axis=1)
        out: list[np.ndarray] = []
        stack = [np.arange(len(tri))]
        while stack:
            idx = stack.pop()
            if len(idx) <= leaf:
                if len(idx):
                    out.append(idx)
                continue
            c = cen[idx]
            axis = int(np.argmax(c.max(axis=0) - c.min(axis=0)))
            srt = idx[np.argsort(c[:, axis], kind="stable")]
            half = len(srt) // 2
            stack += [srt[half:], srt[:half]]
        order = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum([len(o) for o in out])]).tolist()
        return order, bounds

    def _pairs(self, origin, direction, t_lo, t_hi, clusters: slice = slice(None)):
        """Yield (query index, triangle slot) pairs whose cluster box the segment touches.

        Only the clusters in ``clusters`` are considered. Pairs come sorted by
        query index, in blocks of bounded size.
        """
        lo_box, hi_box = self.lo[clusters], self.hi[clusters]
        first_cluster = range(len(self.sizes))[clusters].start if len(self.sizes) else 0
        n_cl = len(lo_box)
        if n_cl == 0 or len(origin) == 0:
            return
        step = max(1, _BLOCK // n_cl)
        # Replace zero direction components so the slab test never forms 0 * inf.
        safe = np.where(np.abs(direction) < 1e-300, 1e-300, direction)
        inv = 1.0 / safe
        for s0 in range(0, len(origin), step):
            o, iv = origin[s0 : s0 + step], inv[s0 : s0 + step]
            # Slab test one axis at a time on (rays, clusters) arrays (reducing
            # over a trailing axis of length 3 is much slower in numpy).
            tmin = np.broadcast_to(t_lo[s0 : s0 + step, None], (len(o), n_cl))
            tmax = np.broadcast_to(t_hi[s0 : s0 + step, None], (len(o), n_cl))
            for k in range(3):
                t1 = (lo_box[None, :, k] - o[:, k, None]) * iv[:, k, None]
                t2 = (hi_box[None, :, k] - o[:, k, None]) * iv[:, k, None]
                tmin = np.maximum(tmin, np.minimum(t1, t2))
                tmax = np.minimum(tmax, np.maximum(t1, t2))
            touch = tmax >= tmin
            qi, ci = np.nonzero(touch)
            if len(qi) == 0:
                continue
            ci = ci + first_cluster
            counts = self.sizes[ci]
            ends = np.cumsum(counts)
            # Split the expansion so no block holds many more than _BLOCK pairs.
            cuts = np.searchsorted(ends, np.arange(_BLOCK, ends[-1], _BLOCK), side="left")
            for j0, j1 in zip(np.r_[0, cuts], np.r_[cuts, len(qi)]):
                if j1 <= j0:
                    continue
                c = counts[j0:j1]
                rep = np.repeat(np.arange(j0, j1), c)
                first = np.cumsum(c) - c
                slot = self.ptr[ci[rep]] + (np.arange(len(rep)) - np.repeat(first, c))
                yield qi[rep] + s0, slot

    def nearest(
        self, origin: np.ndarray, direction: np.ndarray, t_min: float | np.ndarray, t_max: float | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """First triangle hit along each ray within ``(t_min, t_max)``.

        Parameters
        ----------
        origin, direction : ndarray, shape (n, 3)
            Ray origins (m) and directions (``t`` is measured in units of each direction).
        t_min, t_max : float or ndarray, shape (n,)

        Returns
        -------
        t : ndarray, shape (n,)
            Ray parameter of the first hit, ``inf`` for none.
        tri : ndarray of int, shape (n,)
            Id of the triangle hit (see ``ids``), -1 for none.
        """
        n = len(origin)
        t_lo = np.broadcast_to(np.asarray(t_min, dtype=np.float64), (n,))
        t_hi = np.broadcast_to(np.asarray(t_max, dtype=np.float64), (n,))
        best = np.full(n, np.inf)
        best_slot = np.full(n, -1, dtype=np.int64)
        o_t, d_t = np.ascontiguousarray(origin.T), np.ascontiguousarray(direction.T)
        d_scale = (d_t * d_t).sum(0)
        # Large triangles first (usually the room's walls), every ray against
        # every one of them; their nearest hit then shortens the segments
        # tested against the small clusters.
        nl = self.n_large
        step = max(1, _BLOCK // max(nl, 1))
        for s0 in range(0, n if nl else 0, step):
            sl = slice(s0, s0 + step)
            t, hit = _mt_soa(o_t[:, sl, None], d_t[:, sl, None], self.a[:, None, :nl], self.e1[:, None, :nl],
                             self.e2[:, None, :nl], self.scale[None, :nl], d_scale[sl, None], BARY_TOL)
            t = np.where(hit & (t > t_lo[sl, None]) & (t < t_hi[sl, None]), t, np.inf)
            k = np.argmin(t, axis=1)
            best[sl] = t[np.arange(len(k)), k]
            best_slot[sl] = np.where(np.isfinite(best[sl]), k, -1)
        for qi, slot in self._pairs(origin, direction, t_lo, np.minimum(t_hi, best), slice(nl, None)):
            t, hit = _mt_soa(o_t[:, qi], d_t[:, qi], self.a[:, slot], self.e1[:, slot], self.e2[:, slot],
                             self.scale[slot], d_scale[qi], BARY_TOL)
            t = np.where(hit & (t > t_lo[qi]) & (t < t_hi[qi]), t, np.inf)
            np.minimum.at(best, qi, t)
            won = (t == best[qi]) & np.isfinite(t)
            best_slot[qi[won]] = slot[won]
        tri = np.where(best_slot >= 0, self.ids[np.maximum(best_slot, 0)], -1)
        return best, tri

    def any_hit(self, p0: np.ndarray, p1: np.ndarray, margin: float = 1e-6) -> np.ndarray:
        """Whether each segment ``p0 -> p1`` crosses any triangle, ignoring its ends.

        Parameters
        ----------
        p0, p1 : ndarray, shape (n, 3)
            Segment ends, metres.
        margin : float
            Hits closer than this many metres to either end are ignored (the
            ends of image-source path legs lie on the reflecting surfaces).

        Returns
        -------
        ndarray of bool, shape (n,)
        """
        d = p1 - p0
        length = np.linalg.norm(d, axis=1)
        lo = margin / np.maximum(length, 1e-300)
        hi = 1.0 - lo
        out = np.zeros(len(p0), dtype=bool)
        o_t, d_t = np.ascontiguousarray(p0.T), np.ascontiguousarray(d.T)
        d_scale = (d_t * d_t).sum(0)
        for qi, slot in self._pairs(p0, d, lo, hi):
            t, hit = _mt_soa(o_t[:, qi], d_t[:, qi], self.a[:, slot], self.e1[:, slot], self.e2[:, slot],
                             self.scale[slot], d_scale[qi], BARY_TOL)
            blocked = hit & (t > lo[qi]) & (t < hi[qi])
            out[qi[blocked]] = True
        return out


def nearest_reference(origin, direction, tri, t_min, t_max):
    """Slow twin of ``TriangleClusters.nearest``: every ray against every triangle.

    Parameters
    ----------
    origin, direction : ndarray, shape (n, 3)
    tri : ndarray, shape (T, 3, 3)
    t_min, t_max : float

    Returns
    -------
    t : ndarray, shape (n,)
    tri : ndarray of int, shape (n,)
    """
    n = len(origin)
    best = np.full(n, np.inf)
    idx = np.full(n, -1, dtype=np.int64)
    for k in range(len(tri)):
        a = np.broadcast_to(tri[k, 0], (n, 3))
        t, hit = moller_trumbore(origin, direction, a, tri[k, 1] - a, tri[k, 2] - a)
        t = np.where(hit & (t > t_min) & (t < t_max), t, np.inf)
        upd = t < best
        best[upd], idx[upd] = t[upd], k
    return best, idx


def any_hit_reference(p0, p1, tri, margin: float = 1e-6):
    """Slow twin of ``TriangleClusters.any_hit``: every segment against every triangle.

    Parameters
    ----------
    p0, p1 : ndarray, shape (n, 3)
    tri : ndarray, shape (T, 3, 3)

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    d = p1 - p0
    lo = margin / np.maximum(np.linalg.norm(d, axis=1), 1e-300)
    out = np.zeros(len(p0), dtype=bool)
    for k in range(len(tri)):
        a = np.broadcast_to(tri[k, 0], p0.shape)
        t, hit = moller_trumbore(p0, d, a, tri[k, 1] - a, tri[k, 2] - a)
        out |= hit & (t > lo) & (t < 1.0 - lo)
    return out


def winding_number(points: np.ndarray, tri: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Generalised winding number of points with respect to oriented triangles.

    Sum of the signed solid angles the triangles subtend (Van Oosterom &
    Strackee 1983), divided by 4 pi. For a closed mesh with outward normals it
    is 1 inside and 0 outside; holes make it fractional instead of wrong, and
    unlike ray parity it has no special cases for rays grazing edges.

    Parameters
    ----------
    points : ndarray, shape (n, 3)
    tri : ndarray, shape (T, 3, 3)
        Corners in counter-clockwise order seen from the side the normal points to.
    groups : ndarray of int, shape (T,), optional
        Sorted group label of each triangle (0..G-1, every label present):
        return one winding number per group instead of the total.

    Returns
    -------
    ndarray, shape (n,) or (n, G) with ``groups``
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    n_groups = 1 if groups is None else int(groups[-1]) + 1 if len(groups) else 0
    out = np.zeros((len(points), n_groups))
    if len(tri) and len(points):
        starts = np.zeros(1, dtype=np.int64) if groups is None else np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        step = max(1, _BLOCK // len(tri))
        for s0 in range(0, len(points), step):
            p = points[s0 : s0 + step, None, :]
            a, b, c = tri[None, :, 0] - p, tri[None, :, 1] - p, tri[None, :, 2] - p
            la, lb, lc = (np.sqrt(np.einsum("ntk,ntk->nt", x, x)) for x in (a, b, c))
            bc = np.stack(
                [b[..., 1] * c[..., 2] - b[..., 2] * c[..., 1],
                 b[..., 2] * c[..., 0] - b[..., 0] * c[..., 2],
                 b[..., 0] * c[..., 1] - b[..., 1] * c[..., 0]],
                axis=-1,
            )
            num = np.einsum("ntk,ntk->nt", a, bc)
            den = (
                la * lb * lc
                + np.einsum("ntk,ntk->nt", a, b) * lc
                + np.einsum("ntk,ntk->nt", b, c) * la
                + np.einsum("ntk,ntk->nt", c, a) * lb
            )
            omega = 2.0 * np.arctan2(num, den)
            out[s0 : s0 + step] = np.add.reduceat(omega, starts, axis=1) / (4.0 * np.pi)
    return out[:, 0] if groups is None else out


def fibonacci_directions(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors spread evenly over the sphere, randomly rotated.

    A Fibonacci lattice is stratified (every region of the sphere gets a
    number of rays proportional to its area, within about one ray), so the
    direct sound and the first reflections are estimated with far less noise
    than with independent uniform draws; the random rotation keeps each ray's
    direction uniformly distributed, so the estimate stays unbiased.

    Returns
    -------
    ndarray, shape (n, 3)
    """
    from scipy.spatial.transform import Rotation

    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (1.0 + np.sqrt(5.0)) * k
    r = np.sqrt(np.maximum(0.0, 1.0 - z * z))
    d = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    return Rotation.random(random_state=rng).apply(d)


def _lambert(normal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cosine-weighted random directions about each unit normal (n, 3)."""
    n = len(normal)
    u1, u2 = rng.random(n), rng.random(n)
    r, phi = np.sqrt(u1), 2.0 * np.pi * u2
    local = np.stack([r * np.cos(phi), r * np.sin(phi), np.sqrt(1.0 - u1)], axis=1)
    # Orthonormal basis (t, b, n) per normal; pick the helper axis least aligned with n.
    helper = np.where(np.abs(normal[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    t = _cross(helper, normal)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    b = _cross(normal, t)
    return local[:, :1] * t + local[:, 1:2] * b + local[:, 2:] * normal


def trace_energy(
    clusters: TriangleClusters,
    normals: np.ndarray,
    absorption: np.ndarray,
    scattering: np.ndarray,
    source: np.ndarray,
    listener: np.ndarray,
    *,
    air: np.ndarray,
    speed_of_sound: float,
    bin_width: float,
    t_max: float,
    n_rays: int,
    receiver_radius: float,
    rng: np.random.Generator,
    stop_db: float = 80.0,
    exclude_order: int = -1,
) -> np.ndarray:
    """Energy histogram at a receiver sphere by stochastic ray tracing.

    ``n_rays`` rays leave the source in evenly spread directions (see
    ``fibonacci_directions``), each carrying energy ``4 pi / n_rays`` in every
    band. At a surface a ray keeps ``1 - absorption`` of its energy per band
    and leaves either specularly or, with the surface's scattering
    probability, in a Lambert (cosine) direction; the per-band scattering
    coefficients are honoured by choosing "scatter" with the band-mean
    probability and reweighting each band by ``s_b / p`` or
    ``(1 - s_b) / (1 - p)`` (unbiased in every band). Surfaces are
    two-sided. A ray whose straight leg passes within ``receiver_radius`` of
    the listener deposits ``energy * exp(-air * L) / (pi R**2)`` at time
    ``L / c``, with ``L`` the path length to the point of closest approach. For the
    direct sound this estimates ``1 / r**2`` (the fraction of rays through the
    sphere's cross-section is ``pi R**2 / (4 pi r**2)``), which is the unit of
    ``soundstage.rooms.base``. Rays stop when they leave the model, travel
    ``c * t_max`` or fall ``stop_db`` below their start in every band.
    With ``exclude_order = K >= 0`` a ray deposits nothing while its path is
    still purely specular with at most K reflections: those paths are exactly
    the direct sound and the image sources up to order K (their expected
    energy is the image sources' ``g**2 / r**2``, since a specular bounce keeps
    ``(1 - a) (1 - s)`` on average), so a renderer that plays them explicitly
    needs to subtract nothing.

    Parameters
    ----------
    clusters : TriangleClusters
        All surfaces; ``clusters.ids`` index the per-triangle arrays below.
    normals : ndarray, shape (T, 3)
        Unit triangle normals (either side; only the line matters).
    absorption, scattering : ndarray, shape (T, B)
        Energy coefficients per band.
    source, listener : ndarray, shape (3,)
        Metres.
    air : ndarray, shape (B,)
        Air energy attenuation, 1/m.
    speed_of_sound, bin_width, t_max : float
        m/s, s, s.
    n_rays : int
    receiver_radius : float
        Metres; should be well below the source-listener distance.
    rng : numpy Generator
    stop_db : float
    exclude_order : int
        -1 (default) records every path; see above.

    Returns
    -------
    ndarray, shape (B, ceil(t_max / bin_width))
    """
    n_bands = absorption.shape[1]
    n_bins = int(np.ceil(t_max / bin_width - 1e-9))
    hist = np.zeros((n_bands, n_bins))
    length_max = speed_of_sound * t_max
    e0 = 4.0 * np.pi / n_rays
    e_stop = e0 * 10.0 ** (-stop_db / 10.0)
    deposit = 1.0 / (np.pi * receiver_radius**2)
    r2 = receiver_radius**2

    o = np.repeat(np.asarray(source, dtype=np.float64)[None], n_rays, axis=0)
    d = fibonacci_directions(n_rays, rng)
    energy = np.full((n_rays, n_bands), e0)
    path = np.zeros(n_rays)
    # Reflections so far, or a large number once the path has scattered.
    order = np.zeros(n_rays, dtype=np.int64)
    # Ignore hits this close to a ray's origin: it starts on the surface it just left.
    eps = 1e-7 * (1.0 + float(np.abs(clusters.a).max(initial=1.0)))
    while len(o):
        remaining = length_max - path
        t_hit, tri = clusters.nearest(o, d, eps, remaining)
        leg = np.minimum(t_hit, remaining)

        # Receiver sphere: closest approach of this leg to the listener.
        w = listener[None, :] - o
        tc = _dot(w, d)
        miss2 = _dot(w, w) - tc * tc
        through = (miss2 < r2) & (tc >= 0.0) & (tc < leg) & (order > exclude_order)
        if through.any():
            dist = path[through] + tc[through]
            b = (dist / speed_of_sound / bin_width).astype(np.int64)
            inside = b < n_bins
            dist, b = dist[inside], b[inside]
            e = energy[through][inside] * np.exp(-air[None, :] * dist[:, None]) * deposit
            for k in range(n_bands):
                hist[k] += np.bincount(b, weights=e[:, k], minlength=n_bins)

        # Reflect the rays that hit something within their remaining length.
        alive = np.isfinite(t_hit)
        o, d, energy, path, t_hit, tri = o[alive], d[alive], energy[alive], path[alive], t_hit[alive], tri[alive]
        order = order[alive] + 1
        o = o + t_hit[:, None] * d
        path = path + t_hit
        energy = energy * (1.0 - absorption[tri])
        nrm = normals[tri]
        side = np.where(_dot(d, nrm)[:, None] < 0.0, nrm, -nrm)  # the normal on the side the ray came from
        spec = d - 2.0 * _dot(d, side)[:, None] * side
        s = scattering[tri]
        p = s.mean(axis=1)
        scatter = rng.random(len(o)) < p
        if scatter.any():
            spec[scatter] = _lambert(side[scatter], rng)
            order[scatter] = np.iinfo(np.int64).max // 2
        weight = np.where(
            scatter[:, None],
            s / np.where(p > 0, p, 1.0)[:, None],
            (1.0 - s) / np.where(p < 1, 1.0 - p, 1.0)[:, None],
        )
        energy = energy * weight
        d = spec
        keep = (path < length_max) & ((energy * np.exp(-air[None, :] * path[:, None])).max(axis=1) > e_stop)
        o, d, energy, path, order = o[keep], d[keep], energy[keep], path[keep], order[keep]
    return hist
