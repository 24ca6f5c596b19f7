"""Ray casting against Gaussian splats (impact clicks, source placement).

A ray meets gaussian ``i`` (centre ``mu``, rotation ``R``, standard deviations
``s``) where its Mahalanobis distance is smallest. With ``A = diag(1/s) R^T``,
``o' = A (o - mu)`` and ``d' = A d``, that is at ``t* = -(o'.d') / (d'.d')``
with squared distance ``m2 = o'.o' - (o'.d')**2 / (d'.d')``. The gaussian
counts if ``m2 <= k_sigma**2`` (the ray crosses its k-sigma ellipsoid), and
then contributes ``alpha = opacity * exp(-m2 / 2)``, as in ray-traced 3DGS
renderers that evaluate each particle at its maximum response along the ray.
Sorting the contributions by ``t*`` and compositing front to back, the ray
hits the surface where the accumulated opacity first reaches
``opacity_threshold`` (0.5: the median-depth surface). The hit gaussian gives
the point (``o + t* d``), the index and the normal (its shortest axis, turned
to face the ray's origin).

``SplatRaycaster`` finds candidates with a uniform grid over the gaussians'
k-sigma bounding boxes and walks the grid cells along the ray in order,
stopping once the hit is certain. ``cast_rays_reference`` tests every
gaussian: slow, obviously correct, and the tests hold the grid to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundstage.splats.model import Splats, SplatError

#: Contributions below this are skipped, as the 3DGS rasteriser does.
MIN_ALPHA = 1.0 / 255.0


@dataclass
class RayHits:
    """Results of casting R rays.

    Attributes
    ----------
    hit : ndarray of bool, shape (R,)
    distance : ndarray, shape (R,)
        Ray parameter of the hit along the *unit* direction (inf for misses).
    point : ndarray, shape (R, 3)
        Hit points (NaN for misses).
    normal : ndarray, shape (R, 3)
        Unit surface normals facing the ray origins (NaN for misses).
    index : ndarray of int64, shape (R,)
        Index of the gaussian hit (-1 for misses).
    """

    hit: np.ndarray
    distance: np.ndarray
    point: np.ndarray
    normal: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.hit)

    def first(self) -> dict | None:
        """The first ray's hit as plain floats, or None if it missed."""
        if not self.hit[0]:
            return None
        return {"point": self.point[0].tolist(), "normal": self.normal[0].tolist(),
                "distance": float(self.distance[0]), "index": int(self.index[0])}


class _Gaussians:
    """Per-gaussian quantities the intersection test needs (opaque enough ones)."""

    def __init__(self, splats: Splats, min_opacity: float):
        keep = np.flatnonzero((splats.opacities >= max(min_opacity, MIN_ALPHA))
                              & np.isfinite(splats.positions).all(axis=1)
                              & (splats.scales > 0).all(axis=1))
        self.ids = keep
        self.mu = splats.positions[keep].astype(np.float64)
        rot = splats.subset(keep).rotation_matrices()
        s = splats.scales[keep].astype(np.float64)
        # A = diag(1/s) R^T maps world offsets to the gaussian's unit sphere.
        self.A = (np.transpose(rot, (0, 2, 1)) / s[:, :, None]).astype(np.float32)
        self.opacity = splats.opacities[keep].astype(np.float64)
        k = np.argmin(s, axis=1)
        self.normal = rot[np.arange(len(keep)), :, k]
        self.rot = rot
        self.s = s

    def evaluate(self, cand: np.ndarray, o: np.ndarray, d: np.ndarray, k_sigma: float):
        """(t*, alpha) of candidates; alpha = 0 where the ray misses the ellipsoid."""
        A = self.A[cand].astype(np.float64)
        op = np.einsum("nij,nj->ni", A, o - self.mu[cand])
        dp = np.einsum("nij,j->ni", A, d)
        a = np.einsum("ni,ni->n", dp, dp)
        b = np.einsum("ni,ni->n", op, dp)
        c = np.einsum("ni,ni->n", op, op)
        t = -b / a
        m2 = np.maximum(c - b * b / a, 0.0)
        alpha = np.where(m2 <= k_sigma ** 2, self.opacity[cand] * np.exp(-0.5 * m2), 0.0)
        alpha[alpha < MIN_ALPHA] = 0.0
        return t, alpha


