"""What a bake must sound like, checked against analytic physics and pyroomacoustics."""

import numpy as np
import pytest

from jobkit import camera_matrix, make_job, write_impulse, write_tone
from soundstage import metrics
from soundstage.job import load_job
from soundstage.render import render_job

FS = 48000
C = 343.0


def render(job):
    return render_job(load_job(job)).audio.astype(np.float64)


def first_arrival(x):
    """Sub-sample time of the peak of a band-limited impulse (parabolic interpolation)."""
    a = np.abs(x)
    i = int(np.argmax(a))
    y0, y1, y2 = a[i - 1], a[i], a[i + 1]
    return i + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)


@pytest.mark.parametrize("d", [1.0, 3.7, 10.0])
def test_direct_sound_arrives_at_d_over_c(tmp_path, d):
    imp = write_impulse(tmp_path / "imp.wav")
    cam = camera_matrix([0, 0, 1.5])
    w = render(make_job(imp, [d, 0, 1.5], cam, out=tmp_path / "o.wav"))[:, 0]
    assert abs(first_arrival(w) - d / C * FS) < 1.0


def test_level_falls_6db_per_doubling(tmp_path):
    imp = write_impulse(tmp_path / "imp.wav")
    cam = camera_matrix([0, 0, 1.5])
    levels = []
    for d in (1.0, 2.0, 4.0, 8.0):
        w = render(make_job(imp, [0, d, 1.5], cam, out=tmp_path / "o.wav"))[:, 0]
        levels.append(10 * np.log10(np.sum(w**2)))
    drops = -np.diff(levels)
    assert np.all(np.abs(drops - 6.0) < 0.5), drops


def test_ambix_front_source_x_in_phase_with_w_and_y_silent(tmp_path):
    imp = write_impulse(tmp_path / "imp.wav")
    a = render(make_job(imp, [3, 0, 1.5], camera_matrix([0, 0, 1.5]), order=3, out=tmp_path / "o.wav"))
    W, Y, X = a[:, 0], a[:, 1], a[:, 3]
    assert np.corrcoef(W, X)[0, 1] > 0.999
    assert np.sum(Y**2) < 1e-6 * np.sum(W**2)


def test_ambix_follows_the_turning_camera(tmp_path):
    # Same world source, camera turned 90 degrees left: the source is now on the right (-Y).
    imp = write_impulse(tmp_path / "imp.wav")
    a = render(make_job(imp, [3, 0, 1.5], camera_matrix([0, 0, 1.5], yaw_deg=90), out=tmp_path / "o.wav"))
    W, Y, X = a[:, 0], a[:, 1], a[:, 3]
    assert np.corrcoef(W, -Y)[0, 1] > 0.999
    assert np.sum(X**2) < 1e-6 * np.sum(W**2)


def test_51_source_at_110_left_comes_out_of_ls(tmp_path):
    imp = write_impulse(tmp_path / "imp.wav")
    a = np.deg2rad(110)
    y = render(make_job(imp, [3 * np.cos(a), 3 * np.sin(a), 1.5], camera_matrix([0, 0, 1.5]), fmt="5.1",
                        out=tmp_path / "o.wav"))
    e = np.sum(y**2, axis=0)
    names = ["L", "R", "C", "LFE", "Ls", "Rs"]
    assert names[int(np.argmax(e))] == "Ls"
    assert e[4] > 0.9 * e[[0, 1, 2, 4, 5]].sum()


