"""HRTF loading, ear order, onset alignment, interpolation and diffuse-field statistics.

Oracles: the measured MIT KEMAR data read independently with sofar, physics (ITD of
about 0.6-0.7 ms at 90 degrees, no ITD straight ahead, louder near ear, diffuse-field
coherence falling from 1 at low frequencies), and geometry (barycentric coordinates).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.fft as sfft

from soundstage.errors import HRTFError
from soundstage.hrtf import HRTF, HRTFWarning, load_hrtf

sofar = pytest.importorskip("sofar")

PACKAGED = Path(__file__).resolve().parents[1] / "soundstage" / "data" / "mit_kemar_normal_pinna.sofa"


@pytest.fixture(scope="module")
def kemar() -> HRTF:
    return load_hrtf("default", 48000)


@pytest.fixture(scope="module")
def kemar_file():
    """The KEMAR SOFA object as sofar reads it (the raw measured data)."""
    return sofar.read_sofa(str(PACKAGED), verify=False, verbose=False)


def _sph(az_deg, el_deg):
    az, el = np.radians(az_deg), np.radians(el_deg)
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def _nearest(h: HRTF, v) -> int:
    return int(np.argmax(h.directions @ (np.asarray(v, float) / np.linalg.norm(v))))


def _level_db(x: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.sum(np.asarray(x, np.float64) ** 2, axis=-1))


def _write_sofa(path, kemar_file, *, convention="SimpleFreeFieldHRIR", ir=None, receivers=None, source=None, source_type="spherical", view=None):
    s = sofar.Sofa(convention)
    if convention == "SimpleFreeFieldHRTF":
        spec = np.fft.rfft(kemar_file.Data_IR, axis=-1)
        s.Data_Real, s.Data_Imag = spec.real, spec.imag
        s.N = np.fft.rfftfreq(kemar_file.Data_IR.shape[-1], 1 / 44100)
    else:
        s.Data_IR = kemar_file.Data_IR if ir is None else ir
        s.Data_SamplingRate = 44100.0
    s.SourcePosition = kemar_file.SourcePosition if source is None else source
    s.SourcePosition_Type = source_type
    s.SourcePosition_Units = "degree, degree, metre" if source_type == "spherical" else "metre"
    s.ReceiverPosition = [[0, 0.09, 0], [0, -0.09, 0]] if receivers is None else receivers
    if hasattr(s, "Data_Delay"):
        s.Data_Delay = np.zeros((1, len(s.ReceiverPosition)))
    if view is not None:
        s.ListenerView = view
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sofar.write_sofa(str(path), s)
    return path


# --- loading the default -------------------------------------------------------------


def test_default_loads_measured_directions(kemar, kemar_file):
    assert len(kemar.directions) == 710
    m, ears, length = kemar.hrirs.shape
    assert (m, ears) == (710, 2) and kemar.hrirs.dtype == np.float32
    assert 256 <= length <= 400 and kemar.lead == 24 and kemar.sample_rate == 48000
    assert kemar.ear_delays.shape == (710, 2) and kemar.path == "default"
    # Directions: the file's azimuth/elevation, independently converted.
    az, el = kemar_file.SourcePosition[:, 0], kemar_file.SourcePosition[:, 1]
    np.testing.assert_allclose(kemar.directions, _sph(az, el), atol=1e-12)
    with pytest.raises(ValueError):
        kemar.hrirs[0, 0, 0] = 1.0  # shared by the cache: read-only


def test_left_source_is_earlier_and_louder_in_left_ear(kemar, kemar_file):
    i = _nearest(kemar, [0, 1, 0])  # +90 degrees azimuth = left
    itd = kemar.ear_delays[i, 1] - kemar.ear_delays[i, 0]
    assert 0.55e-3 <= itd <= 0.8e-3
    assert kemar.ear_delays[i, 0] < -0.2e-3 and kemar.ear_delays[i, 1] > 0.2e-3
    ild = _level_db(kemar.hrirs[i, 0]) - _level_db(kemar.hrirs[i, 1])
    assert ild > 6
    # The measured file agrees (receiver 0 is at +y): same level difference, within 0.3 dB.
    raw = _level_db(kemar_file.Data_IR[i])
    assert ild == pytest.approx(raw[0] - raw[1], abs=0.3)
    # And the mirror image on the right.
    j = _nearest(kemar, [0, -1, 0])
    assert kemar.ear_delays[j, 0] - kemar.ear_delays[j, 1] == pytest.approx(itd, abs=20e-6)


def test_no_itd_straight_ahead_and_reference_near_zero(kemar):
    i = _nearest(kemar, [1, 0, 0])
    assert abs(kemar.ear_delays[i, 1] - kemar.ear_delays[i, 0]) < 20e-6
    assert np.all(np.abs(kemar.ear_delays[i]) < 0.1e-3)
    # ITD grows monotonically-ish with lateral angle on the horizontal plane.
    itds = [np.diff(kemar.ear_delays[_nearest(kemar, _sph(a, 0))])[0] for a in (0, 30, 60, 90)]
    assert itds == sorted(itds)


def test_aligned_onsets_sit_at_lead(kemar):
    # The -20 dB crossing of every aligned response is at sample `lead` (checked on a
    # plainly oversampled copy, independent of the implementation's polyphase filter).
    x = kemar.hrirs[::7].reshape(-1, kemar.hrirs.shape[-1]).astype(np.float64)
    up = np.abs(sfft.irfft(sfft.rfft(x, axis=-1), n=16 * x.shape[-1], axis=-1))
    thr = 0.1 * up.max(axis=-1)
    i = np.argmax(up >= thr[:, None], axis=-1)
    prev, cur = up[np.arange(len(x)), i - 1], up[np.arange(len(x)), i]
    first = (i - 1 + (thr - prev) / (cur - prev)) / 16
    np.testing.assert_allclose(first, kemar.lead, atol=0.03)  # measured: within 0.013 samples


def test_truncation_keeps_energy(kemar):
    # Oracle: the file's own responses at 48 kHz, untruncated.
    full = np.sum(kemar._raw.astype(np.float64) ** 2)
    kept = np.sum(kemar.hrirs.astype(np.float64) ** 2)
    assert kept / full > 0.998  # 99.9 % kept, less a hair of fractional-shift round-off
    assert np.all(kemar.hrirs[:, :, -1] == 0)  # faded to zero


# --- interpolation -------------------------------------------------------------------


def test_interpolation_at_measured_directions_is_exact(kemar):
    hrirs, delays = kemar.interpolate(kemar.directions * 3.7)  # length does not matter
    np.testing.assert_array_equal(hrirs, kemar.hrirs)
    np.testing.assert_allclose(delays, kemar.ear_delays, rtol=0, atol=1e-15)


def test_interpolation_between_two_neighbours(kemar):
    face = kemar._faces[np.argmax(kemar.directions[kemar._faces].mean(axis=1) @ [1, 0, 0])]
    a, b = face[0], face[1]  # an edge of the triangulation, near the front
    t = 0.3
    q = (1 - t) * kemar.directions[a] + t * kemar.directions[b]
    idx, w = kemar.barycentric(q)
    weights = dict(zip(idx[0].tolist(), w[0].tolist()))
    assert weights.get(a, 0) == pytest.approx(1 - t, abs=1e-9) and weights.get(b, 0) == pytest.approx(t, abs=1e-9)
    hrir, delay = kemar.interpolate(q)
    expected = (1 - t) * kemar.hrirs[a].astype(np.float64) + t * kemar.hrirs[b]
    np.testing.assert_allclose(hrir[0], expected, atol=1e-6)
    lo, hi = np.minimum(kemar.ear_delays[a], kemar.ear_delays[b]), np.maximum(kemar.ear_delays[a], kemar.ear_delays[b])
    assert np.all(delay[0] >= lo - 1e-15) and np.all(delay[0] <= hi + 1e-15)


def test_barycentric_weights_reconstruct_the_ray(kemar):
    # Geometric oracle: the weighted sum of the three vertices points along the query,
    # everywhere, including below -40 degrees where KEMAR has no measurements.
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2000, 3))
    q[:200, 2] = -np.abs(q[:200, 2]) - 2  # steeply downward
    idx, w = kemar.barycentric(q)
    assert np.all(w >= 0) and np.allclose(w.sum(axis=1), 1)
    recon = np.einsum("nk,nkc->nc", w, kemar.directions[idx])
    np.testing.assert_allclose(recon / np.linalg.norm(recon, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True), atol=1e-9)


def test_fast_barycentric_matches_reference(kemar):
    rng = np.random.default_rng(4)
    q = np.concatenate([rng.standard_normal((24, 3)), [[0, 0, -1], [0.2, 0.1, -1], [0, 1, 0], [1, 0, 0]]])
    m = len(kemar.directions)

    def dense(idx, w):
        out = np.zeros((len(q), m))
        np.add.at(out, (np.repeat(np.arange(len(q)), 3), idx.ravel()), w.ravel())
        return out

    np.testing.assert_allclose(dense(*kemar.barycentric(q)), dense(*kemar._barycentric_reference(q)), atol=1e-9)


def test_bad_directions(kemar):
    with pytest.raises(ValueError, match="zero"):
        kemar.interpolate([[1, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError):
        kemar.interpolate([[np.nan, 0, 0]])
    with pytest.raises(ValueError):
        kemar.interpolate(np.ones((2, 2)))
    hrirs, delays = kemar.interpolate([0, 1, 0])  # a single direction is fine
    assert hrirs.shape == (1, 2, kemar.hrirs.shape[-1]) and delays.shape == (1, 2)


# --- diffuse field -------------------------------------------------------------------


def test_solid_angles_cover_the_sphere(kemar):
    assert kemar.triangulated
    assert kemar.solid_angles.sum() == pytest.approx(4 * np.pi, rel=1e-9)
    assert np.all(kemar.solid_angles > 0)


def test_diffuse_field_coherence_and_power(kemar):
    edges = np.array([50, 150, 200, 400, 800, 1600, 2000, 4000, 8000, 16000], float)
    power, coherence = kemar.diffuse_field(edges)
    assert power.shape == (2, 9) and coherence.shape == (9,)
    # At low frequencies the two ears hear nearly the same field (KEMAR measures 0.95 in
    # 50-150 Hz and 0.8 in 150-200 Hz: its first zero is near 500 Hz).
    assert coherence[0] > 0.9 and coherence[1] > 0.7
    assert np.all(np.abs(coherence[-3:]) < 0.3)  # above 2 kHz they are nearly independent
    assert coherence[0] > coherence[1] > coherence[2] > np.max(np.abs(coherence[3:]))
    # KEMAR's normal-pinna set is left/right symmetric: equal diffuse-field power.
    np.testing.assert_allclose(10 * np.log10(power[0] / power[1]), 0, atol=0.5)
    # (B, 2) pairs give the same numbers.
    p2, c2 = kemar.diffuse_field(np.stack([edges[:-1], edges[1:]], axis=1))
    np.testing.assert_allclose(p2, power) and np.testing.assert_allclose(c2, coherence)


def test_diffuse_power_matches_direct_average(kemar):
    # Oracle: a plain weighted average of |H|^2 over the measured directions at one bin.
    nfft = 4096
    spec = np.fft.rfft(kemar._raw.astype(np.float64), n=nfft, axis=-1)
    f = np.fft.rfftfreq(nfft, 1 / kemar.sample_rate)
    sel = (f >= 1000) & (f < 2000)
    w = kemar.solid_angles / kemar.solid_angles.sum()
    expected = np.array([np.sum(w[:, None] * np.abs(spec[:, e][:, sel]) ** 2) / sel.sum() for e in (0, 1)])
    power, _ = kemar.diffuse_field([1000, 2000])
    np.testing.assert_allclose(power[:, 0], expected, rtol=0.05)


# --- sample rates --------------------------------------------------------------------


def _itd_xcorr(left: np.ndarray, right: np.ndarray, fs: float) -> float:
    """ITD (s, positive = left earlier) by cross-correlating the <1.5 kHz parts, 16x oversampled."""
    n = 1 << int(np.ceil(np.log2(len(left) * 2)))
    f = np.fft.rfftfreq(n, 1 / fs)
    lp = (f < 1500).astype(float)
    cross = np.fft.rfft(right, n) * np.conj(np.fft.rfft(left, n)) * lp
    xc = np.fft.irfft(cross, 16 * n)
    lag = np.argmax(np.concatenate([xc[-16 * n // 8 :], xc[: 16 * n // 8]])) - 16 * n // 8
    return lag / (16 * fs)


@pytest.mark.parametrize("rate", [32000, 44100, 96000])
def test_resampling_keeps_itd(rate, kemar_file):
    h = load_hrtf("default", rate)
    for az in (30, 90, 135, 270):
        i = _nearest(h, _sph(az, 0))
        # Rebuild the unaligned pair from the aligned responses and the ear delays...
        n = 2048
        spec = np.fft.rfft(h.hrirs[i].astype(np.float64), n, axis=-1)
        k = np.arange(spec.shape[-1])
        shift = (h.ear_delays[i] - h.ear_delays[i].min()) * rate
        pair = np.fft.irfft(spec * np.exp(-2j * np.pi * k * shift[:, None] / n), n, axis=-1)
        got = _itd_xcorr(pair[0], pair[1], rate)
        # ...and compare with the ITD of the raw measurement at its own 44.1 kHz.
        raw = kemar_file.Data_IR[i]
        want = _itd_xcorr(raw[0], raw[1], 44100)
        assert got == pytest.approx(want, abs=15e-6), az


# --- other files ---------------------------------------------------------------------


def test_swapped_ears_warn_and_follow_the_data(tmp_path, kemar_file):
    path = _write_sofa(tmp_path / "swapped.sofa", kemar_file, ir=kemar_file.Data_IR[:, ::-1, :])
    with pytest.warns(HRTFWarning, match="swapped.sofa.*receiver 1"):
        h = load_hrtf(path, 44100)
    ref = load_hrtf("default", 44100)
    i = _nearest(h, [0, 1, 0])
    assert h.ear_delays[i, 0] < h.ear_delays[i, 1]
    assert _level_db(h.hrirs[i, 0]) > _level_db(h.hrirs[i, 1]) + 6
    np.testing.assert_array_equal(h.hrirs, ref.hrirs)
    # A cached second load warns again (the caller may filter it).
    with pytest.warns(HRTFWarning):
        assert load_hrtf(path, 44100) is h


def test_listener_view_and_cartesian_positions_are_honoured(tmp_path, kemar_file):
    # The same measurements described with the listener looking along global +y, and the
    # source positions rotated by +90 degrees azimuth to match, in cartesian metres.
    sp = kemar_file.SourcePosition
    cart = _sph(sp[:, 0] + 90, sp[:, 1]) * sp[:, 2:3]
    path = _write_sofa(tmp_path / "rotated.sofa", kemar_file, source=cart, source_type="cartesian", view=[[0, 1, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", HRTFWarning)
        h = load_hrtf(path, 48000)
    ref = load_hrtf("default", 48000)
    np.testing.assert_allclose(h.directions, ref.directions, atol=1e-12)
    np.testing.assert_allclose(h.ear_delays, ref.ear_delays, atol=1e-12)


@pytest.mark.parametrize("subset", ["horizontal", "upper"])
def test_partial_sets_fall_back_to_nearest_three(tmp_path, kemar_file, subset):
    # Horizontal plane only (a flat hull) or the upper hemisphere only (origin on the hull's
    # boundary): no valid triangulation, so inverse-distance weights of the 3 nearest.
    el = kemar_file.SourcePosition[:, 1]
    sel = el == 0 if subset == "horizontal" else el >= 0
    path = _write_sofa(
        tmp_path / f"{subset}.sofa", kemar_file, ir=kemar_file.Data_IR[sel], source=kemar_file.SourcePosition[sel]
    )
    h = load_hrtf(path, 44100)
    assert not h.triangulated and len(h.directions) == sel.sum()
    hrirs, delays = h.interpolate(h.directions)
    np.testing.assert_array_equal(hrirs, h.hrirs)
    idx, w = h.barycentric(_sph(2.5, 0))  # halfway between the 0 and 5 degree measurements
    near = {_nearest(h, _sph(0, 0)), _nearest(h, _sph(5, 0))}
    assert set(idx[0][w[0] > 0.3].tolist()) == near and np.isclose(w[0].sum(), 1)
    i = _nearest(h, [0, 1, 0])
    assert h.ear_delays[i, 0] < h.ear_delays[i, 1]


def test_junk_file_is_an_hrtf_error(tmp_path):
    path = tmp_path / "junk.sofa"
    path.write_bytes(b"\x00\x01 definitely not netCDF " * 50)
    with pytest.raises(HRTFError, match="junk.sofa.*SimpleFreeFieldHRIR") as err:
        load_hrtf(path, 48000)
    assert "\n" not in str(err.value)


def test_unsupported_convention_is_named(tmp_path, kemar_file):
    path = _write_sofa(tmp_path / "tf.sofa", kemar_file, convention="SimpleFreeFieldHRTF")
    with pytest.raises(HRTFError, match=r"tf\.sofa.*SimpleFreeFieldHRTF.*supported: SimpleFreeFieldHRIR"):
        load_hrtf(path, 48000)


def test_wrong_receiver_count(tmp_path, kemar_file):
    path = _write_sofa(tmp_path / "mono.sofa", kemar_file, ir=kemar_file.Data_IR[:, :1, :], receivers=[[0, 0.09, 0]])
    with pytest.raises(HRTFError, match="1 receivers"):
        load_hrtf(path, 48000)


def test_missing_file_is_an_hrtf_error(tmp_path):
    with pytest.raises(HRTFError, match="nowhere.sofa.*not found"):
        load_hrtf(tmp_path / "nowhere.sofa", 48000)


def test_cache_returns_same_object(kemar):
    assert load_hrtf("default", 48000) is kemar
    assert load_hrtf(PACKAGED, 48000).path == str(PACKAGED)