def _composite(t, alpha, idx, t_min, t_max, threshold):
    """Front-to-back compositing; the first contribution reaching ``threshold``.

    Returns (position in the arrays, t) or (None, None). Ties in t are broken
    by gaussian index so the fast path and the reference agree exactly.
    """
    ok = (alpha > 0) & (t >= t_min) & (t <= t_max)
    if not ok.any():
        return None, None
    sel = np.flatnonzero(ok)
    order = sel[np.lexsort((idx[sel], t[sel]))]
    transmittance = np.cumprod(1.0 - alpha[order])
    reached = np.flatnonzero(1.0 - transmittance >= threshold)
    if len(reached) == 0:
        return None, None
    j = order[reached[0]]
    return j, t[j]


def _prepare_rays(origins, directions):
    o = np.atleast_2d(np.asarray(origins, np.float64))
    d = np.atleast_2d(np.asarray(directions, np.float64))
    if o.shape[-1] != 3 or d.shape[-1] != 3:
        raise SplatError("rays: origins and directions must have 3 coordinates")
    o, d = np.broadcast_arrays(o, d)
    norm = np.linalg.norm(d, axis=1)
    if not np.all(np.isfinite(o)) or not np.all(np.isfinite(d)) or np.any(norm == 0):
        raise SplatError("rays: origins and directions must be finite and directions non-zero")
    return o, d / norm[:, None]


def _empty_hits(r):
    return RayHits(np.zeros(r, bool), np.full(r, np.inf), np.full((r, 3), np.nan), np.full((r, 3), np.nan),
                   np.full(r, -1, np.int64))


def _fill(hits, i, g, local, t, o, d):
    n = g.normal[local]
    if n @ d > 0:
        n = -n
    hits.hit[i] = True
    hits.distance[i] = t
    hits.point[i] = o + t * d
    hits.normal[i] = n
    hits.index[i] = g.ids[local]


def cast_rays_reference(splats: Splats, origins, directions, *, k_sigma: float = 3.0,
                        min_opacity: float = MIN_ALPHA, opacity_threshold: float = 0.5,
                        t_min: float = 0.0, t_max: float = np.inf) -> RayHits:
    """Cast rays by testing every gaussian (no index). The reference for ``SplatRaycaster``.

    Parameters
    ----------
    splats : Splats
    origins, directions : array_like, shape (R, 3) or (3,)
        Directions need not be unit length.
    k_sigma : float
        Gaussians count within this many standard deviations.
    min_opacity : float
        Gaussians below this opacity are ignored.
    opacity_threshold : float
        Accumulated opacity at which the surface is declared hit.
    t_min, t_max : float
        Range along the unit ray.
    """
    o, d = _prepare_rays(origins, directions)
    g = _Gaussians(splats, min_opacity)
    hits = _empty_hits(len(o))
    everything = np.arange(len(g.ids))
    for i in range(len(o)):
        t, alpha = g.evaluate(everything, o[i], d[i], k_sigma)
        j, tj = _composite(t, alpha, g.ids, t_min, t_max, opacity_threshold)
        if j is not None:
            _fill(hits, i, g, j, tj, o[i], d[i])
    return hits


