"""Modal analysis of soundstage.impact against analytic vibration theory.

Oracles:
* Euler-Bernoulli free-free beam: f_n = (beta_n L)^2 / (2 pi L^2) sqrt(E I / (rho A)),
  beta_n L = 4.7300, 7.8532, 10.9956 (e.g. Blevins, *Formulas for Natural Frequency and
  Mode Shape*, Table 8-1).
* Free square Kirchhoff plate, nu = 0.3: lambda^2 = 13.468, 19.596, 24.270 with
  f = lambda^2 / (2 pi a^2) sqrt(D / (rho h)) (Leissa, *Vibration of Plates*, NASA
  SP-160, 1969, free-free-free-free square plate).
* Thin ring, in-plane flexure n = 2: w = (t / R^2) sqrt(E' / (12 rho)) n (n^2 - 1) / sqrt(n^2 + 1)
  with E' = E / (1 - nu^2) for a wide ring (Soedel, *Vibrations of Shells and Plates*).
* Dimensional analysis: scaling a body by s divides its frequencies by s.
"""

from __future__ import annotations

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")

from soundstage.impact.materials import get_material  # noqa: E402
from soundstage.impact.modal import ModalModel, cache_dir, modal_model  # noqa: E402


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own empty modal cache."""
    monkeypatch.setenv("SOUNDSTAGE_CACHE_DIR", str(tmp_path / "cache"))


def _distinct(freqs, rel=0.005):
    """Frequencies with near-equal ones (degenerate pairs) merged."""
    out = []
    for f in np.sort(freqs):
        if not out or f > out[-1] * (1 + rel):
            out.append(f)
    return np.array(out)


def test_free_free_beam_matches_euler_bernoulli():
    steel = get_material("steel")
    L, a = 1.0, 0.02
    model = modal_model(trimesh.creation.box(extents=[L, a, a]), steel, budget=600, n_modes=8, cache=False)
    f = _distinct(model.frequencies)[:3]
    I, A = a**4 / 12, a * a
    f_eb = np.array([4.7300, 7.8532, 10.9956]) ** 2 / (2 * np.pi * L**2) * np.sqrt(steel.youngs_modulus * I /
                                                                                  (steel.density * A))
    assert f[0] == pytest.approx(f_eb[0], rel=0.10)
    assert f[1] / f[0] == pytest.approx(2.7565, rel=0.05)
    assert f[2] / f[0] == pytest.approx(5.4039, rel=0.05)
    # The element is built not to lock: in fact it lands within 1 % here.
    assert f[0] == pytest.approx(f_eb[0], rel=0.01)


def test_thin_free_plate_matches_leissa_not_artificially_stiff():
    steel = get_material("steel")
    a, h = 0.2, 0.002
    model = modal_model(trimesh.creation.box(extents=[a, a, h]), steel, budget=600, n_modes=6, cache=False)
    D = steel.youngs_modulus * h**3 / (12 * (1 - steel.poisson**2))
    f_ref = np.array([13.468, 19.596, 24.270]) / (2 * np.pi * a**2) * np.sqrt(D / (steel.density * h))
    np.testing.assert_allclose(model.frequencies[:3], f_ref, rtol=0.03)


def test_curved_thin_wall_ring_mode():
    # A short ceramic cylinder (a cup without a bottom), 5 mm wall cutting across the grid.
    cer = get_material("ceramic")
    r0, r1 = 0.040, 0.045
    model = modal_model(trimesh.creation.annulus(r_min=r0, r_max=r1, height=0.09, sections=48), cer,
                        budget=3000, n_modes=6, cache=False)
    t, R, n = r1 - r0, (r0 + r1) / 2, 2
    e_wide = cer.youngs_modulus / (1 - cer.poisson**2)
    f_ring = t / R**2 * np.sqrt(e_wide / (12 * cer.density)) * n * (n * n - 1) / np.sqrt(n * n + 1) / (2 * np.pi)
    assert model.frequencies[0] == pytest.approx(f_ring, rel=0.12)


def test_scaling_a_shape_by_two_halves_its_frequencies():
    box = trimesh.creation.box(extents=[0.3, 0.2, 0.1])
    big = box.copy()
    big.apply_scale(2.0)
    f1 = modal_model(box, "aluminium", budget=500, n_modes=6, cache=False).frequencies
    f2 = modal_model(big, "aluminium", budget=500, n_modes=6, cache=False).frequencies
    np.testing.assert_allclose(f2[:5] / f1[:5], 0.5, rtol=0.05)


def test_frequencies_scale_with_bar_wave_speed():
    box = trimesh.creation.box(extents=[0.3, 0.05, 0.02])
    fs = modal_model(box, "steel", budget=300, n_modes=4, cache=False).frequencies
    fa = modal_model(box, {"name": "steel-like", "density": 2 * 7850, "youngs_modulus": 207e9, "poisson": 0.30,
                           "loss_factor": 1e-3}, budget=300, n_modes=4, cache=False).frequencies
    np.testing.assert_allclose(fa / fs, 1 / np.sqrt(2), rtol=1e-6)


def test_mass_and_surface_samples():
    box = trimesh.creation.box(extents=[0.3, 0.2, 0.1])
    m = modal_model(box, "wood", budget=400, n_modes=4, cache=False)
    assert m.mass == pytest.approx(700 * 0.006, rel=1e-6)
    assert m.surface_points.shape == (len(m.surface_normals), 3)
    assert m.surface_modes.shape == (len(m.surface_points), m.n_modes)
    # Mode shapes interpolated at the samples agree with the stored normal components.
    phi = m.modes_at(m.surface_points[:5])
    np.testing.assert_allclose(np.einsum("pik,pi->pk", phi, m.surface_normals[:5]), m.surface_modes[:5], rtol=1e-5,
                               atol=1e-6 * np.abs(m.surface_modes).max())


def test_cache_round_trip_and_key(tmp_path):
    box = trimesh.creation.box(extents=[0.2, 0.1, 0.05])
    a = modal_model(box, "glass", budget=300, n_modes=5)
    assert a.info["cache"] == "written"
    files = list(cache_dir().glob("*.npz"))
    assert len(files) == 1 and str(tmp_path) in str(files[0])
    b = modal_model(box, "glass", budget=300, n_modes=5)
    assert b.info["cache"] == "hit"
    np.testing.assert_array_equal(a.frequencies, b.frequencies)
    np.testing.assert_array_equal(a.node_modes, b.node_modes)
    # Damping is not part of the key: a glass with another loss factor reuses the modes.
    c = modal_model(box, {"name": "lossy glass", "density": 2500, "youngs_modulus": 69e9, "poisson": 0.23,
                          "loss_factor": 0.05}, budget=300, n_modes=5)
    assert c.info["cache"] == "hit" and c.material.loss_factor == 0.05
    # Another stiffness is another entry; a corrupt entry is recomputed.
    modal_model(box, "steel", budget=300, n_modes=5)
    assert len(list(cache_dir().glob("*.npz"))) == 2
    files[0].write_bytes(b"not an npz")
    d = modal_model(box, "glass", budget=300, n_modes=5)
    assert d.info["cache"] == "written"
    np.testing.assert_array_equal(a.frequencies, d.frequencies)
    assert isinstance(ModalModel.load(files[0]), ModalModel)


def test_disconnected_parts_ring_independently():
    a = trimesh.creation.box(extents=[0.2, 0.05, 0.02])
    b = a.copy()
    b.apply_translation([0, 0.2, 0])
    both = trimesh.util.concatenate([a, b])
    one = modal_model(a, "steel", budget=300, n_modes=4, cache=False)
    two = modal_model(both, "steel", budget=600, n_modes=8, cache=False)
    assert two.info["parts"] == 2
    # Each distinct frequency of the single bar now appears twice.
    np.testing.assert_allclose(two.frequencies[0:2], one.frequencies[0], rtol=0.02)
