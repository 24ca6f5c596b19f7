"""Signal-processing primitives shared by the renderers.

* ``tv_convolve``: time-varying FIR filtering with complementary crossfades.
* ``fractional_read`` / ``fractional_read_reference``: reading a signal at
  continuously moving fractional positions (the delay line of the direct path).
* ``band_masks``: octave-band split of a spectrum that adds up to unity power.

Every fast path here has a slow, obviously correct twin (``*_reference``) that
the tests hold it to.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft as sfft
from scipy.signal import windows

from soundstage.materials import BANDS


def _fft_threads() -> int:
    try:
        return int(os.environ.get("SOUNDSTAGE_FFT_THREADS", "-1"))
    except ValueError:
        return -1


#: Threads of the batched FFTs (-1: every CPU). Dask workers run with 1, so a
#: worker is one core's work; the results do not depend on it (each transform
#: is computed whole by one thread).
FFT_THREADS = _fft_threads()

#: Taps of the windowed-sinc interpolator used for fractional delays.
SINC_TAPS = 16
#: Fractional phases tabulated for the interpolator (linear interpolation between them).
SINC_PHASES = 512
_KAISER_BETA = 7.0


def _sinc_kernel(frac: np.ndarray) -> np.ndarray:
    """Kaiser-windowed sinc weights for reading at ``i0 + frac``.

    Parameters
    ----------
    frac : ndarray, shape (n,)
        Fractional part of the read position, in [0, 1).

    Returns
    -------
    ndarray, shape (n, SINC_TAPS)
        Weights for samples ``i0 - SINC_TAPS//2 + 1 + k``, k = 0..SINC_TAPS-1.
    """
    half = SINC_TAPS // 2
    k = np.arange(SINC_TAPS) - (half - 1)  # sample offsets relative to i0
    t = k[None, :] - frac[:, None]  # distance of each tap from the read point
    w = np.i0(_KAISER_BETA * np.sqrt(np.clip(1.0 - (t / half) ** 2, 0.0, None))) / np.i0(_KAISER_BETA)
    return np.sinc(t) * w


_TABLE = _sinc_kernel(np.linspace(0.0, 1.0, SINC_PHASES + 1)).astype(np.float32)


def fractional_read(x: np.ndarray, pos: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Read ``x`` at fractional sample positions with a windowed-sinc interpolator.

    Positions outside ``x`` read zeros. Uses a tabulated kernel (``SINC_PHASES``
    phases, linearly interpolated), which is what makes it fast; see
    ``fractional_read_reference`` for the direct formula.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Signal.
    pos : ndarray, shape (m,)
        Read positions in samples of ``x`` (float64 for precision).

    Returns
    -------
    ndarray of float32, shape (m,)
    """
    x = np.asarray(x, dtype=np.float32)
    half = SINC_TAPS // 2
    # Pad so every tap index is valid; padded samples are zeros.
    pad = 2 * half + 1
    xp = np.concatenate([np.zeros(pad, np.float32), x, np.zeros(pad, np.float32)])
    out = np.empty(len(pos), dtype=np.float32)
    offs = np.arange(SINC_TAPS) - (half - 1) + pad
    for a in range(0, len(pos), chunk):
        p = pos[a : a + chunk]
        # Every tap of a position this far out reads zeros; clip it somewhere
        # harmless and zero the result.
        outside = (p < -half) | (p > len(x) + half)
        p = np.where(outside, 0.0, p)
        i0 = np.floor(p).astype(np.int64)
        frac = (p - i0) * SINC_PHASES
        q = np.minimum(frac.astype(np.int64), SINC_PHASES - 1)
        r = (frac - q).astype(np.float32)[:, None]
        kern = _TABLE[q] * (1.0 - r) + _TABLE[q + 1] * r
        vals = np.einsum("ij,ij->i", xp[i0[:, None] + offs[None, :]], kern)
        out[a : a + chunk] = np.where(outside, 0.0, vals)
    return out


