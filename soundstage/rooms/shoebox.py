"""Axis-aligned rectangular room ("shoebox") with the image-source method.

Image positions along one axis of length L (coordinates relative to the room's
minimum corner, source at s) are ``2 n L + s`` and ``2 n L - s`` for integer n.
The first kind hits each of the two walls |n| times, the second hits the lower
wall |n - 1| times and the upper wall |n| times. An image in 3-D combines one
per axis; its order is the total number of wall hits. This is the classic
Allen & Berkley (1979) construction, the same one pyroomacoustics uses.

Reflection factors: ``sqrt(1 - absorption)`` per band and hit (amplitude);
scattering is not modelled in the shoebox (its energy stays in the specular
image field, as in pyroomacoustics' image-source model).
"""

from __future__ import annotations

import numpy as np

from soundstage.rooms.base import ImageSet, Room

# Images enumerated for the late-energy histogram; past this the decay is
# extrapolated (T30 needs the first 35 dB only).
_MAX_COMBOS = 1_500_000


def _axis_images(s: np.ndarray, L: float, n_max: int):
    """Image coordinates and wall-hit counts along one axis.

    Parameters
    ----------
    s : ndarray, shape (F,)
        Source coordinate relative to the lower wall, per frame.
    L : float
        Room length along the axis.
    n_max : int

    Returns
    -------
    coords : ndarray, shape (F, J)
    lo, hi : ndarray of int, shape (J,)
        Hits on the lower and upper wall.
    """
    n = np.arange(-n_max, n_max + 1)
    coords = np.concatenate([2 * n[None, :] * L + s[:, None], 2 * n[None, :] * L - s[:, None]], axis=1)
    lo = np.concatenate([np.abs(n), np.abs(n - 1)])
    hi = np.concatenate([np.abs(n), np.abs(n)])
    return coords, lo, hi


