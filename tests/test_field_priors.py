"""The impulse-response field's early render (``irfield.early_prior``) against the engine itself.

With ``early_render`` the field is given the engine's direct sound and early
reflections at each pose and learns the rest. ``EarlyRenderer`` claims to compute
them exactly as the engine does; the oracle is the engine: a render without late
reverberation is the direct sound plus the early reflections and nothing else.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from soundstage.field.data import DEFAULT_ROOM, DEFAULT_SOURCE, SPEED_OF_SOUND, listener_axes  # noqa: E402
from soundstage.field.irfield import (  # noqa: E402
    IRFieldConfig, delay, early_prior, early_renderer, smoothed_log_magnitude,
)
from soundstage.field.spectral import stft  # noqa: E402
from soundstage.rooms.factory import room_from_spec  # noqa: E402

FS = 22050
SRC = np.array(DEFAULT_SOURCE, float)


def _matrix(position, yaw_deg):
    """A camera at ``position`` looking horizontally, turned ``yaw_deg`` from +x (Blender convention)."""
    y = np.radians(yaw_deg)
    ahead = np.array([np.cos(y), np.sin(y), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    left = np.cross(up, ahead)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2] = -left, up, -ahead  # camera X right, Y up, Z back
    m[:3, 3] = position
    return m


#: The source ahead-left, behind-right and to the left of the listener.
POSES = [_matrix([1.5, 1.0, 1.6], 0.0), _matrix([2.0, 3.5, 1.4], 120.0), _matrix([4.8, 1.2, 1.5], -75.0)]


def _engine_ir(tmp_path, matrix, room, order=2, length=4000):
    """The engine's binaural response to an impulse, without late reverberation, shape (2, length)."""
    from soundstage.audio_io import write_wav
    from soundstage.job import load_job
    from soundstage.render import render_job

    imp = np.zeros(length, np.float32)
    imp[0] = 1.0
    write_wav(tmp_path / "impulse.wav", imp, FS)
    job = {"version": 1, "sample_rate": FS, "fps": FS / length, "frame_start": 1, "frame_end": 1,
           "listener": {"name": "L", "matrix_world": np.asarray(matrix).reshape(-1).tolist()},
           "sources": [{"name": "S", "audio": str(tmp_path / "impulse.wav"), "position": SRC.tolist()}],
           "output": {"format": "binaural", "path": str(tmp_path / "unused.wav")},
           "render": {"late_reverb": False, "reflection_order": order}}
    if room is not None:
        job["room"] = room
    return render_job(load_job(job)).audio[:length].T.astype(np.float64)


def _pose(matrix):
    pos, rot = listener_axes(np.asarray(matrix)[None])
    return pos, rot, float(np.linalg.norm(pos[0] - SRC))


def _lowpass(x):
    """Below 7 kHz: above it the engine's fractional-delay reader rolls the direct sound off
    (by up to 7 dB at Nyquist), which the field's learned per-bin gain takes up."""
    from scipy.signal import butter, sosfiltfilt

    return sosfiltfilt(butter(8, 7000, fs=FS, output="sos"), x)


@pytest.mark.parametrize("room", [None, DEFAULT_ROOM], ids=["free-field", "shoebox"])
@pytest.mark.parametrize("k", range(len(POSES)))
def test_early_render_is_the_engines_response_sample_by_sample(tmp_path, room, k):
    """Direct sound (free field) and direct sound + reflections to order 2 (shoebox), each ear, three head turns."""
    cfg = IRFieldConfig(early_render=True, prior_order=2, ir_samples=4000)
    pos, rot, d = _pose(POSES[k])
    ir = _engine_ir(tmp_path, POSES[k], room)
    aligned = delay(torch.as_tensor(ir[None]), torch.as_tensor([cfg.pre_samples - d / SPEED_OF_SOUND * FS]),
                    cfg.ir_samples)[0].numpy()
    got = early_renderer(cfg).render(None if room is None else room_from_spec(room, "room"), SRC, pos, rot, 2)[0]
    a, b = _lowpass(aligned), _lowpass(got)
    for ear in range(2):
        err = np.sum((a[ear] - b[ear]) ** 2) / np.sum(a[ear] ** 2)
        assert err < 1e-3, (ear, err)  # better than -30 dB
    # the comparison can fail: the same response one sample late is far off
    assert np.sum((a - np.roll(b, 1, -1)) ** 2) / np.sum(a ** 2) > 1e-2


def test_early_prior_is_the_log_energy_of_the_early_render_and_follows_the_head():
    """early_prior = smoothed log STFT energy of the render; turning the head moves energy between the ears."""
    cfg = IRFieldConfig(early_render=True, prior_order=2, ir_samples=4000)
    pos, rot, d = _pose(POSES[0])
    room = room_from_spec(DEFAULT_ROOM, "room")
    y = early_renderer(cfg).render(room, SRC, pos, rot, 2)
    want = 2 * smoothed_log_magnitude(stft(torch.as_tensor(y), cfg.spectral).abs().numpy() ** 2, cfg).numpy()
    got = early_prior(DEFAULT_ROOM, SRC, pos, rot, cfg)
    assert got.shape == (1, 2, cfg.n_frames, cfg.n_fft // 2 + 1)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # The source is ahead-left of POSES[0]: the left ear (0) gets more of it; turned
    # round by 180 degrees, the right ear does.
    turned = _pose(_matrix([1.5, 1.0, 1.6], 180.0))[1]
    e0 = np.exp(got[0]).sum((1, 2))
    e1 = np.exp(early_prior(DEFAULT_ROOM, SRC, pos, turned, cfg)[0]).sum((1, 2))
    assert e0[0] > 1.5 * e0[1] and e1[1] > 1.5 * e1[0]
