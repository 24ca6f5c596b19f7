"""Late reverberation: computed once per source and room.

The room gives the energy arriving at the listener per octave band and time
bin (every path, e.g. from the image-source energies in a shoebox). The energy
of what the renderer plays explicitly (the direct sound and the early images)
is taken out, and the rest becomes noise whose band envelopes carry exactly
that energy. The noise is statistically stationary and decorrelated:

* ``binaural``: two ears mixed from two independent noises per band so their
  coherence equals the HRTF's diffuse-field interaural coherence, each ear
  shaped by its diffuse-field HRTF power;
* ``ambix``: independent noise per SH channel with the SN3D diffuse-field
  weights (a channel of degree l carries 1/(2l+1) of W's energy);
* ``5.1`` / ``stereo``: that SH diffuse field through the format's decoder.

Shaping is done in the STFT domain: white noise, a gain per frame and bin
(the band energies spread over frequency by power-complementary masks), and
the inverse STFT.
"""

from __future__ import annotations

import inspect

import numpy as np
from scipy.signal import istft, stft

from soundstage.ambisonics import sh_orders
from soundstage.dsp import band_masks
from soundstage.materials import BANDS

#: Width of the energy histogram bins, seconds.
BIN = 1e-3
#: Longest late tail considered, seconds.
T_MAX = 4.0
#: The tail ends where every band is this far below its peak, dB.
FLOOR_DB = 90.0
_NPERSEG = 512


def explicit_energy(dist_direct, image_dist, image_gains, air, c, n_bins):
    """Energy histogram (B, n_bins) of the paths rendered explicitly.

    Parameters
    ----------
    dist_direct : float
        Source-listener distance, metres.
    image_dist : ndarray, shape (I,)
    image_gains : ndarray, shape (I, B)
        Amplitude reflection factors.
    """
    B = len(air)
    hist = np.zeros((B, n_bins))
    d = np.concatenate([[dist_direct], image_dist])
    g2 = np.concatenate([np.ones((1, B)), image_gains**2])
    e = g2 * np.exp(-air[None, :] * d[:, None]) / np.maximum(d, 1e-3)[:, None] ** 2
    b = np.minimum((d / c / BIN).astype(int), n_bins - 1)
    for k in range(B):
        hist[k] = np.bincount(b, weights=e[:, k], minlength=n_bins)
    return hist


def residual_energy(room, src, lis, *, air, c, reflection_order, rng):
    """Energy per band and bin that the late tail must carry, trimmed.

    Returns
    -------
    ndarray, shape (B, n_bins)
    """
    if "exclude_order" in inspect.signature(room.energy_histogram).parameters:
        # Ray-traced rooms can leave out the paths the early part plays (direct sound and
        # specular reflections up to the order) instead of subtracting their expected energy
        # from a noisy histogram: no ray noise, and no double counting where few rays land.
        res = room.energy_histogram(src, lis, air=air, speed_of_sound=c, bin_width=BIN, t_max=T_MAX, rng=rng,
                                    exclude_order=int(reflection_order))
        return _trim(res, res)
    hist = room.energy_histogram(src, lis, air=air, speed_of_sound=c, bin_width=BIN, t_max=T_MAX, rng=rng)
    n_bins = hist.shape[1]
    if reflection_order > 0:
        im = room.early_images(src[None, :], lis[None, :], reflection_order)
        ok = im.valid[0]
        dist = np.linalg.norm(im.positions[0][ok] - lis, axis=1)
        gains = im.gains[0][ok]
    else:
        dist, gains = np.zeros(0), np.zeros((0, len(air)))
    expl = explicit_energy(np.linalg.norm(src - lis), dist, gains, air, c, n_bins)
    return _trim(np.maximum(hist - expl, 0.0), hist)


def _trim(res, hist):
    """``res`` cut where every band has decayed FLOOR_DB below the peak of ``hist`` (both (B, n_bins))."""
    peak = hist.max(axis=1, keepdims=True)
    alive = np.any(res > peak * 10 ** (-FLOOR_DB / 10), axis=0)
    last = int(np.flatnonzero(alive)[-1]) + 1 if alive.any() else 1
    return res[:, :last]


