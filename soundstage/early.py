"""Early reflections: image sources recomputed every frame.

Per frame f and image i the renderer knows the arrival delay tau_fi, the
direction in the listener's frame u_fi and the band amplitudes g_fib (wall
reflection factors, air absorption, 1/r). The frame's reflection response in
channel c (an SH channel, or a loudspeaker with the decoder folded in) is
built directly as a spectrum:

    H_fc(k) = sum_i Y_c(u_fi) * G_fi(k) * exp(-2 pi j k tau_fi / N)

with G_fi(k) the band amplitudes interpolated over frequency. Fractional
delays are exact this way, and no per-image filter is ever designed. Frames
are joined with complementary crossfades (``dsp.tv_convolve``). For binaural
output the SH response is decoded to the ears through a virtual loudspeaker
array rendered with the HRTF (``Decoder.binaural_sh_filters``).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from soundstage.dsp import band_interpolation, tv_convolve

#: Samples kept before the earliest reflection of a frame: room for the
#: zero-phase band filters' pre-ringing.
GUARD = 96


def image_arrivals(images, lis_pos, lis_rot, *, fs, c, air):
    """Delays, directions and band amplitudes of every image in every frame.

    Parameters
    ----------
    images : soundstage.rooms.base.ImageSet
    lis_pos : ndarray, shape (F, 3)
    lis_rot : ndarray, shape (F, 3, 3)
    fs, c : float
    air : ndarray, shape (B,)
        Air energy attenuation, 1/m.

    Returns
    -------
    delay : ndarray, shape (F, I)
        Samples.
    dirs : ndarray, shape (F, I, 3)
        Unit vectors in the listener frame.
    amp : ndarray, shape (F, I, B)
        Amplitude per band, zero for invalid images.
    """
    rel = images.positions - lis_pos[:, None, :]
    d = np.linalg.norm(rel, axis=-1)
    d = np.maximum(d, 1e-3)
    dirs = np.einsum("fji,fnj->fni", lis_rot, rel / d[..., None])
    amp = images.gains * np.exp(-0.5 * air[None, None, :] * d[..., None]) / d[..., None]
    amp = np.where(images.valid[..., None], amp, 0.0)
    return d / c * fs, dirs, amp


def render_early(sig, pre, images, lis_pos, lis_rot, *, fps, fs, c, air, n_out, decoder, sh_filters=None,
                 latency=0, cancel=None, chunk=32, time_range=None):
    """Render the early reflections of one source.

    Parameters
    ----------
    sig : ndarray, shape (pre + n_out,)
        Emitted signal (``sig[pre + n]`` leaves the source at output sample n).
    images : ImageSet
        One entry per frame (F frames at times k / fps).
    sh_filters : ndarray, shape (2, C, L), optional
        SH-to-ear filters for binaural (from ``Decoder.binaural_sh_filters``).
    latency : int
        Delay in samples that ``sh_filters`` add to a plane wave.
    time_range : (int, int), optional
        Output samples [a, b) to render (default: all). The filter length is
        set by every frame's images, as in a whole render, and only the frames
        whose filtered blocks reach the range are built.

    Returns
    -------
    ndarray of float32, shape (b - a, n_channels)
    """
    F = images.n_frames
    ra, rb = (0, n_out) if time_range is None else (max(0, int(time_range[0])), min(n_out, int(time_range[1])))
    if images.n_images == 0 or not images.valid.any() or rb <= ra:
        return np.zeros((max(rb - ra, 0), decoder.n_channels), dtype=np.float32)
    delay, dirs, amp = image_arrivals(images, lis_pos, lis_rot, fs=fs, c=c, air=air)
    Y = decoder.sh_gains(dirs.reshape(-1, 3)).reshape(F, images.n_images, -1)
    Yr = np.ascontiguousarray(np.swapaxes(Y, 1, 2)).astype(np.float32)  # (F, C, I)
    # One control point per frame plus one held after the last, so the
    # triangular windows cover the whole output.
    hop = fs / fps
    centres = np.arange(F + 1) * hop
    idx = np.minimum(np.arange(F + 1), F - 1)
    valid_delay = np.where(images.valid, delay, np.inf)
    first = np.min(valid_delay, axis=1)
    first = np.where(np.isfinite(first), first, 0.0)
    shifts = np.floor(first).astype(np.int64) - latency - GUARD
    rel_delay = delay - (shifts + latency)[:, None]  # samples inside each frame's filter
    rel_delay = np.where(images.valid, rel_delay, 0.0)
    span = int(np.ceil(rel_delay.max())) + GUARD
    binaural = sh_filters is not None
    filt_len = span + (sh_filters.shape[-1] if binaural else 0)
    n_ch = decoder.n_channels
    cache = {}

    step = 64  # phasors are built as (coarse x fine) outer products over this many bins

    def spectra(k0, k1, nfft):
        K = nfft // 2 + 1
        Kp = -(-K // step) * step  # padded to whole steps so arrays stay contiguous
        if nfft not in cache:
            W = np.zeros((len(air), Kp), np.float32)
            W[:, :K] = band_interpolation(K, fs)
            Dk = None
            if binaural:
                Dk = np.zeros((2, sh_filters.shape[1], Kp), np.complex64)
                Dk[..., :K] = sfft.rfft(sh_filters, n=nfft, axis=-1)
            cache[nfft] = (W, Dk)
        W, D = cache[nfft]
        fr = idx[k0:k1]
        # exp(-2 pi j k tau / N) as an outer product of a coarse and a fine
        # phasor: two short exponentials instead of one per bin.
        ph = np.float32(-2 * np.pi / nfft) * rel_delay[fr].astype(np.float32)[..., None]
        kc = np.arange(0, Kp, step, dtype=np.float32)
        kf = np.arange(step, dtype=np.float32)
        A = (np.exp(1j * (ph * kc))[..., :, None] * np.exp(1j * (ph * kf))[..., None, :]).reshape(len(fr), -1, Kp)
        A = A.astype(np.complex64, copy=False)
        A *= np.matmul(amp[fr].astype(np.float32), W)  # band gains interpolated over frequency
        # Batched real matmul (BLAS) over images on a float view of the complex
        # spectra: (n, C, I) @ (n, I, 2K) -> (n, C, 2K), half the work of a
        # complex product since the SH gains are real.
        H = np.matmul(Yr[fr], A.view(np.float32)).view(np.complex64)
        if binaural:
            H = np.einsum("eck,fck->fek", D, H, optimize=True)
        return H[..., :K]

    return tv_convolve(sig[pre:], centres, hop, spectra, n_ch, filt_len, n_out, shifts=shifts[idx],
                       chunk=chunk, cancel=cancel, out_range=(ra, rb))
