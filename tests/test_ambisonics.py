"""Spherical harmonics and decoders against independent oracles."""

import numpy as np
import pytest
from scipy.special import sph_harm_y

from soundstage import ambisonics as A


def _real_sh_sn3d_from_scipy(dirs, order):
    """Independent construction: scipy's complex SH -> real SH, N3D -> SN3D, no Condon-Shortley."""
    az = np.arctan2(dirs[:, 1], dirs[:, 0])
    pol = np.arccos(np.clip(dirs[:, 2], -1, 1))
    out = []
    for l in range(order + 1):
        for m in range(-l, l + 1):
            Y = sph_harm_y(l, abs(m), pol, az)  # orthonormal, with Condon-Shortley phase
            cs = (-1) ** abs(m)
            if m > 0:
                r = np.sqrt(2) * cs * Y.real
            elif m < 0:
                r = np.sqrt(2) * cs * Y.imag
            else:
                r = Y.real
            n3d = r * np.sqrt(4 * np.pi)
            out.append(n3d / np.sqrt(2 * l + 1))
    return np.stack(out, axis=-1)


def test_sh_matches_scipy_construction():
    dirs = A.fibonacci_sphere(200)
    np.testing.assert_allclose(A.sh_sn3d(dirs, 3), _real_sh_sn3d_from_scipy(dirs, 3), atol=1e-10)


def test_sn3d_normalisation_and_orthogonality():
    dirs = A.fibonacci_sphere(20000)
    Y = A.sh_sn3d(dirs, 3)
    gram = Y.T @ Y / len(dirs)
    l = A.sh_orders(3)
    np.testing.assert_allclose(np.diag(gram), 1.0 / (2 * l + 1), atol=2e-3)
    off = gram - np.diag(np.diag(gram))
    assert np.max(np.abs(off)) < 2e-3


def test_ambix_first_order_convention():
    # AmbiX: W omni, ACN1 = Y (left), ACN2 = Z (up), ACN3 = X (ahead)
    Y = A.sh_sn3d(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), 1)
    np.testing.assert_allclose(Y, [[1, 0, 0, 1], [1, 1, 0, 0], [1, 0, 1, 0]], atol=1e-12)


def test_vbap_51_places_sources_on_speakers():
    dec = A.Decoder("5.1")
    for name, az in A.AZIMUTHS_51.items():
        a = np.deg2rad(az)
        g = dec.direct_gains(np.array([[np.cos(a), np.sin(a), 0.0]]))[0]
        assert A.CHANNELS_51[int(np.argmax(g))] == name
        assert g.max() == pytest.approx(1.0, abs=1e-9)
    # power is preserved everywhere on the horizontal circle
    phis = np.linspace(-np.pi, np.pi, 73)
    g = dec.direct_gains(np.stack([np.cos(phis), np.sin(phis), 0 * phis], axis=-1))
    np.testing.assert_allclose((g**2).sum(axis=1), 1.0, atol=1e-9)
    assert np.all(g[:, 3] == 0)  # LFE gets nothing from panning


def test_stereo_pan_folds_rear_and_clamps():
    g = A.stereo_pan(np.array([[0.0, 1.0, 0.0], [-1.0, 0.3, 0.0], [1.0, 0.0, 0.0]]))
    assert g[0, 0] == pytest.approx(1.0) and g[0, 1] == pytest.approx(0.0, abs=1e-9)
    assert g[1, 0] > g[1, 1]  # behind-left stays left
    assert g[2, 0] == pytest.approx(g[2, 1])


def test_allrad_decoder_points_at_the_source():
    dec = A.Decoder("5.1", sh_order=3)
    a = np.deg2rad(110)
    g = dec.sh_gains(np.array([[np.cos(a), np.sin(a), 0.0]]))[0]
    assert A.CHANNELS_51[int(np.argmax(g))] == "Ls"
