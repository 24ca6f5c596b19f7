"""Capture, RWAVS and impulse-response data: readers, the synthetic generators, and bad input."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from jobkit import camera_matrix  # noqa: E402

from soundstage.errors import AudioError, SoundstageError  # noqa: E402
from soundstage.field import data as D  # noqa: E402


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """An 8 s engine-simulated recording walk (capture layout)."""
    d = tmp_path_factory.mktemp("walk")
    D.synthetic_walk(d, seconds=8.0, seed=3)
    return d


def _copy(walk, tmp_path):
    dst = tmp_path / "cap"
    shutil.copytree(walk, dst)
    return dst


def _edit(folder, **changes):
    doc = json.loads((folder / "capture.json").read_text())
    doc.update(changes)
    (folder / "capture.json").write_text(json.dumps(doc))


def test_source_azimuth_convention():
    # jobkit's camera at yaw 0 looks along +X with its left at +Y.
    m = camera_matrix([0.0, 0.0, 1.5], 0.0)
    pos, rot = D.listener_axes(m[None])
    for src, expected in (([2, 0, 1.5], 0.0), ([0, 2, 1.5], np.pi / 2), ([0, -2, 1.5], -np.pi / 2),
                          ([-2, 0.001, 1.5], np.pi)):
        assert D.source_azimuth(pos, rot, np.array(src, float))[0] == pytest.approx(expected, abs=1e-3)


def test_synthetic_walk_reads_back(walk):
    cap = D.read_capture(walk)
    assert cap.layout == "capture" and cap.metric
    assert cap.recording.shape == (8 * D.FIELD_RATE, 2)
    assert np.max(np.abs(cap.recording)) == pytest.approx(1.0)
    assert cap.room["type"] == "shoebox"
    (a, b), = cap.holdout
    assert a == pytest.approx(0.8 * b, rel=1e-6)
    tr, va = cap.clip_centres("train"), cap.clip_centres("val")
    assert len(tr) > 0 and len(va) > 0
    # No training clip window overlaps the held-out range; every validation window lies inside it.
    assert np.all((tr + 0.5 <= a + 1e-9) | (tr - 0.5 >= b - 1e-9))
    assert np.all((va - 0.5 >= a - 1e-9) & (va + 0.5 <= b + 1e-9))
    # Poses follow the walk the engine rendered.
    t, mats = D.walk_path(8.0, 10.0, D.DEFAULT_ROOM, 3)
    pos, _ = cap.poses()(t[:-1])
    np.testing.assert_allclose(pos, mats[:-1, :3, 3], atol=1e-6)


def test_retarded_source_lines_up_with_the_recording(walk):
    cap = D.read_capture(walk)
    fs = cap.sample_rate
    seg = slice(2 * fs, 6 * fs)
    rec = cap.recording[seg].mean(axis=1).astype(float)
    lag_raw, _ = D._gcc_phat_lag(cap.source[seg].astype(float), rec, fs, 0.2)
    pos, _ = cap.poses()(np.linspace(2, 6, 50))
    expected = np.median(np.linalg.norm(pos - cap.source_position, axis=1)) / D.SPEED_OF_SOUND
    assert lag_raw == pytest.approx(expected, abs=1.5e-3)  # the direct sound's travel time d/c
    lag_ret, _ = D._gcc_phat_lag(cap.retarded_source()[seg].astype(float), rec, fs, 0.2)
    assert abs(lag_ret) < 1e-3  # the retarded source arrives with the recording (HRTF onsets < 1 ms)


def test_audio_and_poses_out_of_step_is_refused_with_the_fix(walk, tmp_path):
    d = _copy(walk, tmp_path)
    rec, fs = sf.read(d / "recording.wav", always_2d=True)
    late = np.concatenate([np.zeros((int(1.5 * fs), 2)), rec])[: len(rec)]  # the recorder started 1.5 s early
    sf.write(d / "recording.wav", late, fs, subtype="FLOAT")
    with pytest.raises(D.FieldDataError, match="do not line up in time") as e:
        D.read_capture(d)
    suggested = float(str(e.value).split('"source_start_s": ')[1].split()[0])
    assert suggested == pytest.approx(1.5, abs=0.01)
    _edit(d, source_start_s=1.5)
    assert D.read_capture(d).source_start_s == 1.5


def test_poses_beyond_the_recording_are_refused(walk, tmp_path):
    d = _copy(walk, tmp_path)
    rec, fs = sf.read(d / "recording.wav", always_2d=True)
    sf.write(d / "recording.wav", rec[: 3 * fs], fs, subtype="FLOAT")
    with pytest.raises(D.FieldDataError, match="recording lasts 3.00 s"):
        D.read_capture(d)


def test_missing_and_wrong_files(walk, tmp_path):
    d = _copy(walk, tmp_path)
    (d / "source.wav").unlink()
    with pytest.raises(AudioError, match="source.wav"):
        D.read_capture(d)
    d2 = _copy(walk, tmp_path / "b")
    (d2 / "transforms.json").unlink()
    with pytest.raises(D.FieldDataError, match="pose file"):
        D.read_capture(d2)
    d3 = _copy(walk, tmp_path / "c")
    rec, fs = sf.read(d3 / "recording.wav")
    sf.write(d3 / "recording.wav", rec[:, 0], fs)
    with pytest.raises(D.FieldDataError, match="1 channel"):
        D.read_capture(d3)
    with pytest.raises(D.FieldDataError, match="no capture.json"):
        D.load_data(tmp_path)
    with pytest.raises(D.FieldDataError, match="not found"):
        D.load_data(tmp_path / "nowhere")
    d4 = _copy(walk, tmp_path / "d")
    _edit(d4, source_position=[1, 2])
    with pytest.raises(D.FieldDataError, match="source_position"):
        D.read_capture(d4)
    d5 = _copy(walk, tmp_path / "e")
    _edit(d5, room={"type": "shoebox", "min": [0, 0, 0]})
    with pytest.raises(SoundstageError, match="room"):
        D.read_capture(d5)


def test_pose_times_from_frame_numbers():
    from soundstage.splats.cameras import CameraPath

    cams = CameraPath(np.repeat(np.eye(4)[None], 3, 0), ["frame_00001.png", "frame_00031.png", "frame_00061.png"])
    t = D._pose_times(cams, {"fps": 30, "first_frame": 1, "start_s": 0.5}, "x")
    np.testing.assert_allclose(t, [0.5, 1.5, 2.5])
    with pytest.raises(D.FieldDataError, match="not times"):
        D._pose_times(cams, "names", "x")


def test_rwavs_layout_round_trip(walk, tmp_path):
    cap = D.read_capture(walk)
    scene = D.export_rwavs(cap, tmp_path / "rwavs", scene="7")
    assert D.data_kind(scene) == "rwavs"
    rw = D.read_rwavs(scene)
    assert rw.layout == "rwavs" and not rw.metric
    np.testing.assert_allclose(rw.source_position, cap.source_position)
    assert set(rw.split_times) == {"train", "val"} and len(rw.split_times["val"]) > 0
    # Same poses at the same times, same audio.
    t = rw.pose_times
    p_rw, r_rw = rw.poses()(t)
    p_cap, r_cap = cap.poses()(t)
    np.testing.assert_allclose(p_rw, p_cap, atol=1e-6)
    np.testing.assert_allclose(r_rw, r_cap, atol=1e-6)
    np.testing.assert_allclose(rw.recording, cap.recording, atol=1e-6)
    assert np.all(np.isin(rw.clip_centres("val"), rw.split_times["val"]))


def test_rwavs_missing_position_entry(walk, tmp_path):
    scene = D.export_rwavs(D.read_capture(walk), tmp_path / "rwavs", scene="2")
    (tmp_path / "rwavs" / "position.json").write_text(json.dumps({"9": {"source_position": [0, 0, 0]}}))
    with pytest.raises(D.FieldDataError, match="no entry '2'"):
        D.read_rwavs(scene)


def test_ir_set_round_trip_and_corruption(tmp_path):
    rng = np.random.default_rng(0)
    mats = D.random_poses(5, D.DEFAULT_ROOM, D.DEFAULT_SOURCE, rng)
    irs = rng.standard_normal((5, 2, 300)).astype(np.float32)
    p = D.write_irs(tmp_path / "set", irs=irs, sample_rate=D.FIELD_RATE, matrices=mats,
                    split=["train"] * 3 + ["val"] * 2, source_position=D.DEFAULT_SOURCE)
    s = D.load_data(p.parent)
    np.testing.assert_array_equal(s.irs, irs)
    np.testing.assert_allclose(s.matrices, mats)
    assert list(s.select("val")) == [3, 4]
    (p.parent / "irs.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(D.FieldDataError, match="cannot read"):
        D.read_irs(p.parent)


def test_random_poses_stay_in_the_room_and_away_from_the_source():
    mats = D.random_poses(200, D.DEFAULT_ROOM, D.DEFAULT_SOURCE, np.random.default_rng(1))
    p = mats[:, :3, 3]
    assert np.all(p[:, :2] >= 0.5) and np.all(p[:, 0] <= 5.5) and np.all(p[:, 1] <= 4.5)
    assert np.all(np.linalg.norm(p - D.DEFAULT_SOURCE, axis=1) >= 0.5)
    np.testing.assert_allclose(np.linalg.det(mats[:, :3, :3]), 1.0)