def fractional_read_reference(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Slow reference of ``fractional_read``: the kernel evaluated exactly per sample."""
    x = np.asarray(x, dtype=np.float64)
    half = SINC_TAPS // 2
    out = np.zeros(len(pos))
    for j, p in enumerate(pos):
        i0 = int(np.floor(p))
        kern = _sinc_kernel(np.array([p - i0]))[0]
        for k in range(SINC_TAPS):
            idx = i0 - (half - 1) + k
            if 0 <= idx < len(x):
                out[j] += x[idx] * kern[k]
    return out


def _tv_geometry(centres, half_width, filter_len):
    """Segment length and FFT size of ``tv_convolve`` (the same for any output range)."""
    seg_len = int(np.ceil(2 * float(half_width))) + 2
    nfft = sfft.next_fast_len(seg_len + filter_len, real=True)
    return seg_len, nfft


def tv_span(centres, half_width, filter_len, out_range, shifts=None):
    """Which control points and input samples ``tv_convolve`` needs for an output range.

    A control point's piece of input is ``seg_len`` samples from
    ``floor(centre - half_width)``; its filtered block covers ``nfft`` output
    samples from there (plus its shift). Only the control points whose block
    reaches ``out_range`` contribute to it.

    Parameters
    ----------
    centres : ndarray, shape (K,)
        Control-point times in samples.
    half_width : float
    filter_len : int
    out_range : (int, int)
        Output samples [lo, hi).
    shifts : ndarray of int, shape (K,), optional

    Returns
    -------
    k0, k1 : int
        The control points [k0, k1) that reach the range (k1 == k0 when none do).
    in_lo, in_hi : int
        The input samples [in_lo, in_hi) that their windows read (not clipped to
        the input's length).
    """
    centres = np.asarray(centres, dtype=float)
    seg_len, nfft = _tv_geometry(centres, half_width, filter_len)
    starts = np.floor(centres - float(half_width)).astype(np.int64)
    blocks = starts if shifts is None else starts + np.asarray(shifts, dtype=np.int64)
    lo, hi = int(out_range[0]), int(out_range[1])
    hit = np.flatnonzero((blocks < hi) & (blocks + nfft > lo))
    if hi <= lo or hit.size == 0:
        return 0, 0, 0, 0
    k0, k1 = int(hit[0]), int(hit[-1]) + 1
    return k0, k1, int(starts[k0]), int(starts[k1 - 1]) + seg_len


def tv_convolve(
    x: np.ndarray,
    centres: np.ndarray,
    half_width: float,
    spectra_fn,
    n_channels: int,
    filter_len: int,
    n_out: int,
    shifts: np.ndarray | None = None,
    chunk: int = 64,
    cancel=None,
    *,
    out_range: tuple[int, int] | None = None,
    x_start: int = 0,
) -> np.ndarray:
    """Filter ``x`` with a filter that changes at every control point, crossfading.

    The input is cut into overlapping pieces by triangular windows centred on the
    control points (they add up to one everywhere: complementary crossfades); each
    piece is convolved with its own control point's filter and the results are
    overlap-added. A filter that changes abruptly between two control points
    therefore never clicks: each piece is a smooth signal through a fixed filter.

    Every output sample is a fixed function of the input and the filters, so any
    range of the output can be computed on its own (``out_range``): only the
    control points whose blocks reach it are filtered (``tv_span``), with the
    same FFT size and windows as a whole run.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Input signal; ``x[i]`` is input sample ``x_start + i``, which lines up
        with output sample ``x_start + i``. Samples outside ``x`` read zeros, so
        ``x`` must cover the windows of every control point the range needs
        (``tv_span``) wherever the true input is not zero.
    centres : ndarray, shape (K,)
        Control-point times in samples, uniformly spaced by ``half_width``.
    half_width : float
        Spacing of the control points in samples (the window half-width).
    spectra_fn : callable
        ``spectra_fn(k0, k1, nfft) -> ndarray (k1-k0, n_channels, nfft//2+1)``:
        the rfft of the filters of control points k0..k1-1 at size ``nfft``.
        It is only asked for the control points the output range needs.
    n_channels : int
        Output channels.
    filter_len : int
        Upper bound of the filter length in samples.
    n_out : int
        Output length in samples (the whole output).
    shifts : ndarray of int, shape (K,), optional
        Extra integer delay (samples) added to each control point's output, so
        filters can leave out a common leading delay.
    chunk : int
        Control points processed per batch (bounds memory).
    cancel : callable, optional
        Polled once per batch; raising is the caller's job.
    out_range : (int, int), optional
        Output samples [lo, hi) to compute, inside [0, n_out]; default all.
    x_start : int
        Input sample index of ``x[0]``.

    Returns
    -------
    ndarray of float32, shape (hi - lo, n_channels)
    """
    x = np.asarray(x, dtype=np.float32)
    h = float(half_width)
    lo, hi = (0, n_out) if out_range is None else (max(0, int(out_range[0])), min(n_out, int(out_range[1])))
    seg_len, nfft = _tv_geometry(centres, h, filter_len)
    y = np.zeros((max(hi - lo, 0), n_channels), dtype=np.float32)
    if hi <= lo:
        return y
    K = len(centres)
    if shifts is None:
        shifts = np.zeros(K, dtype=np.int64)
    ka, kb, _, _ = tv_span(centres, h, filter_len, (lo, hi), shifts)
    x_end = x_start + len(x)
    # Batches stay on the same grid as a whole run's (multiples of ``chunk``).
    for g0 in range((ka // chunk) * chunk, kb, chunk):
        if cancel is not None:
            cancel()
        k0, k1 = max(g0, ka), min(g0 + chunk, kb)
        starts = np.floor(centres[k0:k1] - h).astype(np.int64)
        idx = starts[:, None] + np.arange(seg_len)[None, :]
        w = np.clip(1.0 - np.abs(idx - centres[k0:k1, None]) / h, 0.0, None).astype(np.float32)
        valid = (idx >= x_start) & (idx < x_end)
        seg = np.where(valid, x[np.clip(idx - x_start, 0, max(len(x) - 1, 0))], 0.0).astype(np.float32) * w
        X = sfft.rfft(seg, n=nfft, axis=-1, workers=FFT_THREADS)
        H = spectra_fn(k0, k1, nfft)
        Y = sfft.irfft(H * X[:, None, :], n=nfft, axis=-1, workers=FFT_THREADS).astype(np.float32)
        for j in range(k1 - k0):
            a = starts[j] + shifts[k0 + j]
            b = a + nfft
            s, e = max(a, lo), min(b, hi)
            if e > s:
                y[s - lo : e - lo] += Y[j, :, s - a : e - a].T
    return y


def tv_convolve_reference(x, centres, half_width, filters, n_out, shifts=None):
    """Slow reference of ``tv_convolve`` with time-domain filters.

    Parameters
    ----------
    filters : ndarray, shape (K, C, L)
        Filter of each control point.
    """
    K, C, L = filters.shape
    if shifts is None:
        shifts = np.zeros(K, dtype=np.int64)
    n = len(x)
    t = np.arange(n)
    y = np.zeros((n_out + L + int(2 * half_width) + 2 + int(np.max(shifts, initial=0)), C))
    for k in range(K):
        w = np.clip(1.0 - np.abs(t - centres[k]) / half_width, 0.0, None)
        piece = x * w
        for c in range(C):
            conv = np.convolve(piece, filters[k, c])
            s = int(shifts[k])
            y[s : s + len(conv), c] += conv[: len(y) - s]
    return y[:n_out]


def band_masks(n_bins: int, sample_rate: float, bands=BANDS) -> np.ndarray:
    """Octave-band magnitude masks on an rfft grid whose squares add up to one.

    Neighbouring bands cross over at the geometric mean of their centres with a
    raised-cosine transition in log-frequency; the lowest band extends to DC and
    the highest to Nyquist.

    Parameters
    ----------
    n_bins : int
        Number of rfft bins (nfft//2 + 1).
    sample_rate : float
        Hz.

    Returns
    -------
    ndarray, shape (B, n_bins)
        ``sum(masks**2, axis=0) == 1`` at every bin.
    """
    f = np.linspace(0.0, sample_rate / 2.0, n_bins)
    lf = np.log2(np.maximum(f, 1e-3))
    centres = np.log2(np.asarray(bands, dtype=float))
    edges = (centres[:-1] + centres[1:]) / 2.0  # crossover points, log2 Hz
    B = len(bands)
    # Power split at each crossover: fraction going to the upper band.
    up = []
    for e in edges:
        u = np.clip((lf - (e - 0.5)) / 1.0, 0.0, 1.0)  # one-octave-wide transition
        up.append(np.sin(0.5 * np.pi * u) ** 2)
    masks2 = np.zeros((B, n_bins))
    rest = np.ones(n_bins)
    for b in range(B - 1):
        masks2[b] = rest * (1.0 - up[b])
        rest = rest * up[b]
    masks2[B - 1] = rest
    return np.sqrt(masks2)


def band_interpolation(n_bins: int, sample_rate: float, bands=BANDS) -> np.ndarray:
    """Weights that turn per-band values into a smooth curve on an rfft grid.

    Piecewise linear in log-frequency between band centres, constant beyond the
    lowest and highest centre.

    Returns
    -------
    ndarray, shape (B, n_bins)
        Non-negative, columns add up to one.
    """
    f = np.linspace(0.0, sample_rate / 2.0, n_bins)
    lf = np.log2(np.maximum(f, 1e-3))
    c = np.log2(np.asarray(bands, dtype=float))
    W = np.zeros((len(bands), n_bins))
    pos = np.interp(lf, c, np.arange(len(bands)))
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, len(bands) - 1)
    fr = pos - i0
    W[i0, np.arange(n_bins)] += 1.0 - fr
    W[i1, np.arange(n_bins)] += fr
    return W


def raised_cosine_ramp(n: int) -> np.ndarray:
    """A raised-cosine fade-in of ``n`` samples, complementary with its reverse.

    ``ramp + ramp[::-1] == 1``, so a fade-out/fade-in pair keeps the sum level.
    """
    if n <= 0:
        return np.zeros(0)
    t = (np.arange(n) + 0.5) / n
    return 0.5 - 0.5 * np.cos(np.pi * t)


def hann_fade(n: int) -> np.ndarray:
    """Half-Hann fade-out of ``n`` samples (1 -> 0)."""
    return windows.hann(2 * n + 1)[n + 1 :] if n > 0 else np.zeros(0)
