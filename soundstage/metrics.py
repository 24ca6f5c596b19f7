"""Room-acoustic and binaural metrics of impulse responses and renders.

Decay times follow ISO 3382-1: the Schroeder backward integral of the squared
impulse response, a straight-line fit over a level range (T30: -5 to -35 dB,
EDT: 0 to -10 dB), extrapolated to 60 dB of decay. C50 is the ratio of energy
before and after 50 ms from the direct sound's arrival.
"""

from __future__ import annotations

import numpy as np


def schroeder_db(ir: np.ndarray) -> np.ndarray:
    """Schroeder energy decay curve in dB (0 dB at the start), shape (n,)."""
    e = np.cumsum(np.asarray(ir, dtype=float)[::-1] ** 2)[::-1]
    return 10 * np.log10(np.maximum(e / e[0], 1e-300))


def onset(ir: np.ndarray, threshold_db: float = -20.0) -> int:
    """Index of the first sample within ``threshold_db`` of the peak (the direct sound)."""
    a = np.abs(np.asarray(ir, dtype=float))
    return int(np.argmax(a >= a.max() * 10 ** (threshold_db / 20)))


def _decay_time(ir, fs, hi_db, lo_db):
    edc = schroeder_db(ir[onset(ir):])
    t = np.arange(len(edc)) / fs
    m = (edc <= hi_db) & (edc >= lo_db)
    if m.sum() < 2:
        raise ValueError(f"impulse response does not decay from {hi_db} to {lo_db} dB")
    slope, _ = np.polyfit(t[m], edc[m], 1)
    return -60.0 / slope


def t30(ir: np.ndarray, fs: float) -> float:
    """Reverberation time from the -5 to -35 dB range of the decay, seconds."""
    return _decay_time(ir, fs, -5.0, -35.0)


def t20(ir: np.ndarray, fs: float) -> float:
    """Reverberation time from the -5 to -25 dB range of the decay, seconds."""
    return _decay_time(ir, fs, -5.0, -25.0)


def edt(ir: np.ndarray, fs: float) -> float:
    """Early decay time from the 0 to -10 dB range, seconds."""
    return _decay_time(ir, fs, 0.0, -10.0)


def clarity(ir: np.ndarray, fs: float, ms: float = 50.0) -> float:
    """C50 (or C80 with ``ms=80``): early-to-late energy ratio in dB."""
    ir = np.asarray(ir, dtype=float)[onset(ir):]
    n = int(round(ms * 1e-3 * fs))
    early = np.sum(ir[:n] ** 2)
    late = np.sum(ir[n:] ** 2)
    return float(10 * np.log10(early / max(late, 1e-300)))


def octave_filter(ir: np.ndarray, fs: float, centre: float) -> np.ndarray:
    """The impulse response in one octave band (zero-phase 4th-order Butterworth)."""
    from scipy.signal import butter, sosfiltfilt

    lo, hi = centre / np.sqrt(2), min(centre * np.sqrt(2), 0.45 * fs)
    sos = butter(4, [lo, hi], btype="bandpass", fs=fs, output="sos")
    return sosfiltfilt(sos, ir)


def itd(left: np.ndarray, right: np.ndarray, fs: float, max_ms: float = 1.0, lowpass_hz: float = 1500.0) -> float:
    """Interaural time difference in seconds, positive when the left ear leads.

    The lag of the maximum of the interaural cross-correlation of the ear
    signals low-passed at ``lowpass_hz`` (where ITD is the dominant cue),
    searched within +-``max_ms`` and refined by parabolic interpolation.
    """
    from scipy.signal import butter, correlate, sosfiltfilt

    sos = butter(4, lowpass_hz, fs=fs, output="sos")
    a = sosfiltfilt(sos, np.asarray(left, dtype=float))
    b = sosfiltfilt(sos, np.asarray(right, dtype=float))
    xc = correlate(b, a, mode="full", method="fft")  # peak at lag = delay of right behind left
    lags = np.arange(-len(a) + 1, len(b))
    m = int(round(max_ms * 1e-3 * fs))
    sel = np.abs(lags) <= m
    xs, ls = xc[sel], lags[sel]
    k = int(np.argmax(xs))
    if 0 < k < len(xs) - 1:
        y0, y1, y2 = xs[k - 1], xs[k], xs[k + 1]
        off = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    else:
        off = 0.0
    return float((ls[k] + off) / fs)


def ild(left: np.ndarray, right: np.ndarray) -> float:
    """Broadband interaural level difference in dB, positive when the left ear is louder."""
    return float(10 * np.log10(np.sum(np.asarray(left, float) ** 2) / np.sum(np.asarray(right, float) ** 2)))