def _frequency(x, fs):
    """Frequency of a tone segment: FFT peak refined by parabolic interpolation, Hann window."""
    n = len(x)
    X = np.abs(np.fft.rfft(x * np.hanning(n), n=8 * n))
    k = int(np.argmax(X))
    a, b, c = np.log(X[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * fs / (8 * n)


def test_doppler_of_a_passing_source(tmp_path):
    # A 1 kHz source passes the listener at 20 m/s, 2 m to the side; 4 s, pass at t = 2 s.
    f0, v, fps, frames = 1000.0, 20.0, 30, 120
    tone = write_tone(tmp_path / "tone.wav", f0, seconds=4.5)
    t_frames = np.arange(frames) / fps
    src = np.stack([-40 + v * t_frames, np.full(frames, 2.0), np.full(frames, 1.5)], axis=1)
    y = render(make_job(tone, src, camera_matrix([0, 0, 1.5]), fps=fps, frames=frames, out=tmp_path / "o.wav"))
    w = y[:, 0]
    for t_obs in (0.8, 3.2):
        # emission time te: c (t_obs - te) = |L - S(te)|; solve by iteration
        te = t_obs
        for _ in range(50):
            s = np.array([-40 + v * te, 2.0, 1.5])
            te = t_obs - np.linalg.norm(s - [0, 0, 1.5]) / C
        s = np.array([-40 + v * te, 2.0, 1.5])
        u = (np.array([0, 0, 1.5]) - s) / np.linalg.norm(np.array([0, 0, 1.5]) - s)
        v_radial = v * u[0]  # source velocity toward the listener
        expected = f0 * C / (C - v_radial)
        seg = w[int((t_obs - 0.05) * FS) : int((t_obs + 0.05) * FS)]
        got = _frequency(seg, FS)
        assert abs(got / expected - 1) < 0.005, (t_obs, got, expected)
    assert _frequency(w[int(0.75 * FS): int(0.85 * FS)], FS) > f0 > _frequency(w[int(3.15 * FS): int(3.25 * FS)], FS)


def test_teleporting_source_does_not_click(tmp_path):
    f0, fps, frames = 440.0, 24, 48
    tone = write_tone(tmp_path / "tone.wav", f0, seconds=2.5, amp=0.5)
    # 18 m toward the listener within one frame: swept, it would move faster than sound.
    src = np.array([[20.0, 1.0, 1.5]] * 24 + [[2.0, -1.0, 1.5]] * 24)
    for fmt in ("ambix", "stereo", "binaural"):
        y = render(make_job(tone, src, camera_matrix([0, 0, 1.5]), fmt=fmt, fps=fps, frames=frames,
                            out=tmp_path / "o.wav"))
        # A sine of amplitude A at f changes by at most 2*pi*f/fs*A per sample; a click jumps far more.
        jump = np.max(np.abs(np.diff(y, axis=0)))
        amp = np.max(np.abs(y))
        assert jump < 1.2 * 2 * np.pi * f0 / FS * amp, (fmt, jump, amp)


def _decay_matches_pyroomacoustics(tmp_path, room, alpha):
    """Bake an impulse in a 6 x 5 x 3 m ``room``; T30/EDT within 10 % and C50 within 1.5 dB of pyroomacoustics."""
    pra = pytest.importorskip("pyroomacoustics")
    imp = write_impulse(tmp_path / "imp.wav", seconds=1.5)
    src, lis = [4.1, 1.3, 1.6], [1.5, 3.2, 1.2]
    job = make_job(imp, src, camera_matrix(lis), room=room, frames=36, out=tmp_path / "o.wav",
                   render={"air_absorption": False})
    w = render(job)[:, 0]
    ref_room = pra.ShoeBox([6, 5, 3], fs=FS, materials=pra.Material(alpha), max_order=60, air_absorption=False)
    ref_room.add_source(src)
    ref_room.add_microphone(lis)
    ref_room.compute_rir()
    ref = np.asarray(ref_room.rir[0][0])
    assert metrics.t30(w, FS) == pytest.approx(metrics.t30(ref, FS), rel=0.10)
    assert metrics.edt(w, FS) == pytest.approx(metrics.edt(ref, FS), rel=0.10)
    assert abs(metrics.clarity(w, FS) - metrics.clarity(ref, FS)) < 1.5


@pytest.mark.parametrize("alpha", [0.2, 0.35])
def test_shoebox_decay_matches_pyroomacoustics(tmp_path, alpha):
    room = {"type": "shoebox", "min": [0, 0, 0], "max": [6, 5, 3], "material": {"absorption": alpha}}
    _decay_matches_pyroomacoustics(tmp_path, room, alpha)


def test_first_order_reflections_arrive_from_their_images(tmp_path):
    """Each wall reflection arrives at |image - listener| / c from the image's direction (AmbiX)."""
    imp = write_impulse(tmp_path / "imp.wav", seconds=0.3)
    lo, hi = np.array([0.0, 0.0, 0.0]), np.array([9.0, 7.0, 4.0])
    src, lis = np.array([2.0, 2.5, 1.2]), np.array([6.0, 4.0, 2.5])
    room = {"type": "shoebox", "min": lo.tolist(), "max": hi.tolist(), "material": {"absorption": 0.1}}
    # camera turned 30 degrees so listener and world frames differ
    yaw = 30.0
    job = make_job(imp, src, camera_matrix(lis, yaw_deg=yaw), room=room, frames=7, out=tmp_path / "o.wav",
                   render={"reflection_order": 1, "late_reverb": False, "air_absorption": False})
    a = render(job)
    c, s = np.cos(np.deg2rad(-yaw)), np.sin(np.deg2rad(-yaw))
    to_listener = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])  # world -> listener frame
    for axis in range(3):
        for wall in (lo[axis], hi[axis]):
            img = src.copy()
            img[axis] = 2 * wall - src[axis]
            d = np.linalg.norm(img - lis)
            n = int(round(d / C * FS))
            win = slice(n - 3, n + 4)
            w = a[win, 0]
            k = int(np.argmax(np.abs(w)))
            comp = a[win][k, [3, 1, 2]] / w[k]  # X, Y, Z over W
            expect = to_listener @ ((img - lis) / d)
            np.testing.assert_allclose(comp, expect, atol=0.02)
            # a band-limited impulse at a fractional delay spreads over a few samples
            # but keeps its energy: amplitude = sqrt(1 - alpha) / d
            energy = np.sum(a[n - 8 : n + 9, 0] ** 2)
            assert np.sqrt(energy) == pytest.approx(np.sqrt(0.9) / d, rel=0.05)


def test_mesh_box_room_decay_matches_pyroomacoustics(tmp_path):
    """The same room as a closed triangle mesh (ray-traced late part) decays like pyroomacoustics' image sources.

    The mesh path renders its early reflections from image sources and leaves those
    paths out of the ray-traced histogram, so nothing is counted twice.
    """
    from soundstage.rooms.mesh import box_mesh

    v, f = box_mesh([0, 0, 0], [6, 5, 3])
    room = {"type": "mesh", "name": "Box", "vertices": v.tolist(), "faces": f.tolist(),
            "materials": [{"absorption": 0.2}], "face_materials": [0] * len(f)}
    _decay_matches_pyroomacoustics(tmp_path, room, 0.2)
