"""Baking jobs with fields instead of the simulator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from soundstage.errors import SoundstageError  # noqa: E402
from soundstage.field import data as D  # noqa: E402
from soundstage.field import render as R  # noqa: E402
from soundstage.field.checkpoint import load_fields  # noqa: E402
from soundstage.field.train import TrainOptions, train_fields  # noqa: E402

TINY = dict(hidden=16, layers=2, pos_freqs=2, freq_freqs=3, conv_channels=4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("field")
    D.synthetic_walk(d / "walk", seconds=8.0, seed=4)
    opts = TrainOptions(steps=5, batch_size=4, model=dict(TINY), crop_frames=8, clip_stride_s=1.0)
    train_fields(d / "walk", d / "anerf.pt", opts)
    rng = np.random.default_rng(0)
    mats = D.random_poses(6, D.DEFAULT_ROOM, D.DEFAULT_SOURCE, rng)
    irs = D.simulate_irs(mats, room=D.DEFAULT_ROOM, source_position=D.DEFAULT_SOURCE, ir_seconds=0.25)
    D.write_irs(d / "irs", irs=irs, sample_rate=D.FIELD_RATE, matrices=mats, split=["train"] * 6,
                source_position=D.DEFAULT_SOURCE, room=D.DEFAULT_ROOM)
    train_fields(d / "irs", d / "ir.pt", TrainOptions(steps=5, batch_size=4, model=dict(hidden=16, layers=2),
                                                       scene="off"))
    return d


def _job(folder, seconds=2.0, fps=10, fmt="binaural", name="walk", pos=None, rate=22050):
    t, mats = D.walk_path(seconds, fps, D.DEFAULT_ROOM, 4)
    mats = mats[:-1]
    if pos is not None:
        mats[:, :3, 3] = pos
    return {"version": 1, "sample_rate": rate, "fps": fps, "frame_start": 1, "frame_end": len(mats),
            "room": D.DEFAULT_ROOM,
            "listener": {"name": "Cam", "matrix_world": [m.reshape(-1).tolist() for m in mats]},
            "sources": [{"name": name, "audio": str(folder / "walk" / "source.wav"), "position": D.DEFAULT_SOURCE}],
            "output": {"format": fmt, "path": str(folder / "out.wav")}}


def test_render_writes_a_bake_like_output(trained, tmp_path):
    job = _job(trained, rate=48000)
    res = R.render_field_job(trained / "anerf.pt", job, out=tmp_path / "a.wav")
    y, fs = sf.read(res.path)
    assert fs == 48000 and y.shape == (96000, 2) and np.isfinite(y).all() and np.abs(y).max() > 1e-4
    side = json.loads(res.sidecar.read_text())
    assert side["backend"] == "field:anerf" and side["channels"] == ["L", "R"]
    assert side["fields"] == {"walk": load_fields(trained / "anerf.pt")[0].source_name}
    assert any("room is ignored" in n for n in side["notes"])
    assert not any("outside the trained area" in n for n in side["notes"])


def test_chunked_masks_and_refinement_are_seamless(trained, tmp_path, monkeypatch):
    job = _job(trained)
    a = R.render_field_job(trained / "anerf.pt", job, out=tmp_path / "a.wav")
    monkeypatch.setattr(R, "CHUNK_FRAMES", 37)
    b = R.render_field_job(trained / "anerf.pt", job, out=tmp_path / "b.wav")
    ya, yb = sf.read(a.path)[0], sf.read(b.path)[0]
    np.testing.assert_allclose(ya, yb, atol=1e-5 * np.abs(ya).max())


def test_warnings_and_refusals(trained, tmp_path):
    from soundstage.field.checkpoint import OutsideTrainedArea

    with pytest.warns(OutsideTrainedArea, match="outside the trained area"):
        far = R.render_field_job(trained / "anerf.pt", _job(trained, pos=[0.3, 0.3, 1.6]), out=tmp_path / "f.wav")
    assert any("outside the trained area" in n for n in far.info["notes"])
    moved = _job(trained)
    moved["sources"][0]["position"] = [1.0, 1.0, 1.0]
    res = R.render_field_job(trained / "anerf.pt", moved, out=tmp_path / "m.wav")
    assert any("rendered as heard from the learned position" in n for n in res.info["notes"])
    with pytest.raises(SoundstageError, match="binaural only"):
        R.render_field_job(trained / "anerf.pt", _job(trained, fmt="ambix"), out=tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()
    two = load_fields(trained / "anerf.pt") * 2
    two[1].source_name = "other"
    job = _job(trained)
    job["sources"] = job["sources"] * 3
    for i, s in enumerate(job["sources"]):
        job["sources"][i] = dict(s, name=f"s{i}")
    with pytest.raises(SoundstageError, match="name the sources like the fields"):
        R.render_field_job(two, job, out=tmp_path / "y.wav")


def test_irfield_render_of_a_still_listener_is_a_convolution(trained, tmp_path):
    pos = np.array([2.0, 1.5, 1.6])
    job = _job(trained, seconds=1.0, pos=pos)
    for k in range(len(job["listener"]["matrix_world"])):  # also hold the heading
        job["listener"]["matrix_world"][k] = job["listener"]["matrix_world"][0]
    res = R.render_field_job(trained / "ir.pt", job, out=tmp_path / "ir.wav")
    assert res.info["backend"] == "field:irfield"
    y = sf.read(res.path)[0]
    f = load_fields(trained / "ir.pt")[0]
    m = np.asarray(job["listener"]["matrix_world"][0]).reshape(1, 4, 4)
    p, rot = D.listener_axes(m)
    h = R.impulse_responses(f, p, rot)[0]
    src = sf.read(trained / "walk" / "source.wav")[0][: len(y)]
    ref = np.stack([np.convolve(src, h[c])[: len(y)] for c in range(2)], 1)
    np.testing.assert_allclose(y, ref, atol=1e-4 * np.abs(ref).max())
    with pytest.raises(SoundstageError, match="recording field"):
        R.impulse_responses(load_fields(trained / "anerf.pt")[0], p, rot)


def test_irfield_reflection_prior_order_is_an_option_and_needs_the_room(trained, tmp_path):
    """``model={"prior_order": N}`` reaches the field; without scene features (no room) there is no prior."""
    small = dict(hidden=16, layers=2)
    train_fields(trained / "irs", tmp_path / "p1.pt",
                 TrainOptions(steps=2, batch_size=4, model={**small, "prior_order": 1}))
    f = load_fields(tmp_path / "p1.pt")[0]
    assert f.config.prior_order == 1 and f.config.scene_dim > 0
    m = np.asarray(D.random_poses(2, D.DEFAULT_ROOM, D.DEFAULT_SOURCE, np.random.default_rng(1)))
    h = R.impulse_responses(f, *D.listener_axes(m))
    assert h.shape[:2] == (2, 2) and np.isfinite(h).all()
    train_fields(trained / "irs", tmp_path / "off.pt",
                 TrainOptions(steps=2, batch_size=4, model={**small, "prior_order": 2}, scene="off"))
    assert load_fields(tmp_path / "off.pt")[0].config.prior_order == 0


def test_irfield_early_render_is_the_preset_and_can_be_turned_off(trained, tmp_path):
    """The presets start from the engine's early response; ``early_render=False`` (``--no-early-render``) learns it."""
    small = dict(hidden=16, layers=2)
    assert load_fields(trained / "ir.pt")[0].config.early_render
    train_fields(trained / "irs", tmp_path / "learned.pt",
                 TrainOptions(steps=2, batch_size=4, model=small, early_render=False))
    f = load_fields(tmp_path / "learned.pt")[0]
    assert not f.config.early_render and f.config.prior_order == 2
    m = np.asarray(D.random_poses(2, D.DEFAULT_ROOM, D.DEFAULT_SOURCE, np.random.default_rng(2)))
    h = R.impulse_responses(f, *D.listener_axes(m))
    assert h.shape[:2] == (2, 2) and np.isfinite(h).all()
