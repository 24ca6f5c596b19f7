"""Fast signal-processing paths held to their slow references."""

import numpy as np
import pytest

from soundstage import dsp


def test_fractional_read_matches_reference():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(400)
    pos = np.sort(rng.uniform(-5, 405, 300))
    fast = dsp.fractional_read(x, pos)
    ref = dsp.fractional_read_reference(x, pos)
    # the table has 512 phases with linear interpolation between them
    assert np.max(np.abs(fast - ref)) < 2e-4 * np.max(np.abs(x))


def test_fractional_read_integer_positions_are_exact():
    x = np.random.default_rng(2).standard_normal(100).astype(np.float32)
    np.testing.assert_allclose(dsp.fractional_read(x, np.arange(10, 90, dtype=float)), x[10:90], atol=1e-6)


def test_fractional_read_delays_a_sine_exactly():
    # Oracle: a band-limited sine read at t - 0.37 samples is the sine shifted by 0.37 samples.
    fs, f = 48000, 3000.0
    n = np.arange(4000)
    x = np.sin(2 * np.pi * f * n / fs)
    y = dsp.fractional_read(x, n[100:-100] - 0.37)
    expect = np.sin(2 * np.pi * f * (n[100:-100] - 0.37) / fs)
    assert np.max(np.abs(y - expect)) < 1e-3


def test_tv_convolve_matches_reference_and_handles_shifts():
    rng = np.random.default_rng(3)
    n, hop, K, C, L = 900, 100.0, 11, 2, 40
    x = rng.standard_normal(n)
    filters = rng.standard_normal((K, C, L))
    centres = np.arange(K) * hop
    shifts = rng.integers(0, 30, K)

    def spectra(k0, k1, nfft):
        return np.fft.rfft(filters[k0:k1], n=nfft, axis=-1)

    fast = dsp.tv_convolve(x, centres, hop, spectra, C, L, n, shifts=shifts, chunk=4)
    ref = dsp.tv_convolve_reference(x, centres, hop, filters, n, shifts=shifts)
    np.testing.assert_allclose(fast, ref, atol=1e-4)


def test_tv_convolve_constant_filter_equals_plain_convolution():
    # Complementary windows: with the same filter everywhere the result is an ordinary convolution.
    rng = np.random.default_rng(4)
    x = rng.standard_normal(1000)
    h = rng.standard_normal(25)
    centres = np.arange(0, 1100, 50.0)

    def spectra(k0, k1, nfft):
        return np.broadcast_to(np.fft.rfft(h, n=nfft), (k1 - k0, 1, nfft // 2 + 1))

    y = dsp.tv_convolve(x, centres, 50.0, spectra, 1, len(h), 1000)[:, 0]
    np.testing.assert_allclose(y, np.convolve(x, h)[:1000], atol=1e-4)


@pytest.mark.parametrize("fs", [16000, 44100, 48000, 96000])
def test_band_masks_are_power_complementary(fs):
    m = dsp.band_masks(2049, fs)
    np.testing.assert_allclose((m**2).sum(axis=0), 1.0, atol=1e-12)
    f = np.linspace(0, fs / 2, 2049)
    # each band dominates at its own centre frequency
    for b, fc in enumerate(dsp.BANDS):
        if fc < fs / 2:
            assert np.argmax(m[:, np.argmin(np.abs(f - fc))]) == b


def test_band_interpolation_reproduces_band_values_at_centres():
    fs = 48000
    W = dsp.band_interpolation(24001, fs)
    f = np.linspace(0, fs / 2, 24001)
    vals = np.array([0.1, 0.5, 0.2, 0.9, 0.3, 0.7, 0.4])
    curve = vals @ W
    for b, fc in enumerate(dsp.BANDS):
        assert abs(curve[np.argmin(np.abs(f - fc))] - vals[b]) < 0.01
    np.testing.assert_allclose(W.sum(axis=0), 1.0)


def test_raised_cosine_ramp_is_complementary():
    r = dsp.raised_cosine_ramp(37)
    np.testing.assert_allclose(r + r[::-1], 1.0)
