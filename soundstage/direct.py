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

from soundstage.dsp import fractional_read, raised_cosine_ramp, tv_convolve
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


def _segment_envelope(n0, n1, a_ramp, b_ramp, fs):
    """Gain envelope of a segment: ramps across the cuts that bound it.

    ``a_ramp``/``b_ramp`` are (start, end) sample times of the fade-in and
    fade-out, or None at the ends of the timeline.
    """
    n = np.arange(n0, n1)
    env = np.ones(n1 - n0)
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


def render_direct(sig, pre, src_pos, lis_pos, lis_rot, *, fps, fs, c, n_out, decoder, hrtf=None, cancel=None):
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

    Returns
    -------
    ndarray of float32, shape (n_out, C)
    """
    F = len(src_pos)
    times = np.arange(F) / fps
    cuts = np.union1d(find_cuts(src_pos, fps, c), find_cuts(lis_pos, fps, c, lis_rot))
    y = np.zeros((n_out, decoder.n_channels), dtype=np.float32)
    hop = fs / CONTROL_RATE
    for f0, f1 in segments(F, cuts):
        if cancel is not None:
            cancel()
        a_ramp = None if f0 == 0 else (times[f0 - 1] * fs, times[f0] * fs)
        b_ramp = None if f1 == F - 1 else (times[f1] * fs, times[f1 + 1] * fs)
        n0 = 0 if a_ramp is None else max(0, int(np.floor(a_ramp[0])))
        n1 = n_out if b_ramp is None else min(n_out, int(np.ceil(b_ramp[1])))
        if n1 <= n0:
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
        n = np.arange(n0, n1)
        tau_n = CubicSpline(tc, tau)(n / fs)
        gain = (1.0 / np.maximum(c * tau_n, 1e-3)) * _segment_envelope(n0, n1, a_ramp, b_ramp, fs)
        if decoder.format == "binaural":
            hr, ed = hrtf.interpolate(dirs)  # (K, 2, Lh), (K, 2)
            Lh = hr.shape[-1]
            for e in range(2):
                delay = tau_n + np.interp(n, centres, ed[:, e]) - hrtf.lead / fs
                pos = pre + n - delay * fs
                x = fractional_read(sig, pos) * gain.astype(np.float32)
                spectra = _hrir_spectra(hr[:, e])
                out = tv_convolve(x, centres - n0, hop, spectra, 1, Lh, n1 - n0 + Lh, cancel=cancel)
                m = min(len(out), n_out - n0)
                y[n0 : n0 + m, e] += out[:m, 0]
        else:
            pos = pre + n - tau_n * fs
            x = fractional_read(sig, pos) * gain.astype(np.float32)
            g = decoder.direct_gains(dirs)  # (K, C)
            for ch in range(decoder.n_channels):
                y[n0:n1, ch] += x * np.interp(n, centres, g[:, ch]).astype(np.float32)
    return y


def _hrir_spectra(hrirs):
    """spectra_fn for tv_convolve from per-control-point IRs of shape (K, L)."""
    cache = {}

    def fn(k0, k1, nfft):
        if nfft not in cache:
            cache[nfft] = sfft.rfft(hrirs, n=nfft, axis=-1, workers=-1).astype(np.complex64)
        return cache[nfft][k0:k1, None, :]

    return fn
