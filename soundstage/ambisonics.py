"""Spherical harmonics (AmbiX: ACN order, SN3D) and the decoders to every output.

Directions are unit vectors in the listener frame: x ahead, y to the left, z up.
Azimuth is counter-clockwise from ahead (left is +90 degrees).

Formats
-------
* ``ambix``: the SH signals themselves, ACN/SN3D, orders 1-3.
* ``binaural``: a virtual loudspeaker array rendered through the HRTF
  (mode-matching decoder, as in PseudoBinaural's SH -> speakers -> HRIR mapping).
* ``5.1``: L, R, C, LFE, Ls, Rs at ITU-R BS.775 azimuths (30, 0, 110 degrees);
  the direct sound is panned by pairwise amplitude panning (VBAP), SH content is
  decoded with AllRAD (dense virtual array, then VBAP onto the real speakers).
* ``stereo``: L, R at +-30 degrees, same method as 5.1.
"""

from __future__ import annotations

import numpy as np

FORMATS = ("binaural", "stereo", "ambix", "5.1")

#: Channel labels per format (ambix labels are ACN numbers).
CHANNELS_51 = ("L", "R", "C", "LFE", "Ls", "Rs")
#: ITU-R BS.775 azimuths of the full-range 5.1 loudspeakers, degrees (left positive).
AZIMUTHS_51 = {"L": 30.0, "R": -30.0, "C": 0.0, "Ls": 110.0, "Rs": -110.0}
AZIMUTHS_STEREO = {"L": 30.0, "R": -30.0}


def n_sh(order: int) -> int:
    """Number of SH channels of an ambisonic order."""
    return (order + 1) ** 2


def sh_orders(order: int) -> np.ndarray:
    """Degree l of each ACN channel, shape ((order+1)**2,)."""
    return np.concatenate([[l] * (2 * l + 1) for l in range(order + 1)]).astype(int)


def sh_sn3d(directions: np.ndarray, order: int) -> np.ndarray:
    """Real spherical harmonics, ACN order, SN3D normalisation (AmbiX), up to order 3.

    Closed-form polynomials in the Cartesian components; no Condon-Shortley phase.

    Parameters
    ----------
    directions : ndarray, shape (..., 3)
        Unit vectors (x ahead, y left, z up).
    order : int
        0 to 3.

    Returns
    -------
    ndarray, shape (..., (order+1)**2)
    """
    if not 0 <= order <= 3:
        raise ValueError(f"ambisonic order must be 0..3, got {order}")
    d = np.asarray(directions, dtype=np.float64)
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    out = [np.ones_like(x)]
    if order >= 1:
        out += [y, z, x]
    if order >= 2:
        s3 = np.sqrt(3.0)
        out += [s3 * x * y, s3 * y * z, 0.5 * (3 * z * z - 1), s3 * x * z, 0.5 * s3 * (x * x - y * y)]
    if order >= 3:
        a, b, c = np.sqrt(5.0 / 8.0), np.sqrt(15.0), np.sqrt(3.0 / 8.0)
        out += [
            a * y * (3 * x * x - y * y),
            b * x * y * z,
            c * y * (5 * z * z - 1),
            0.5 * z * (5 * z * z - 3),
            c * x * (5 * z * z - 1),
            0.5 * b * z * (x * x - y * y),
            a * x * (x * x - 3 * y * y),
        ]
    return np.stack(out, axis=-1)


def fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors (golden-angle spiral), shape (n, 3)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (1.0 + np.sqrt(5.0)) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def max_re_weights(order: int) -> np.ndarray:
    """Per-channel max-rE weights (energy-normalised), shape ((order+1)**2,).

    Uses the usual approximation g_l = P_l(cos(137.9 deg / (N + 1.51))).
    """
    from scipy.special import eval_legendre

    theta = np.deg2rad(137.9) / (order + 1.51)
    g = np.array([eval_legendre(l, np.cos(theta)) for l in range(order + 1)])
    gl = g[sh_orders(order)]
    # keep the total energy of a diffuse field: sum (2l+1) g_l^2 == sum (2l+1)
    ls = np.arange(order + 1)
    scale = np.sqrt(np.sum(2 * ls + 1) / np.sum((2 * ls + 1) * g**2))
    return gl * scale


