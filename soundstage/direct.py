"""The direct sound of one source: exact delay, Doppler, 1/r and direction.

For every output sample n the renderer solves the retarded time: the sound
heard at t = n / fs left the source at t - tau where
``c * tau = |L(t) - S(t - tau)|`` (listener L, source S, both moving). Reading
the source signal at that continuously moving fractional position gives true
Doppler for a moving source and a moving listener, and no stair-steps.

Binaural: each ear reads the signal with its own delay (the propagation delay
plus the HRTF's onset delay for the current direction) and is then filtered by
the onset-free HRIR of that direction, the filter changing every control step
(5 ms) with complementary crossfades. Other formats pan the delayed signal with
per-sample gains.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy.interpolate import CubicSpline

from soundstage.dsp import FFT_THREADS, fractional_read, raised_cosine_ramp, tv_convolve, tv_span
from soundstage.poses import PositionPath, RotationPath, find_cuts, segments

#: Control rate of the direct path (direction, HRIR and gain updates), Hz.
CONTROL_RATE = 200.0


def retarded_delay(t, listener_path, source_path, c, iterations=6):
    """Propagation delay tau(t) with ``c * tau = |L(t) - S(t - tau)|``.

    Fixed-point iteration; converges for sources slower than sound.

    Parameters
    ----------
    t : ndarray, shape (K,)
        Reception times, seconds.

    Returns
    -------
    tau : ndarray, shape (K,)
        Seconds.
    emit_pos : ndarray, shape (K, 3)
        Source position at emission.
    lis_pos : ndarray, shape (K, 3)
    """
    L = listener_path(t)
    S = source_path(t)
    tau = np.linalg.norm(L - S, axis=1) / c
    for _ in range(iterations):
        S = source_path(t - tau)
        tau = np.linalg.norm(L - S, axis=1) / c
    return tau, S, L


def _segment_envelope(n, a_ramp, b_ramp):
    """Gain envelope of a segment at output samples ``n``: ramps across the cuts that bound it.

    ``a_ramp``/``b_ramp`` are (start, end) sample times of the fade-in and
    fade-out, or None at the ends of the timeline.
    """
    n = np.asarray(n)
    env = np.ones(len(n))
    for ramp, rising in ((a_ramp, True), (b_ramp, False)):
        if ramp is None:
            continue
        s, e = ramp
        length = max(int(round(e - s)), 1)
        r = raised_cosine_ramp(length)
        idx = n - int(round(s))
        inside = (idx >= 0) & (idx < length)
        before = idx < 0
        after = idx >= length
        if rising:
            env[before] = 0.0
            env[inside] *= r[idx[inside]]
        else:
            env[after] = 0.0
            env[inside] *= r[::-1][idx[inside]]
    return env


def render_direct(sig, pre, src_pos, lis_pos, lis_rot, *, fps, fs, c, n_out, decoder, hrtf=None, cancel=None,
                  time_range=None):
    """Render the direct sound of one source.

    Parameters
    ----------
    sig : ndarray, shape (pre + n_out,)
        Emitted signal; ``sig[pre + n]`` leaves the source at output sample n.
    pre : int
        Samples of history before output time 0 (bounds the longest delay).
    src_pos, lis_pos : ndarray, shape (F, 3)
        Per-frame positions (frame k at time k / fps).
    lis_rot : ndarray, shape (F, 3, 3)
        world_from_listener per frame.
    decoder : soundstage.ambisonics.Decoder
    hrtf : soundstage.hrtf.HRTF, optional
        Required for binaural.
    time_range : (int, int), optional
        Output samples [a, b) to render (default: all). The control points of
        every segment are computed over the whole segment, so a range equals
        the same samples of a whole render; only the samples, HRIRs and filter
        blocks that reach the range are computed.

    Returns
    -------
    ndarray of float32, shape (b - a, C)
    """
    ra, rb = (0, n_out) if time_range is None else (max(0, int(time_range[0])), min(n_out, int(time_range[1])))
    F = len(src_pos)
    times = np.arange(F) / fps
    cuts = np.union1d(find_cuts(src_pos, fps, c), find_cuts(lis_pos, fps, c, lis_rot))
    y = np.zeros((max(rb - ra, 0), decoder.n_channels), dtype=np.float32)
    hop = fs / CONTROL_RATE
    Lh = hrtf.hrirs.shape[-1] if decoder.format == "binaural" else 0
    for f0, f1 in segments(F, cuts):
        if cancel is not None:
            cancel()
        a_ramp = None if f0 == 0 else (times[f0 - 1] * fs, times[f0] * fs)
        b_ramp = None if f1 == F - 1 else (times[f1] * fs, times[f1 + 1] * fs)
        n0 = 0 if a_ramp is None else max(0, int(np.floor(a_ramp[0])))
        n1 = n_out if b_ramp is None else min(n_out, int(np.ceil(b_ramp[1])))
        if n1 <= n0:
            continue
        # Output samples this segment writes, inside the requested range.
        lo, hi = max(n0, ra), min(n1 + Lh, n_out, rb)
        if hi <= lo:
            continue
        sl = slice(f0, f1 + 1)
        spath = PositionPath(times[sl], src_pos[sl])
        lpath = PositionPath(times[sl], lis_pos[sl])
        rpath = RotationPath(times[sl], lis_rot[sl])
        k_lo = int(np.floor(n0 / hop)) - 2
        k_hi = int(np.ceil(n1 / hop)) + 2
        centres = np.arange(k_lo, k_hi + 1) * hop  # samples
        tc = centres / fs
        tau, emit, lis = retarded_delay(tc, lpath, spath, c)
        rot = rpath(tc)
        rel = emit - lis
        dist = np.linalg.norm(rel, axis=1)
        dirs = np.einsum("kji,kj->ki", rot, rel / dist[:, None])  # listener frame
        tau_spline = CubicSpline(tc, tau)

        def drive(n):
            """Delay (s) and gain of the delay line at output samples ``n``."""
            tau_n = tau_spline(n / fs)
            gain = (1.0 / np.maximum(c * tau_n, 1e-3)) * _segment_envelope(n, a_ramp, b_ramp)
            return tau_n, gain

        if decoder.format == "binaural":
            # Only the control points whose filtered blocks reach [lo, hi), and
            # the input samples their windows read.
            rel_c = centres - n0
            k0, k1, in_lo, in_hi = tv_span(rel_c, hop, Lh, (lo - n0, hi - n0))
            if k1 <= k0:
                continue
            in_lo, in_hi = max(in_lo, 0), min(in_hi, n1 - n0)
            # HRIRs two control points beyond, so the ear-delay interpolation
            # between control points sees the same neighbours as a whole render.
            p0, p1 = max(k0 - 2, 0), min(k1 + 2, len(centres))
            hr, ed = hrtf.interpolate(dirs[p0:p1])  # (K', 2, Lh), (K', 2)
            n = np.arange(n0 + in_lo, n0 + max(in_hi, in_lo))
            tau_n, gain = drive(n)
            for e in range(2):
                delay = tau_n + np.interp(n, centres[p0:p1], ed[:, e]) - hrtf.lead / fs
                pos = pre + n - delay * fs
                x = fractional_read(sig, pos) * gain.astype(np.float32)
                spectra = _hrir_spectra(hr[:, e], offset=p0)
                out = tv_convolve(x, rel_c, hop, spectra, 1, Lh, n1 - n0 + Lh, cancel=cancel,
                                  out_range=(lo - n0, hi - n0), x_start=in_lo)
                y[lo - ra : hi - ra, e] += out[:, 0]
        else:
            hi = min(hi, n1)
            if hi <= lo:
                continue
            n = np.arange(lo, hi)
            tau_n, gain = drive(n)
            pos = pre + n - tau_n * fs
            x = fractional_read(sig, pos) * gain.astype(np.float32)
            g = decoder.direct_gains(dirs)  # (K, C)
            for ch in range(decoder.n_channels):
                y[lo - ra : hi - ra, ch] += x * np.interp(n, centres, g[:, ch]).astype(np.float32)
    return y


def _hrir_spectra(hrirs, offset=0):
    """spectra_fn for tv_convolve from per-control-point IRs of shape (K, L).

    ``hrirs[i]`` is the filter of control point ``offset + i``.
    """
    cache = {}

    def fn(k0, k1, nfft):
        if nfft not in cache:
            cache[nfft] = sfft.rfft(hrirs, n=nfft, axis=-1, workers=FFT_THREADS).astype(np.complex64)
        return cache[nfft][k0 - offset : k1 - offset, None, :]

    return fn
