"""The interaural DOA judge: checked on measured KEMAR responses, then used on a baked shot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from soundstage.errors import SoundstageError
from soundstage.footage import clean_path, evaluate_doa, evaluate_job_doa, lift_track, synthetic_shot
from soundstage.footage.doa import angle_diff, doa_table, estimate_doa, fold

FS = 16000


def test_table_itd_follows_woodworth():
    tab = doa_table("default", FS)
    az = tab.azimuth_deg
    itd = dict(zip(az.tolist(), tab.itd_s.tolist()))
    # Woodworth's spherical head (a = 8.75 cm, c = 343 m/s): (a/c)(theta + sin theta) = 0.66 ms at 90 degrees.
    # KEMAR's measured low-frequency ITD is known to be larger than that at the side.
    assert 0.55e-3 < itd[90.0] < 0.85e-3 and itd[-90.0] == pytest.approx(-itd[90.0], abs=2e-5)
    for a in (15, 30, 45, 60):
        wood = 0.0875 / 343 * (np.radians(a) + np.sin(np.radians(a)))
        assert itd[float(a)] == pytest.approx(wood, rel=0.25)
    front = tab.itd_s[(az >= -90) & (az <= 90)]
    assert np.all(np.diff(front) > 0)  # monotonic over the front half-plane


def test_judge_on_raw_measured_kemar_responses(shared_data):
    """Noise through the SOFA file's own (unprocessed) 44.1 kHz responses, resampled: judged within 5 degrees."""
    sofar = pytest.importorskip("sofar")
    import soxr

    sofa = sofar.read_sofa(str(shared_data / "hrtf" / "mit_kemar_normal_pinna.sofa"), verbose=False)
    pos = np.asarray(sofa.SourcePosition)
    ir = np.asarray(sofa.Data_IR)
    fs_in = int(np.asarray(sofa.Data_SamplingRate).ravel()[0])
    noise = np.random.default_rng(7).standard_normal(fs_in)
    folded_err, confusions = [], 0
    tested = [10, 35, 60, 85, 120, 150, 175, 200, 250, 300, 330]  # SOFA azimuth: counter-clockwise, 90 = left
    for a in tested:
        i = int(np.argmin(np.abs(pos[:, 1]) + angle_diff(pos[:, 0], a)))
        assert pos[i, 1] == 0 and angle_diff(pos[i, 0], a) < 1e-6
        ears = np.stack([np.convolve(noise, ir[i, e])[:fs_in] for e in range(2)], axis=1)
        x = soxr.resample(ears, fs_in, FS)
        est = estimate_doa((x, FS))
        az = est["azimuth_deg"][est["active"]]
        truth = ((a + 180) % 360) - 180
        folded_err.append(np.median(np.abs(fold(az) - fold(truth))))
        confusions += int(np.median(angle_diff(az, truth)) > 90)
    print("folded errors", folded_err, "front/back confusions", confusions)
    assert max(folded_err) <= 5.0
    assert confusions <= 2  # free field: the band ILDs mostly tell front from back


def _shot_job(tmp_path, shot, positions):
    x = np.random.default_rng(0).standard_normal(int(FS * 3.2)).astype(np.float32) * 0.1
    sf.write(tmp_path / "noise.wav", x, FS, subtype="FLOAT")
    cam = shot.camera
    room = {"type": "shoebox", "min": [0, 0, 0], "max": [6, 5, 3],
            "materials": {"floor": "carpet_cotton", "ceiling": "plasterboard", "walls": "plasterboard"}}
    return {"version": 1, "sample_rate": FS, "fps": shot.fps, "frame_start": int(cam.frames[0]),
            "frame_end": int(cam.frames[-1]), "room": room,
            "listener": {"name": "Camera", "matrix_world": [m.reshape(-1).tolist() for m in cam.matrix_world]},
            "sources": [{"name": "Ball", "audio": str(tmp_path / "noise.wav"), "position": positions.tolist()}],
            "output": {"format": "binaural", "path": str(tmp_path / "shot.wav")}}


def test_baked_synthetic_shot_judged_within_10_degrees(tmp_path):
    """Recovered path -> bake (shoebox, binaural, KEMAR) -> interaural model vs the TRUE path."""
    from soundstage.bake import bake

    shot = synthetic_shot(0)
    lifted = lift_track(shot.camera, shot.track, shot.depth, depth_offset=shot.radius)
    path = clean_path(lifted.frames, lifted.positions).positions
    job = _shot_job(tmp_path, shot, path)
    (tmp_path / "job.json").write_text(json.dumps(job))
    bake(tmp_path / "job.json", cache=False)
    truth_job = json.loads(json.dumps(job))
    truth_job["sources"][0]["position"] = shot.true_path.tolist()
    (tmp_path / "truth.json").write_text(json.dumps(truth_job))
    res = evaluate_job_doa(tmp_path / "shot.wav", tmp_path / "truth.json")
    print({k: v for k, v in res.items() if isinstance(v, (float, int))})
    assert res["folded"] and res["windows"] >= 25
    assert res["median_error_deg"] < 10.0
    # The truth sweeps about 50 degrees across the front; a judge that always said "ahead" would fail.
    t = res["truth_deg"]
    assert np.nanmax(t) - np.nanmin(t) > 40
    assert np.median(np.abs(fold(t))) > 2 * res["median_error_deg"]
    # With the "source is in the picture" prior the unfolded error is the folded one.
    front = estimate_doa(tmp_path / "shot.wav", front_back="front")["azimuth_deg"]
    assert np.nanmedian(angle_diff(front, t)) < 10.0


def test_doa_bad_input(tmp_path):
    sf.write(tmp_path / "mono.wav", np.zeros(FS), FS)
    with pytest.raises(SoundstageError, match="two-channel"):
        estimate_doa(tmp_path / "mono.wav")
    with pytest.raises(SoundstageError, match="not found"):
        estimate_doa(tmp_path / "nope.wav")
    sf.write(tmp_path / "short.wav", np.zeros((100, 2)), FS)
    with pytest.raises(SoundstageError, match="at least one"):
        estimate_doa(tmp_path / "short.wav")
    x = np.random.default_rng(0).standard_normal((FS, 2))
    with pytest.raises(SoundstageError, match="windows"):
        evaluate_doa((x, FS), [0.0, 1.0])