def sampling_decoder(directions: np.ndarray, order: int, max_re: bool = True) -> np.ndarray:
    """Decoder from SN3D signals to a dense, nearly uniform virtual array.

    Speaker feed ``g_v = (1/V) sum_c (2l+1) Y_c(u_v) a_c``, which keeps the
    pressure of a plane wave (the feeds sum to the W channel).

    Returns
    -------
    ndarray, shape (V, (order+1)**2)
    """
    Y = sh_sn3d(directions, order)
    w = (2 * sh_orders(order) + 1).astype(float)
    if max_re:
        w = w * max_re_weights(order)
    return Y * w[None, :] / len(directions)


def vbap_horizontal(directions: np.ndarray, azimuths_deg: dict[str, float]) -> np.ndarray:
    """Pairwise amplitude panning on the horizontal circle (power normalised).

    Elevation is ignored (directions are projected onto the horizontal plane); a
    direction straight up or down is shared equally by all speakers.

    Parameters
    ----------
    directions : ndarray, shape (n, 3)
    azimuths_deg : dict
        Speaker name -> azimuth in degrees (left positive), at least two.

    Returns
    -------
    ndarray, shape (n, len(azimuths_deg))
        Gains in the order of ``azimuths_deg``.
    """
    names = list(azimuths_deg)
    az = np.deg2rad(np.array([azimuths_deg[k] for k in names]))
    order = np.argsort(np.mod(az, 2 * np.pi))
    az_sorted = np.mod(az[order], 2 * np.pi)
    d = np.asarray(directions, dtype=float)
    horiz = np.hypot(d[:, 0], d[:, 1])
    phi = np.mod(np.arctan2(d[:, 1], d[:, 0]), 2 * np.pi)
    n, S = len(d), len(names)
    gains_sorted = np.zeros((n, S))
    # index of the speaker at or below phi (cyclically)
    j = np.searchsorted(az_sorted, phi, side="right") - 1
    j = np.mod(j, S)
    k = np.mod(j + 1, S)
    a0 = az_sorted[j]
    a1 = az_sorted[k]
    span = np.mod(a1 - a0, 2 * np.pi)
    span = np.where(span == 0, 2 * np.pi, span)
    off = np.mod(phi - a0, 2 * np.pi)
    # Solve the 2x2 VBAP system in closed form: g0*e(a0) + g1*e(a1) = e(phi).
    s = np.sin(span)
    safe = np.where(np.abs(s) > 1e-9, s, 1.0)
    g0 = np.sin(span - off) / safe
    g1 = np.sin(off) / safe
    # A gap of 180 degrees or more (stereo's rear) cannot enclose the direction
    # with positive gains: pan by the angle fraction instead (continuous, positive).
    wide = span > np.pi - 1e-9
    frac = off / span
    g0 = np.where(wide, np.cos(0.5 * np.pi * frac), g0)
    g1 = np.where(wide, np.sin(0.5 * np.pi * frac), g1)
    g0 = np.clip(g0, 0, None)
    g1 = np.clip(g1, 0, None)
    norm = np.sqrt(g0**2 + g1**2)
    norm = np.where(norm > 0, norm, 1)
    rows = np.arange(n)
    gains_sorted[rows, j] += g0 / norm
    gains_sorted[rows, k] += g1 / norm
    # Blend toward an equal share as the direction approaches the vertical.
    equal = np.full(S, 1.0 / np.sqrt(S))
    gains_sorted = gains_sorted * horiz[:, None] + equal[None, :] * (1 - horiz[:, None])
    gains = np.zeros_like(gains_sorted)
    gains[:, order] = gains_sorted
    return gains


def stereo_pan(directions: np.ndarray) -> np.ndarray:
    """Gains (n, 2) for L, R at +-30 degrees.

    Rear directions are folded to the front (a sound behind-left is panned
    left) and anything wider than the speakers is clamped to one speaker, as
    a panner on a mixing desk would.
    """
    d = np.asarray(directions, dtype=float)
    az = np.arctan2(d[:, 1], np.abs(d[:, 0]))
    az = np.clip(az, -np.pi / 6, np.pi / 6)
    horiz = np.hypot(d[:, 0], d[:, 1])
    folded = np.stack([np.cos(az) * horiz, np.sin(az) * horiz, d[:, 2]], axis=-1)
    return vbap_horizontal(folded, AZIMUTHS_STEREO)


def _pan(directions: np.ndarray, layout: dict[str, float]) -> np.ndarray:
    if layout is AZIMUTHS_STEREO:
        return stereo_pan(directions)
    return vbap_horizontal(directions, layout)