class SplatRaycaster:
    """A uniform-grid index over gaussians for fast ray casts.

    Parameters
    ----------
    splats : Splats
    k_sigma : float
        Extent of each gaussian (its bounding box is that of the k-sigma ellipsoid).
    min_opacity : float
        Gaussians below this opacity are left out of the index.
    cell_size : float, optional
        Grid spacing; default about the median gaussian box size, limited to
        at most 1024 cells along an axis.
    max_cells_per_gaussian : int
        Gaussians overlapping more cells are kept in a short list tested by every ray.
    """

    def __init__(self, splats: Splats, *, k_sigma: float = 3.0, min_opacity: float = MIN_ALPHA,
                 cell_size: float | None = None, max_cells_per_gaussian: int = 64):
        self.k_sigma = float(k_sigma)
        g = _Gaussians(splats, min_opacity)
        if len(g.ids) == 0:
            raise SplatError(f"{splats.source or 'splats'}: no gaussian is opaque enough to cast rays against")
        self.g = g
        half = self.k_sigma * np.sqrt(np.einsum("nij,nj->ni", g.rot ** 2, g.s ** 2))
        lo = (g.mu - half).min(axis=0)
        hi = (g.mu + half).max(axis=0)
        span = np.maximum(hi - lo, 1e-9)
        if cell_size is None:
            cell_size = float(np.median(2 * half.max(axis=1)))
        cell_size = max(float(cell_size), float(span.max()) / 1024.0, 1e-9)
        self.cell = cell_size
        self.lo = lo
        self.dims = np.maximum(np.ceil(span / cell_size).astype(np.int64), 1)
        self.hi = lo + self.dims * cell_size
        c0 = np.clip(np.floor((g.mu - half - lo) / cell_size).astype(np.int64), 0, self.dims - 1)
        c1 = np.clip(np.floor((g.mu + half - lo) / cell_size).astype(np.int64), 0, self.dims - 1)
        n_span = c1 - c0 + 1
        count = np.prod(n_span, axis=1)
        big = count > max_cells_per_gaussian
        self.big = np.flatnonzero(big)
        # Bounding spheres of the big ones' ellipsoids, to cull them per ray cheaply.
        self._big_mu = g.mu[self.big]
        self._big_r2 = (self.k_sigma * g.s[self.big].max(axis=1)) ** 2
        small = np.flatnonzero(~big)
        cnt = count[small]
        total = int(cnt.sum())
        owner = np.repeat(small, cnt)
        start = np.repeat(np.cumsum(cnt) - cnt, cnt)
        local = np.arange(total, dtype=np.int64) - start
        nx, ny = n_span[owner, 0], n_span[owner, 1]
        ix = c0[owner, 0] + local % nx
        iy = c0[owner, 1] + (local // nx) % ny
        iz = c0[owner, 2] + local // (nx * ny)
        keys = self._key(ix, iy, iz)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        self.entries = owner[order].astype(np.int64)
        self.cell_keys, first = np.unique(keys, return_index=True)
        self.cell_start = np.append(first, len(keys))
        self._seen = np.zeros(len(g.ids), bool)

    def _key(self, ix, iy, iz):
        return (ix * self.dims[1] + iy) * self.dims[2] + iz

    def __len__(self) -> int:
        return len(self.g.ids)

    def _cells_along(self, o, d, t0, t1):
        """Grid cells the segment o + t d, t in [t0, t1], passes through, in order, with entry t."""
        ts = [np.array([t0, t1])]
        for ax in range(3):
            if d[ax] != 0:
                a = (o[ax] + t0 * d[ax] - self.lo[ax]) / self.cell
                b = (o[ax] + t1 * d[ax] - self.lo[ax]) / self.cell
                k0, k1 = int(np.ceil(min(a, b))), int(np.floor(max(a, b)))
                if k1 >= k0:
                    planes = self.lo[ax] + np.arange(k0, k1 + 1) * self.cell
                    ts.append((planes - o[ax]) / d[ax])
        t = np.unique(np.clip(np.concatenate(ts), t0, t1))
        if len(t) < 2:
            t = np.array([t0, t1])
        mid = 0.5 * (t[:-1] + t[1:])
        p = o + mid[:, None] * d
        c = np.clip(np.floor((p - self.lo) / self.cell).astype(np.int64), 0, self.dims - 1)
        keys = self._key(c[:, 0], c[:, 1], c[:, 2])
        return keys, t[:-1], t[1:]

    def cast(self, origins, directions, *, opacity_threshold: float = 0.5, t_min: float = 0.0,
             t_max: float = np.inf, chunk_cells: int = 32) -> RayHits:
        """Cast rays; same arguments and results as ``cast_rays_reference``.

        Parameters
        ----------
        origins, directions : array_like, shape (R, 3) or (3,)
        opacity_threshold : float
        t_min, t_max : float
        chunk_cells : int
            Cells gathered before checking whether the hit is already certain.
        """
        o_all, d_all = _prepare_rays(origins, directions)
        hits = _empty_hits(len(o_all))
        for i in range(len(o_all)):
            o, d = o_all[i], d_all[i]
            with np.errstate(divide="ignore", invalid="ignore"):
                ta = (self.lo - o) / d
                tb = (self.hi - o) / d
            tlo = np.where(d != 0, np.minimum(ta, tb), -np.inf)
            thi = np.where(d != 0, np.maximum(ta, tb), np.inf)
            inside_slab = (d != 0) | ((o >= self.lo) & (o <= self.hi))
            if not inside_slab.all():
                continue
            t0 = max(float(tlo.max()), t_min)
            t1 = min(float(thi.min()), t_max)
            if not t1 >= t0:
                continue
            keys, _, t_exit = self._cells_along(o, d, t0, t1)
            pos = np.searchsorted(self.cell_keys, keys)
            pos = np.minimum(pos, len(self.cell_keys) - 1)
            present = self.cell_keys[pos] == keys
            t_acc, a_acc, c_acc = [], [], []
            seen = self._seen
            touched = []
            if len(self.big):
                # A ray that misses a gaussian's bounding sphere misses its
                # ellipsoid (alpha 0), so culling changes no result.
                v = self._big_mu - o
                tc = v @ d
                near = self.big[np.einsum("ij,ij->i", v, v) - tc * tc <= self._big_r2]
                if len(near):
                    seen[near] = True
                    touched.append(near)
                    t, a = self.g.evaluate(near, o, d, self.k_sigma)
                    t_acc.append(t)
                    a_acc.append(a)
                    c_acc.append(near)
            result = None
            for s in range(0, len(keys), chunk_cells):
                sl = slice(s, s + chunk_cells)
                cells = pos[sl][present[sl]]
                if len(cells):
                    cand = np.concatenate([self.entries[self.cell_start[c]:self.cell_start[c + 1]] for c in cells])
                    cand = np.unique(cand)
                    cand = cand[~seen[cand]]
                    if len(cand):
                        seen[cand] = True
                        touched.append(cand)
                        t, a = self.g.evaluate(cand, o, d, self.k_sigma)
                        t_acc.append(t)
                        a_acc.append(a)
                        c_acc.append(cand)
                if not t_acc:
                    continue
                t_end = float(t_exit[min(s + chunk_cells, len(keys)) - 1])
                t = np.concatenate(t_acc)
                a = np.concatenate(a_acc)
                c = np.concatenate(c_acc)
                t_acc, a_acc, c_acc = [t], [a], [c]
                # Every gaussian with t* <= t_end has been gathered (its t*
                # point lies in its box, in a cell already walked), so a hit
                # found before t_end is final.
                j, tj = _composite(t, a, self.g.ids[c], t_min, min(t_end, t_max), opacity_threshold)
                if j is not None:
                    result = (c[j], tj)
                    break
            for arr in touched:
                seen[arr] = False
            if result is not None:
                _fill(hits, i, self.g, result[0], result[1], o, d)
        return hits

    def pick(self, origin, direction, **kwargs) -> dict | None:
        """One ray: ``{"point", "normal", "distance", "index"}`` or None if it misses."""
        return self.cast(origin, direction, **kwargs).first()
