"""``soundstage footage`` commands, image regions and library matching."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soundstage.errors import SoundstageError
from soundstage.footage import Camera, match_library, sources_from_image, synthetic_shot
from soundstage.footage.cli import main
from soundstage.footage.synthetic import look_at


@pytest.fixture(scope="module")
def small_shot(tmp_path_factory):
    d = tmp_path_factory.mktemp("shot")
    shot = synthetic_shot(3, seconds=1.0, resolution=(320, 180))
    (d / "camera.json").write_text(json.dumps(shot.camera.to_json()))
    rows = ["frame,x,y"] + [f"{f},{u},{v}" for f, (u, v) in zip(shot.track.frames, shot.track.uv)]
    rows[5] = "5,,"  # a gap
    rows[8] = "8,-40,90"  # outside the frame
    (d / "track.csv").write_text("\n".join(rows) + "\n")
    (d / "depth").mkdir()
    for f in shot.camera.frames:
        np.save(d / "depth" / f"depth_{f:04d}.npy", shot.depth.map(int(f)))
    return d, shot


def test_track_command_writes_clean_path(small_shot, capsys):
    d, shot = small_shot
    out = d / "path.json"
    rc = main(["track", str(d / "track.csv"), "--camera", str(d / "camera.json"), "--depth", str(d / "depth"),
               "--depth-offset", str(shot.radius), "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["frames"] == shot.camera.frames.tolist()
    err = np.linalg.norm(np.array(doc["positions"]) - shot.true_path, axis=1)
    assert np.median(err) < 0.10
    assert doc["dropped"]["outside frame"]["frames"] == [8] and doc["dropped"]["gap in track"]["frames"] == [5]
    assert 5 in doc["gap_frames"] and 8 in doc["gap_frames"] and doc["filled"][4] and doc["filled"][7]
    text = capsys.readouterr().out
    assert "dropped (outside frame): 1 frame(s): 8" in text


def test_track_command_errors_are_one_line_and_write_nothing(small_shot, tmp_path, capsys):
    d, _ = small_shot
    (tmp_path / "nocam.json").write_text(json.dumps({"frames": [], "matrix_world": []}))
    out = tmp_path / "p.json"
    rc = main(["track", str(d / "track.csv"), "--camera", str(tmp_path / "nocam.json"), "--depth", str(d / "depth"),
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "no frames" in err and "camera solve" in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))
    (tmp_path / "empty").mkdir()
    rc = main(["track", str(d / "track.csv"), "--camera", str(d / "camera.json"), "--depth", str(tmp_path / "empty")])
    assert rc == 2 and "no depth maps" in capsys.readouterr().err
    # No depth at any marker: says where (frame and pixel).
    (tmp_path / "zero").mkdir()
    np.save(tmp_path / "zero" / "depth_0001.npy", np.zeros((180, 320)))
    rc = main(["track", str(d / "track.csv"), "--camera", str(d / "camera.json"), "--depth", str(tmp_path / "zero")])
    err = capsys.readouterr().err
    assert rc == 2 and "frame 1:" in err and "no depth at marker pixel (" in err


def test_image_command_with_boxes_and_library(small_shot, tmp_path, capsys):
    d, shot = small_shot
    f = 3
    np.save(tmp_path / "still.npy", shot.depth.map(f))
    u, v = shot.camera.project(f, shot.true_path[f - 1][None])[0][0]
    (tmp_path / "regions.json").write_text(json.dumps({"Ball": [u - 4, v - 4, u + 4, v + 4]}))
    (tmp_path / "lib").mkdir()
    for name in ("ball_bounce_01.wav", "door.wav"):
        (tmp_path / "lib" / name).write_bytes(b"RIFF")
    rc = main(["image", str(tmp_path / "still.npy"), "--camera", str(d / "camera.json"), "--frame", str(f),
               "--regions", str(tmp_path / "regions.json"), "--library", str(tmp_path / "lib"),
               "--out", str(tmp_path / "src.json")])
    assert rc == 0
    src = json.loads((tmp_path / "src.json").read_text())["sources"][0]
    # The box's pixels lie on the ball's front surface: within a radius of the centre.
    assert np.linalg.norm(np.array(src["position"]) - shot.true_path[f - 1]) < shot.radius + 0.02
    assert src["audio"].endswith("ball_bounce_01.wav")


def test_sources_from_label_image_and_masks():
    cam = Camera(look_at([0, 0, 1.5], [5, 0, 1.5]), [1], 30.0, 36.0, (200, 100))
    depth = np.full((100, 200), 4.0)
    labels = np.zeros((100, 200), int)
    labels[40:60, 20:40] = 3
    labels[30:50, 150:170] = 7
    depth[30:50, 150:170] = np.nan  # no depth in region 7
    out = sources_from_image(cam, 1, depth, labels, names={3: "dog"})
    assert [s["name"] for s in out] == ["dog", "label_7"]
    dog = out[0]
    assert dog["n_pixels"] == 400 and out[1]["position"] is None
    # Region centred at pixel (30, 50): 70 px left of the axis; z-depth 4 m along +X.
    f = 30 / 36 * 200
    np.testing.assert_allclose(dog["position"], [4.0, 4.0 * 70 / f, 1.5], atol=1e-9)
    assert dog["azimuth_deg"] == pytest.approx(np.degrees(np.arctan(70 / f)))
    masks = [labels == 3]
    same = sources_from_image(cam, 1, depth, masks, names=["m"])
    np.testing.assert_allclose(same[0]["position"], dog["position"])
    lin = sources_from_image(cam, 1, depth, masks, mapping="linear")
    # SEE-2-SOUND's linear mapping: 70 of 200 px is 35 % of the horizontal field of view
    # (the median of the region's points is a hair off its centre pixel's direction).
    assert lin[0]["azimuth_deg"] == pytest.approx(70 / 200 * cam.fov_deg()[0], abs=0.01)
    assert abs(lin[0]["azimuth_deg"] - dog["azimuth_deg"]) > 0.5  # and it is not the pinhole direction
    with pytest.raises(SoundstageError, match="box"):
        sources_from_image(cam, 1, depth, [(10, 10, 5, 20)])
    with pytest.raises(SoundstageError, match="same size"):
        sources_from_image(cam, 1, depth[:50], labels)


def test_match_library_rule(tmp_path):
    for name in ("Dog_Bark_02.wav", "dogs.flac", "CarEngine.wav", "rain/rain_heavy.ogg", "readme.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    m = match_library(["dog", "Dog Bark", "car.001", "heavy rain", "piano"], tmp_path)
    assert m["dog"].name == "dogs.flac"  # same token set ("dogs" -> "dog")
    assert m["Dog Bark"].name == "Dog_Bark_02.wav"
    assert m["car.001"].name == "CarEngine.wav"
    assert m["heavy rain"].name == "rain_heavy.ogg"
    assert m.unmatched == ["piano"]
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(SoundstageError, match="no audio file"):
        match_library(["x"], tmp_path / "empty_dir")
    with pytest.raises(SoundstageError, match="not found"):
        match_library(["x"], tmp_path / "missing")