class Decoder:
    """Turns directions (direct sound) and SH signals (reflections, late) into channels.

    Attributes
    ----------
    format : str
    n_channels : int
    sh_order : int
        Order of the SH intermediate used for reflections and the late tail.
    """

    def __init__(self, fmt: str, sh_order: int = 3, ambisonic_order: int = 1, hrtf=None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        self.format = fmt
        self.hrtf = hrtf
        if fmt == "ambix":
            self.sh_order = ambisonic_order
            self.n_channels = n_sh(ambisonic_order)
        else:
            self.sh_order = sh_order
            self.n_channels = {"binaural": 2, "stereo": 2, "5.1": 6}[fmt]
        if fmt in ("5.1", "stereo"):
            layout = AZIMUTHS_51 if fmt == "5.1" else AZIMUTHS_STEREO
            virt = fibonacci_sphere(240)
            allrad = _pan(virt, layout).T @ sampling_decoder(virt, self.sh_order)
            # Normalise so a plane wave decodes with the same total power as the
            # direct path's VBAP (unit power), averaged over directions.
            probe = fibonacci_sphere(500)
            p = np.sum((sh_sn3d(probe, self.sh_order) @ allrad.T) ** 2, axis=1).mean()
            allrad = allrad / np.sqrt(p)
            if fmt == "5.1":
                names = list(layout)
                rows = {n: allrad[i] for i, n in enumerate(names)}
                mat = np.zeros((6, n_sh(self.sh_order)))
                for i, ch in enumerate(CHANNELS_51):
                    if ch != "LFE":
                        mat[i] = rows[ch]
                self.sh_matrix = mat
                self.layout = layout
            else:
                self.sh_matrix = allrad  # rows L, R
                self.layout = layout

    # -- direct sound -------------------------------------------------------------
    def direct_gains(self, directions: np.ndarray) -> np.ndarray:
        """Channel gains of a plane wave from each direction (not for binaural).

        Returns
        -------
        ndarray, shape (n, n_channels)
        """
        if self.format == "ambix":
            return sh_sn3d(directions, self.sh_order)
        g = _pan(directions, self.layout)
        if self.format == "5.1":
            out = np.zeros((len(directions), 6))
            names = list(self.layout)
            for i, ch in enumerate(CHANNELS_51):
                if ch != "LFE":
                    out[:, i] = g[:, names.index(ch)]
            return out
        return g

    # -- SH content -----------------------------------------------------------------
    def sh_gains(self, directions: np.ndarray) -> np.ndarray:
        """Gains from a direction to the channels that reflections are built in.

        For loudspeaker formats the decoder matrix is folded in (channels are the
        speakers); for ambix and binaural they are the SH channels.

        Returns
        -------
        ndarray, shape (n, C_intermediate)
        """
        Y = sh_sn3d(directions, self.sh_order)
        if self.format in ("5.1", "stereo"):
            return Y @ self.sh_matrix.T
        return Y

    def binaural_sh_filters(self, n_virtual: int = 50) -> np.ndarray:
        """Time-domain SH-to-ear filters through a virtual loudspeaker array.

        Mode-matching decoder onto a nearly uniform virtual array, each virtual
        speaker rendered with its interpolated HRIR (onset delays put back).

        Returns
        -------
        filters : ndarray, shape (2, (sh_order+1)**2, L)
            Filter from each SH channel to each ear. Time zero of a plane wave
            is at sample ``self.binaural_latency``.
        """
        hrtf = self.hrtf
        virt = fibonacci_sphere(n_virtual)
        hr, delays = hrtf.interpolate(virt)  # (V, 2, L), (V, 2)
        fs = hrtf.sample_rate
        base = int(np.ceil(np.max(np.abs(delays)) * fs)) + 2
        shift = base + delays * fs  # samples, >= 2
        L = hr.shape[-1] + 2 * base + 2
        n = 1 << int(np.ceil(np.log2(2 * L)))
        f = np.fft.rfftfreq(n)
        H = np.fft.rfft(hr, n=n, axis=-1) * np.exp(-2j * np.pi * f[None, None, :] * shift[..., None])
        full = np.fft.irfft(H, n=n, axis=-1)[..., :L]  # (V, 2, L)
        Y = sh_sn3d(virt, self.sh_order)  # (V, C)
        P = np.linalg.pinv(Y.T)  # (V, C): speaker feeds from SN3D signals
        filt = np.einsum("vel,vc->ecl", full, P)
        self.binaural_latency = base + hrtf.lead
        return filt.astype(np.float32)
