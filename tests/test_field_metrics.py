"""Binaural similarity metrics (MAG, ENV, STFT distance, D-phase, SNR) against references and analytic values."""

from __future__ import annotations

import numpy as np
import pytest

from soundstage import metrics


def stft_reference(x, n_fft=512, hop=128):
    """Slow, obvious STFT: zero-pad n_fft/2 both sides, frame every hop, periodic Hann, rfft."""
    x = np.asarray(x, float)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    xp = np.pad(x, n_fft // 2)
    frames = [np.fft.rfft(xp[k * hop:k * hop + n_fft] * win) for k in range(1 + len(x) // hop)]
    return np.array(frames)


@pytest.mark.parametrize("n,n_fft,hop", [(22050, 512, 128), (1000, 128, 32), (777, 256, 64)])
def test_stft_magnitude_matches_reference(n, n_fft, hop):
    x = np.random.default_rng(n).standard_normal(n)
    S = metrics.stft(x, n_fft, hop)
    R = stft_reference(x, n_fft, hop)
    assert S.shape == R.shape == (1 + n // hop, n_fft // 2 + 1)
    np.testing.assert_allclose(np.abs(S), np.abs(R), atol=1e-9 * np.abs(R).max())


def test_stft_matches_torch_field_transform():
    torch = pytest.importorskip("torch")
    from soundstage.field.spectral import Spectral, stft

    x = np.random.default_rng(1).standard_normal((2, 5000))
    S = stft(torch.as_tensor(x), Spectral(22050, 512, 128)).numpy()
    np.testing.assert_allclose(np.abs(S), np.abs(metrics.stft(x)), atol=1e-9)


def test_mag_distance_of_a_scaled_signal_is_analytic():
    g = np.random.default_rng(2).standard_normal((2, 22050))
    assert metrics.mag_distance(g, g) == 0.0
    a = 1.3
    G = np.abs(metrics.stft(g))
    expected = (a - 1) ** 2 * np.sum(np.mean(G ** 2, axis=(1, 2)))
    assert metrics.mag_distance(a * g, g) == pytest.approx(expected, rel=1e-9)


def test_envelope_distance_of_tones_is_the_amplitude_difference():
    fs = 22050
    t = np.arange(fs) / fs
    tone = np.sin(2 * np.pi * 441 * t)  # whole number of periods: a flat Hilbert envelope
    pred = np.stack([0.5 * tone, 0.2 * tone])
    gt = np.stack([0.3 * tone, 0.2 * tone])
    assert metrics.envelope_distance(pred, gt) == pytest.approx(0.2, abs=1e-6)
    assert metrics.envelope_distance(gt, gt) == 0.0


def test_snr_of_known_noise():
    rng = np.random.default_rng(3)
    g = rng.standard_normal((2, 50000))
    e = rng.standard_normal((2, 50000))
    e *= np.sqrt(np.sum(g ** 2) / np.sum(e ** 2) / 100.0)  # exactly 20 dB below the signal
    assert metrics.snr_db(g + e, g) == pytest.approx(20.0, abs=1e-9)


def test_dphase_zero_for_equal_and_pi_for_swapped_ears():
    rng = np.random.default_rng(4)
    g = rng.standard_normal((2, 8000))
    assert metrics.dphase_distance(g, g) == 0.0
    # Swapping the ears negates L - R: every phase moves by pi.
    assert metrics.dphase_distance(g[::-1], g) == pytest.approx(np.pi, abs=1e-6)


def test_stft_distance_matches_reference():
    rng = np.random.default_rng(5)
    p, g = rng.standard_normal((2, 3000)), rng.standard_normal((2, 3000))
    ref = sum(np.mean(np.concatenate([np.real(stft_reference(p[c]) - stft_reference(g[c])),
                                      np.imag(stft_reference(p[c]) - stft_reference(g[c]))]) ** 2)
              for c in range(2))
    assert metrics.stft_distance(p, g) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("t60,delay", [(0.4, 0), (0.4, 300), (1.2, 50)])
def test_edt_crossing_of_an_exponential_decay_is_its_t60_plus_six_delays(t60, delay):
    """Energy 10**(-6 t / T60) falls 10 dB at T60 / 6: both EDTs give T60; only the crossing counts silence."""
    fs = 22050
    t = np.arange(int(3 * t60 * fs)) / fs
    ir = np.concatenate([np.zeros(delay), 10 ** (-3 * t / t60)])
    assert metrics.edt_crossing(ir, fs) == pytest.approx(t60 + 6 * delay / fs, abs=6 / fs + 1e-9)
    assert metrics.edt(ir, fs) == pytest.approx(t60, rel=1e-3)  # ISO: from the onset, line fit
    with pytest.raises(ValueError, match="10 dB"):
        metrics.edt_crossing(np.ones(8), fs)  # its Schroeder curve ends at -9 dB