def _gain_grid(energy, n_frames, hop, fs):
    """Per-band amplitude envelopes at STFT frame times, shape (B, n_frames).

    Each frame stands for the ``hop`` samples around its centre and gets the
    histogram's energy in that span spread evenly over them: band-limited unit
    white noise has variance equal to the band's spectral fraction, so an
    amplitude sqrt(E / hop) carries the band's energy E of the span. Taking the
    histogram's value at the frame centre instead would skip what arrives
    between centres: an image-source histogram is spiky (1 ms bins, frames
    about 6 ms apart), and the tail's level per frame would then scatter by
    about 1.5 dB from pose to pose instead of following the energy.
    """
    B, n_bins = energy.shape
    centres = np.arange(n_frames) * hop / fs  # STFT frame centres (zero-padded boundary)
    edges = np.concatenate([centres - 0.5 * hop / fs, [centres[-1] + 0.5 * hop / fs]])
    # Cumulative energy at the span edges, the histogram taken as constant within each bin.
    at = np.clip(edges / BIN, 0.0, n_bins)
    cum = np.concatenate([np.zeros((B, 1)), np.cumsum(energy, axis=1)], axis=1)
    grid = np.arange(n_bins + 1, dtype=float)
    spans = np.diff(np.stack([np.interp(at, grid, c) for c in cum]), axis=1)
    return np.sqrt(np.maximum(spans, 0.0) / hop)


_STFT = dict(nperseg=_NPERSEG, noverlap=_NPERSEG * 3 // 4)


def _stft(noise, fs):
    return stft(noise, fs=fs, boundary="zeros", padded=True, **_STFT)[2]


def _istft(Z, fs, n):
    x = istft(Z, fs=fs, boundary=True, **_STFT)[1]
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def _band_gain(env, masks2, n_fr, weights=None):
    """Per-bin, per-frame amplitude (n_freq, n_fr) from band envelopes (B, frames).

    ``weights`` (B,) optional per-band power factor.
    """
    e = env[:, :n_fr] if env.shape[1] >= n_fr else np.pad(env, ((0, 0), (0, n_fr - env.shape[1])))
    p = e**2 if weights is None else e**2 * weights[:, None]
    return np.sqrt(np.einsum("bk,bt->kt", masks2, p))


def late_tail(energy, *, fs, decoder, hrtf=None, seed=0):
    """Late impulse response per output channel.

    Parameters
    ----------
    energy : ndarray, shape (B, n_bins)
        Residual energy per band and ``BIN``-wide bin (time 0 = emission).
    decoder : soundstage.ambisonics.Decoder
    hrtf : HRTF, optional
        Needed for binaural (diffuse-field power and coherence).
    seed : int

    Returns
    -------
    ndarray of float32, shape (n, n_channels)
    """
    n = int(np.ceil(energy.shape[1] * BIN * fs)) + _NPERSEG
    rng = np.random.default_rng(seed)
    n_freq = _NPERSEG // 2 + 1
    hop = _NPERSEG // 4
    n_frames = n // hop + 2
    env = _gain_grid(energy, n_frames, hop, fs)
    masks2 = band_masks(n_freq, fs) ** 2
    if decoder.format == "binaural":
        edges = np.sqrt(np.asarray(BANDS[:-1]) * np.asarray(BANDS[1:]))
        edges = np.concatenate([[0.0], edges, [fs / 2]])
        power, coh = hrtf.diffuse_field(edges)  # (2, B), (B,)
        # Per bin: mix two independent noises so the ears' coherence is the
        # diffuse-field coherence there (a^2 - b^2 = coherence, a^2 + b^2 = 1).
        gamma = np.clip(masks2.T @ np.clip(coh, -1.0, 1.0), -1.0, 1.0)[:, None]
        a, b = np.sqrt((1 + gamma) / 2), np.sqrt((1 - gamma) / 2)
        Z1, Z2 = _stft(rng.standard_normal(n), fs), _stft(rng.standard_normal(n), fs)
        out = np.zeros((n, 2))
        for e, sign in ((0, 1.0), (1, -1.0)):
            G = _band_gain(env, masks2, Z1.shape[1], power[e])
            out[:, e] = _istft((a * Z1 + sign * b * Z2) * G, fs, n)
        return out.astype(np.float32)
    order = decoder.sh_order
    ls = sh_orders(order)
    sh = np.zeros((n, len(ls)))
    G = None
    for ch, l in enumerate(ls):
        Z = _stft(rng.standard_normal(n), fs)
        G = _band_gain(env, masks2, Z.shape[1]) if G is None else G
        sh[:, ch] = _istft(Z * G, fs, n) / np.sqrt(2 * l + 1)
    if decoder.format == "ambix":
        return sh.astype(np.float32)
    return (sh @ decoder.sh_matrix.T).astype(np.float32)
