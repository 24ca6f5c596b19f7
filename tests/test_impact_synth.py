"""Impact synthesis of soundstage.impact: contact, modal response, determinism.

Oracles: Hertz contact integrated numerically (Johnson, *Contact Mechanics*, 11.4),
the damped oscillator integrated numerically (scipy.signal.lsim), numerical
quadrature, slow reference implementations.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.signal import lsim

trimesh = pytest.importorskip("trimesh")

from soundstage.impact import synth  # noqa: E402
from soundstage.impact.materials import get_material  # noqa: E402
from soundstage.impact.modal import modal_model  # noqa: E402
from soundstage.impact.synth import ImpactError, ModeSet, contact_time, half_sine_transform, render, synthesize  # noqa: E402,E501


@pytest.fixture(scope="module")
def bar_models(tmp_path_factory):
    """The same 30 x 5 x 2 cm bar in steel and in wood (modes cached per module)."""
    import os

    old = os.environ.get("SOUNDSTAGE_CACHE_DIR")
    os.environ["SOUNDSTAGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    bar = trimesh.creation.box(extents=[0.3, 0.05, 0.02])
    out = {m: modal_model(bar, m, budget=400, n_modes=24) for m in ("steel", "wood")}
    if old is None:
        del os.environ["SOUNDSTAGE_CACHE_DIR"]
    else:
        os.environ["SOUNDSTAGE_CACHE_DIR"] = old
    return out


@pytest.fixture(scope="module")
def plate_model():
    plate = trimesh.creation.box(extents=[0.3, 0.3, 0.003])
    return modal_model(plate, "steel", budget=500, n_modes=32, cache=False)


def test_modal_sum_fast_equals_reference():
    rng = np.random.default_rng(0)
    K = 37
    amps = rng.standard_normal(K) + 1j * rng.standard_normal(K)
    w = 2 * np.pi * rng.uniform(50, 20000, K)
    lam = -rng.uniform(0.1, 300, K) + 1j * w
    fast = synth.modal_sum(amps, lam, 5000, 48000.0, start=3)
    ref = synth.modal_sum_reference(amps, lam, 5000, 48000.0, start=3)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize("lam", [-5 + 2j * np.pi * 1000, -1e-3 + 1j * np.pi / 1e-4, -300 + 2j * np.pi * 15000])
def test_half_sine_transform_matches_quadrature(lam):
    T = 1e-4  # the second case sits exactly on the pulse's own frequency
    x, w = np.polynomial.legendre.leggauss(200)  # smooth integrand: Gauss-Legendre converges fast
    for t in (0.3 * T, T):
        s = (x + 1) * t / 2
        ref = np.sum(w * np.sin(np.pi * s / T) * np.exp(-lam * s)) * t / 2
        got = half_sine_transform(np.array([lam]), T, t)[0]
        assert got == pytest.approx(ref, rel=1e-9)


def test_single_mode_matches_numerically_integrated_oscillator():
    f0, zeta, b, gain, F, T, fs = 1500.0, 0.01, 0.3, 2.0, 10.0, 2e-4, 48000
    y = render(ModeSet(np.array([f0]), np.array([zeta]), np.array([gain]), np.array([b])), F, T, fs, 0.05,
               fade=0.0)
    # q'' + 2 z w q' + w^2 q = b F(t), output gain * q', integrated at 64 x the rate.
    w = 2 * np.pi * f0
    over = 64
    t = np.arange(int(0.05 * fs) * over) / (fs * over)
    force = np.where(t < T, F * np.sin(np.pi * t / T), 0.0)
    A = [[0, 1], [-w * w, -2 * zeta * w]]
    _, _, x = lsim((A, [[0], [b]], [[1, 0]], [[0]]), force, t)
    ref = gain * x[::over, 1]
    np.testing.assert_allclose(y, ref, atol=2e-3 * np.abs(ref).max())


@pytest.mark.parametrize("material", ["steel", "wood", "glass"])
def test_contact_time_matches_integrated_hertz_impact(material):
    # A 6 mm steel ball hits a flat of `material`: integrate m x'' = -k x^1.5 until it
    # leaves, note the peak force, and ask contact_time for that force.
    st, ob = get_material("steel"), get_material(material)
    striker = synth.DEFAULT_STRIKER
    e_star = 1 / ((1 - st.poisson**2) / st.youngs_modulus + (1 - ob.poisson**2) / ob.youngs_modulus)
    k = 4 / 3 * e_star * np.sqrt(striker.radius)
    v = 0.2

    def rhs(_, y):
        return [y[1], -k * max(y[0], 0.0) ** 1.5 / striker.mass]

    def leaves(t, y):
        return y[0] if t > 0 else 1.0

    leaves.terminal, leaves.direction = True, -1
    sol = solve_ivp(rhs, (0, 1e-2), [0.0, v], events=leaves, rtol=1e-10, atol=1e-15, max_step=2e-7)
    t_num = sol.t_events[0][0]
    f_peak = k * np.max(sol.y[0]) ** 1.5
    assert contact_time(material, f_peak) == pytest.approx(t_num, rel=0.01)


def test_softer_materials_give_longer_contacts():
    times = [contact_time(m, 20.0) for m in ("steel", "glass", "wood", "plastic", "rubber")]
    assert all(a < b for a, b in zip(times, times[1:]))
    assert contact_time("steel", 200.0) < contact_time("steel", 2.0)  # harder hits are shorter


def _decay_time(y, fs, drop_db=20.0):
    """Time for the Schroeder backward-integrated energy to fall by drop_db."""
    e = np.cumsum((y.astype(float) ** 2)[::-1])[::-1]
    db = 10 * np.log10(e / e[0] + 1e-30)
    return np.argmax(db <= -drop_db) / fs if np.any(db <= -drop_db) else len(y) / fs


def test_steel_rings_longer_than_wood(bar_models):
    p, n = [0.14, 0.0, 0.01], [0, 0, 1]
    ys = synthesize(bar_models["steel"], p, n, duration=3.0)
    yw = synthesize(bar_models["wood"], p, n, duration=3.0)
    assert _decay_time(ys, 48000) > 10 * _decay_time(yw, 48000)


def test_plate_centre_and_edge_hits_sound_different(plate_model):
    fs = 48000
    top = [0, 0, 1]
    centre = synthesize(plate_model, [0.0, 0.0, 0.0015], top, duration=1.0, jitter=0.0)
    edge = synthesize(plate_model, [0.13, 0.02, 0.0015], top, duration=1.0, jitter=0.0)
    # Third-octave band levels, each normalised to its total energy.
    f = np.fft.rfftfreq(fs, 1 / fs)

    def bands(y):
        p = np.abs(np.fft.rfft(y, fs)) ** 2
        edges = 100 * 2 ** (np.arange(0, 22) / 3)
        e = np.array([p[(f >= a) & (f < b)].sum() for a, b in zip(edges[:-1], edges[1:])])
        return 10 * np.log10(e / e.sum() + 1e-20)

    diff = np.abs(bands(centre) - bands(edge))
    assert diff.max() > 10.0  # dB in some band
    # At the centre, modes antisymmetric about it are not excited at all.
    ec = np.abs(plate_model.excitation([0, 0, 0.0015], top))
    ee = np.abs(plate_model.excitation([0.13, 0.02, 0.0015], top))
    assert np.sum(ec < 1e-3 * ec.max()) >= 4 and np.sum(ee < 1e-3 * ee.max()) < np.sum(ec < 1e-3 * ec.max())


def test_hits_are_deterministic_for_a_seed(bar_models):
    m = bar_models["steel"]
    a = synthesize(m, [0.1, 0.01, 0.01], [0, 0, 1], seed=7)
    b = synthesize(m, [0.1, 0.01, 0.01], [0, 0, 1], seed=7)
    c = synthesize(m, [0.1, 0.01, 0.01], [0, 0, 1], seed=8)
    assert a.dtype == np.float32 and a.shape == (96000,) and np.all(np.isfinite(a))
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)
    d = synthesize(m, [0.1, 0.01, 0.01], [0, 0, 1], seed=1, jitter=0.0)
    e = synthesize(m, [0.1, 0.01, 0.01], [0, 0, 1], seed=2, jitter=0.0)
    assert d.tobytes() == e.tobytes()


def test_output_rate_length_and_nyquist(bar_models):
    m = bar_models["steel"]
    y = synthesize(m, [0.1, 0.0, 0.01], [0, 0, 1], sample_rate=22050, duration=0.5)
    assert y.shape == (11025,)
    # Nothing above Nyquist is synthesised (it would alias): a rate below the
    # first mode gives silence.
    silent = synthesize(m, [0.1, 0.0, 0.01], [0, 0, 1], sample_rate=8000, duration=0.1)
    if m.frequencies[0] > 0.475 * 8000:
        assert not np.any(silent)


@pytest.mark.parametrize("kw,msg", [
    (dict(force=0.0), "force"), (dict(sample_rate=100), "sample rate"), (dict(duration=-1.0), "duration"),
])
def test_bad_parameters_raise(bar_models, kw, msg):
    with pytest.raises(ImpactError, match=msg):
        synthesize(bar_models["wood"], [0.1, 0, 0.01], [0, 0, 1], **kw)


def test_bad_point_or_normal_raise(bar_models):
    with pytest.raises(ImpactError):
        synthesize(bar_models["wood"], [np.nan, 0, 0], [0, 0, 1])
    with pytest.raises(ImpactError):
        synthesize(bar_models["wood"], [0, 0, 0.01], [0, 0, 0])
