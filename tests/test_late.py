"""The late tail carries the energy of the room's histogram, wherever it arrives.

Oracle: conservation of energy. ``late.late_tail`` turns an energy histogram
(1 ms bins) into noise; the noise's energy over any stretch of time must be the
histogram's energy there, however spiky the histogram (a shoebox's image-source
histogram has arrivals only in some bins for the first tens of milliseconds).
"""

import numpy as np
import pytest

from soundstage.ambisonics import Decoder
from soundstage.late import _NPERSEG, BIN, _gain_grid, late_tail, residual_energy
from soundstage.materials import BANDS, air_attenuation
from soundstage.rooms.factory import room_from_spec

FS = 22050
HOP = _NPERSEG // 4  # the late tail's STFT hop

ROOM = {"type": "shoebox", "min": [0.0, 0.0, 0.0], "max": [6.0, 5.0, 3.0],
        "materials": {"floor": "carpet_cotton", "ceiling": {"absorption": 0.2}, "walls": {"absorption": 0.25}}}


def _spiky(n_bins=400, every=6, t60=0.5, bands=len(BANDS)):
    """A decaying histogram with one arrival every ``every`` ms, close to the STFT hop (5.8 ms)."""
    t = (np.arange(n_bins) + 0.5) * BIN
    h = np.zeros(n_bins)
    h[10::every] = np.exp(-6.91 * t[10::every] / t60)
    return np.tile(h, (bands, 1))


def _room_residual(listener):
    room = room_from_spec(ROOM)
    air = air_attenuation(np.asarray(BANDS, float))
    return residual_energy(room, np.array([1.5, 2.5, 1.5]), np.asarray(listener, float), air=air, c=343.0,
                           reflection_order=2, rng=None)


@pytest.mark.parametrize("which", ["spiky", "shoebox"])
def test_frame_envelopes_hold_the_histograms_energy(which):
    e = _spiky() if which == "spiky" else _room_residual([4.2, 1.1, 1.6])
    n_frames = int(np.ceil(e.shape[1] * BIN * FS / HOP)) + 2
    env = _gain_grid(e, n_frames, HOP, FS)
    frame_energy = env ** 2 * HOP  # (B, frames)
    np.testing.assert_allclose(frame_energy.sum(1), e.sum(1), rtol=1e-9)
    # Every 10 frames (58 ms) hold what arrived in their span, to the half-hop at either end.
    for a in range(0, n_frames - 10, 10):
        lo, hi = (a - 0.5) * HOP / FS / BIN, (a + 9.5) * HOP / FS / BIN
        inner = e[:, int(np.ceil(max(lo, 0))):int(np.floor(hi))].sum(1)
        outer = e[:, int(np.floor(max(lo, 0))):int(np.ceil(hi))].sum(1)
        got = frame_energy[:, a:a + 10].sum(1)
        assert np.all(got >= inner * (1 - 1e-9)) and np.all(got <= outer * (1 + 1e-9) + 1e-300)


def test_noise_follows_a_spiky_histogram():
    """Averaged over noise draws, the tail's energy per 60 ms is the histogram's within 0.5 dB."""
    e = _spiky()
    dec = Decoder("ambix", 0)  # W only: white noise shaped by the band envelopes, unit diffuse gain
    power = np.mean([late_tail(e, fs=FS, decoder=dec, seed=s)[:, 0].astype(float) ** 2 for s in range(32)], 0)
    errors = []
    for a in range(30, 330, 60):
        got = power[int(a * BIN * FS):int((a + 60) * BIN * FS)].sum()
        errors.append(10 * np.log10(got / e[0, a:a + 60].sum()))
    assert np.max(np.abs(errors)) < 0.5, errors