class ShoeBox(Room):
    """Rectangular room aligned with the world axes.

    Parameters
    ----------
    lo, hi : ndarray, shape (3,)
        Minimum and maximum corners, metres.
    materials : dict
        ``{"floor": Material, "ceiling": Material, "walls": Material}``.
    """

    kind = "shoebox"

    def __init__(self, lo, hi, materials):
        self.lo = np.asarray(lo, dtype=float)
        self.hi = np.asarray(hi, dtype=float)
        self.size = self.hi - self.lo
        self.materials = materials
        # Reflection amplitude per (wall group, band); groups: walls, floor, ceiling.
        self._beta = np.stack([np.sqrt(1.0 - np.asarray(materials[k].absorption, dtype=float))
                               for k in ("walls", "floor", "ceiling")])
        self.notes: list[str] = []

    # ------------------------------------------------------------------ geometry
    def contains(self, points):
        p = np.asarray(points, dtype=float)
        return np.all((p > self.lo) & (p < self.hi), axis=-1)

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    def _groups(self, lo_x, hi_x, lo_y, hi_y, lo_z, hi_z):
        """Wall-hit counts per group (walls, floor, ceiling), shape (..., 3)."""
        return np.stack([lo_x + hi_x + lo_y + hi_y, lo_z, hi_z], axis=-1)

    # ------------------------------------------------------------------ early images
    def early_images(self, source, listener, max_order):
        src = np.atleast_2d(np.asarray(source, dtype=float)) - self.lo
        F = src.shape[0]
        axes = [_axis_images(src[:, a], self.size[a], max_order) for a in range(3)]
        # All combinations with 1 <= total order <= max_order.
        ox = axes[0][1] + axes[0][2]
        oy = axes[1][1] + axes[1][2]
        oz = axes[2][1] + axes[2][2]
        ix, iy, iz = np.meshgrid(np.arange(len(ox)), np.arange(len(oy)), np.arange(len(oz)), indexing="ij")
        ix, iy, iz = ix.ravel(), iy.ravel(), iz.ravel()
        order = ox[ix] + oy[iy] + oz[iz]
        keep = (order >= 1) & (order <= max_order)
        ix, iy, iz, order = ix[keep], iy[keep], iz[keep], order[keep]
        pos = np.stack([axes[0][0][:, ix], axes[1][0][:, iy], axes[2][0][:, iz]], axis=-1) + self.lo
        counts = self._groups(axes[0][1][ix], axes[0][2][ix], axes[1][1][iy], axes[1][2][iy],
                              axes[2][1][iz], axes[2][2][iz])  # (I, 3)
        gains = np.exp(counts @ np.log(np.maximum(self._beta, 1e-300)))  # (I, B)
        gains = np.broadcast_to(gains, (F,) + gains.shape).copy()
        valid = np.ones((F, len(order)), dtype=bool)
        return ImageSet(pos, gains, order, valid)

    # ------------------------------------------------------------------ late energy
    def _histogram(self, src, lis, air, c, bin_width, t_max):
        n_bins = int(np.ceil(t_max / bin_width))
        R = c * t_max
        axes = []
        for a in range(3):
            L = self.size[a]
            n_max = int(np.ceil(R / (2 * L))) + 1
            coords, lo, hi = _axis_images(np.array([src[a] - self.lo[a]]), L, n_max)
            d = coords[0] + self.lo[a] - lis[a]
            keep = np.abs(d) <= R
            axes.append((d[keep], lo[keep], hi[keep]))
        logb2 = 2.0 * np.log(np.maximum(self._beta, 1e-300))  # (3, B) energy per hit
        hist = np.zeros((len(air), n_bins))
        dy, dz = axes[1][0], axes[2][0]
        dyz2 = dy[:, None] ** 2 + dz[None, :] ** 2  # (Jy, Jz)
        walls_yz = np.broadcast_to((axes[1][1] + axes[1][2])[:, None], dyz2.shape)
        cz_lo = np.broadcast_to(axes[2][1][None, :], dyz2.shape)
        cz_hi = np.broadcast_to(axes[2][2][None, :], dyz2.shape)
        for dx, lx, hx in zip(*axes[0]):
            d2 = dx * dx + dyz2
            m = d2 <= R * R
            if not m.any():
                continue
            d = np.sqrt(d2[m])
            walls = lx + hx + walls_yz[m]
            cnt = np.stack([walls, cz_lo[m], cz_hi[m]], axis=-1).astype(float)
            loge = cnt @ logb2 - 2.0 * np.log(np.maximum(d, 1e-9))[:, None] - d[:, None] * air[None, :]
            b = np.minimum((d / c / bin_width).astype(np.int64), n_bins - 1)
            e = np.exp(loge)
            for k in range(len(air)):
                hist[k] += np.bincount(b, weights=e[:, k], minlength=n_bins)
        return hist

    def energy_histogram(self, source, listener, *, air, speed_of_sound, bin_width, t_max, rng=None):
        """Image-source energy per band and time bin, every order included.

        The cost grows with the cube of ``t_max``; images beyond about 1.5
        million are not enumerated: the histogram past that radius continues
        each band's exponential decay fitted on the last third of what was
        computed (recorded in ``notes``).
        """
        src = np.asarray(source, dtype=float)
        lis = np.asarray(listener, dtype=float)
        air = np.asarray(air, dtype=float)
        c = float(speed_of_sound)
        R_cap = (3.0 * _MAX_COMBOS * 8 * self.volume / (4.0 * np.pi * 8)) ** (1.0 / 3.0)
        t_done = min(t_max, R_cap / c)
        hist = self._histogram(src, lis, air, c, bin_width, t_done)
        n_total = int(np.ceil(t_max / bin_width))
        if hist.shape[1] < n_total:
            hist = _extend_decay(hist, n_total)
            self.notes.append(
                f"late tail beyond {t_done:.2f} s extrapolated from the image-source decay")
        return hist


def _extend_decay(hist: np.ndarray, n_total: int) -> np.ndarray:
    """Continue each band's exponential decay fitted on the last third."""
    B, n = hist.shape
    out = np.zeros((B, n_total))
    out[:, :n] = hist
    t = np.arange(n)
    a = (2 * n) // 3
    # fit on a smoothed log-energy so empty bins do not break the fit
    k = 9
    smooth = np.array([np.convolve(h, np.ones(k) / k, mode="same") for h in hist])
    for b in range(B):
        y = np.log(np.maximum(smooth[b, a:], 1e-300))
        slope, icpt = np.polyfit(t[a:], y, 1)
        slope = min(slope, -1e-6)
        tt = np.arange(n, n_total)
        out[b, n:] = np.exp(icpt + slope * tt)
    return out
