"""Tracks, depth readers, lifting to 3-D and cleaning: the synthetic shot and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from soundstage.errors import SoundstageError
from soundstage.footage import (DepthSequence, DepthValues, Track, clean_path, lift_track, read_depth_map, read_pfm,
                                read_track_csv, synthetic_shot)
from soundstage.footage.clean import local_line, local_line_reference
from soundstage.footage.depth import patch_median, write_pfm
from soundstage.footage.lift import BEHIND, GAP, NO_DEPTH, OUTSIDE


def _errors(shot, positions):
    e = np.linalg.norm(positions - shot.true_path, axis=1)
    return {"median": float(np.nanmedian(e)), "mean": float(np.nanmean(e)), "max": float(np.nanmax(e))}


# --------------------------------------------------------------------------- the must-show
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_shot_recovered_within_10cm_and_cleaning_helps(seed):
    shot = synthetic_shot(seed)
    camera, true_path, track, depth = shot
    lifted = lift_track(camera, track, depth, patch=5, kind="z", depth_offset=shot.radius)
    before = _errors(shot, lifted.positions)
    cleaned = clean_path(lifted.frames, lifted.positions)
    np.testing.assert_array_equal(cleaned.frames, camera.frames)
    after = _errors(shot, cleaned.positions)
    print(f"seed {seed}: before {before}, after {after}")
    assert after["median"] < 0.10
    # The wild 10 % dominate the raw path's mean and maximum; cleaning must remove them.
    assert before["max"] > 1.0 and after["max"] < 0.25
    assert after["mean"] < 0.25 * before["mean"]
    # Most rejected frames are the wild ones (a wild pixel that lands on the ball is harmless).
    assert len(set(cleaned.outlier_frames) & set(shot.outlier_frames.tolist())) >= len(shot.outlier_frames) - 2


def test_depth_offset_removes_the_surface_bias():
    shot = synthetic_shot(4, noise_px=0.0, outlier_fraction=0.0)
    on_surface = lift_track(shot.camera, shot.track, shot.depth)
    centred = lift_track(shot.camera, shot.track, shot.depth, depth_offset=shot.radius)
    # The ray through the ball's centre meets its surface one radius in front of it.
    np.testing.assert_allclose(np.linalg.norm(on_surface.positions - shot.true_path, axis=1), shot.radius, atol=2e-3)
    assert _errors(shot, centred.positions)["max"] < 2e-3


def test_scene_depth_patch_sampling_matches_full_map():
    shot = synthetic_shot(0)
    dm = shot.depth.map(5)
    uv = shot.track.uv[4]
    assert shot.depth.sample(5, uv, 5) == pytest.approx(patch_median(dm, uv, 5))


def test_range_depth_values():
    shot = synthetic_shot(2, noise_px=0.0, outlier_fraction=0.0)
    o, _ = shot.camera.rays(shot.camera.frames, shot.track.uv)
    rng = np.linalg.norm(shot.true_path - o, axis=1)
    lifted = lift_track(shot.camera, shot.track, rng, kind="range")
    np.testing.assert_allclose(lifted.positions, shot.true_path, atol=1e-9)


# --------------------------------------------------------------------------- cleaning internals
def test_local_line_matches_scipy_theilslopes():
    rng = np.random.default_rng(0)
    frames = np.sort(rng.choice(200, 60, replace=False))
    x = np.cumsum(rng.normal(0, 0.1, (60, 3)), axis=0)
    x[rng.choice(60, 6, replace=False)] += 5.0
    np.testing.assert_allclose(local_line(frames, x, 11), local_line_reference(frames, x, 11), atol=1e-12)


def test_clean_fills_gaps_and_holds_ends():
    frames = np.arange(1, 41)
    t = frames / 24.0
    true = np.stack([np.cos(t), np.sin(t), 0.2 * t], axis=1)
    pos = true.copy()
    pos[10:15] = np.nan  # a gap of NaN rows
    keep = np.ones(40, bool)
    keep[[0, 1, 25, 26, 27]] = False  # missing frames (first two and three inside)
    res = clean_path(frames[keep], pos[keep])
    np.testing.assert_array_equal(res.frames, np.arange(3, 41))
    assert res.gap_frames == [11, 12, 13, 14, 15, 26, 27, 28]
    assert res.filled.sum() == 8 and not res.outlier_frames
    err = np.linalg.norm(res.positions - true[2:], axis=1)
    assert err.max() < 5e-3  # PCHIP across a 5-frame gap (0.25 rad) of a 1 m arc: about 2 mm


def test_clean_smoothing_reduces_noise():
    rng = np.random.default_rng(5)
    frames = np.arange(100)
    true = np.stack([frames * 0.02, np.sin(frames / 20), 0 * frames + 1.0], axis=1)
    noisy = true + rng.normal(0, 0.02, true.shape)
    raw = np.median(np.linalg.norm(clean_path(frames, noisy).positions - true, axis=1))
    smooth = np.median(np.linalg.norm(clean_path(frames, noisy, smooth=9).positions - true, axis=1))
    assert smooth < 0.7 * raw


def test_clean_refuses_nothing_and_bad_arguments():
    with pytest.raises(SoundstageError, match="no frame has a 3-D position"):
        clean_path([1, 2], np.full((2, 3), np.nan))
    with pytest.raises(SoundstageError, match="smooth"):
        clean_path(np.arange(10), np.zeros((10, 3)), smooth=4)


# --------------------------------------------------------------------------- bad input to lifting
def test_marker_outside_frame_gap_and_no_depth_are_reported():
    shot = synthetic_shot(1, outlier_fraction=0.0)
    uv = shot.track.uv.copy()
    uv[3] = [-20, 100]  # left of the image
    uv[4] = [100, 400]  # below (360 px high)
    uv[7] = np.nan  # gap
    depth = np.array([shot.depth.sample(f, q) for f, q in zip(shot.track.frames, shot.track.uv)])
    depth[10] = np.nan  # no ray hit
    depth[11] = -2.0  # hit behind the camera
    res = lift_track(shot.camera, Track(shot.track.frames, uv, "Ball"), depth)
    assert res.frames_with(OUTSIDE) == [4, 5]
    assert res.frames_with(GAP) == [8]
    assert res.frames_with(NO_DEPTH) == [11]
    assert res.frames_with(BEHIND) == [12]
    assert res.valid.sum() == len(uv) - 5
    msg = [m for m in res.messages if m.startswith("frame 11:")][0]
    assert "no depth at marker pixel (" in msg and "\n" not in msg
    cleaned = clean_path(res.frames, res.positions)
    assert set(cleaned.gap_frames) == {4, 5, 8, 11, 12}


def test_no_depth_anywhere_names_frame_and_pixel(tmp_path):
    shot = synthetic_shot(0)
    f0 = int(shot.track.frames[0])
    for f in shot.track.frames:
        np.save(tmp_path / f"depth_{f:04d}.npy", np.zeros((360, 640)))  # all invalid
    seq = DepthSequence.from_path(tmp_path)
    with pytest.raises(SoundstageError) as e:
        lift_track(shot.camera, shot.track, seq)
    msg = str(e.value)
    assert f"frame {f0}:" in msg and "no depth at marker pixel (" in msg and "depth_0001.npy" in msg


# --------------------------------------------------------------------------- depth readers
def test_depth_sequence_reads_npy_npz_pfm_and_scales_lower_resolution(tmp_path):
    dm = np.full((36, 64), 2.0)
    dm[10:20, 30:40] = 1.0
    np.save(tmp_path / "d_0001.npy", dm)
    np.savez(tmp_path / "d_0002.npz", depth=dm * 1000)
    write_pfm(tmp_path / "d_0003.pfm", dm)
    np.testing.assert_array_equal(read_pfm(tmp_path / "d_0003.pfm"), dm)
    seq = DepthSequence.from_path(str(tmp_path / "d_*"))
    np.testing.assert_array_equal(seq.frames, [1, 2, 3])
    # camera image 640 x 360: pixel (350, 150) is map pixel (35, 15), inside the near square
    assert seq.sample(1, [350, 150], 5, resolution=(640, 360)) == 1.0
    assert seq.sample(3, [350, 150], 5, resolution=(640, 360)) == 1.0
    assert seq.sample(2, [5, 5], 3, resolution=(640, 360)) == 2000.0
    assert np.isnan(seq.sample(4, [5, 5]))
    with pytest.raises(SoundstageError, match="aspect"):
        seq.sample(1, [5, 5], resolution=(100, 100))


def test_patch_median_ignores_invalid_and_background():
    dm = np.full((20, 20), 5.0)
    dm[5:15, 5:15] = 1.0
    dm[9, 9] = np.nan
    dm[10, 10] = 0.0
    assert patch_median(dm, [9.5, 9.5], 5) == 1.0
    assert patch_median(dm, [5.5, 6.5], 3) == 1.0  # 3 of 9 pixels on the background, 6 on the object
    assert np.isnan(patch_median(np.zeros((4, 4)), [1, 1]))
    assert np.isnan(patch_median(dm, [25, 1]))


def test_bad_depth_files(tmp_path):
    (tmp_path / "a_1.pfm").write_bytes(b"P6\n2 2\n255\n" + bytes(12))
    with pytest.raises(SoundstageError, match="not a PFM"):
        read_depth_map(tmp_path / "a_1.pfm")
    (tmp_path / "b_2.pfm").write_bytes(b"Pf\n4 4\n-1.0\n" + bytes(10))
    with pytest.raises(SoundstageError, match="truncated"):
        read_depth_map(tmp_path / "b_2.pfm")
    np.save(tmp_path / "c_3.npy", np.zeros(5))
    with pytest.raises(SoundstageError, match="2-D"):
        read_depth_map(tmp_path / "c_3.npy")
    with pytest.raises(SoundstageError, match="no depth maps"):
        DepthSequence.from_path(tmp_path / "nothing_here")
    np.save(tmp_path / "nonumber.npy", np.zeros((2, 2)))
    with pytest.raises(SoundstageError, match="no frame number"):
        DepthSequence.from_path(str(tmp_path / "non*.npy"))


def test_depth_values_file(tmp_path):
    (tmp_path / "d.csv").write_text("frame,depth\n1,2.5\n2,\n3,nan\n")
    dv = DepthValues.from_file(tmp_path / "d.csv")
    assert dv.value(1) == 2.5 and np.isnan(dv.sample(2)) and np.isnan(dv.sample(9))
    (tmp_path / "e.csv").write_text("frame,depth\n1,deep\n")
    with pytest.raises(SoundstageError, match="row 2"):
        DepthValues.from_file(tmp_path / "e.csv")


# --------------------------------------------------------------------------- CSV tracks
def test_track_csv_with_gaps_names_and_depth(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("Frame,X,Y,name,depth\n1,10,20,dog,2.0\n2,,,dog,\n4,12,22,dog,2.1\n1,5,5,car,9\n")
    dog, car = read_track_csv(p)
    assert dog.name == "dog" and car.name == "car"
    np.testing.assert_array_equal(dog.frames, [1, 2, 4])
    assert dog.gaps() == [(2, 3)]
    assert read_track_csv(p, name="car").depth[0] == 9


@pytest.mark.parametrize("text, words", [
    ("frame,x\n1,2\n", "missing y"),
    ("frame,x,y\n1,2,abc\n", "row 2: 'y' = 'abc' is not a number"),
    ("frame,x,y\n1,2,3\n1.5,2,3\n", "row 3: frame '1.5' is not a whole number"),
    ("frame,x,y\n1,2,3\n1,4,5\n", "row 3: frame 1 appears twice"),
    ("frame,x,y\n,2,3\n", "row 2: 'frame' is empty"),
    ("frame,x,y\n1,2,3,4\n", "row 2: more cells"),
    ("frame,x,y\n", "no rows"),
    ("frame,x,y\n1,inf,3\n", "infinite"),
])
def test_bad_csv_rows_are_one_line_errors(tmp_path, text, words):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(SoundstageError) as e:
        read_track_csv(p)
    assert words in str(e.value) and "bad.csv" in str(e.value) and "\n" not in str(e.value)
