"""Evaluation: the paper's baselines, the scores, and the impulse-response reconstruction."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from soundstage import metrics  # noqa: E402
from soundstage.errors import SoundstageError  # noqa: E402
from soundstage.field import data as D  # noqa: E402
from soundstage.field import evaluate as E  # noqa: E402
from soundstage.field.irfield import IRFieldConfig, aligned_log_magnitude, synthesize  # noqa: E402
from soundstage.field.train import TrainOptions, train_fields  # noqa: E402

FS = D.FIELD_RATE


def test_baselines_follow_their_definitions():
    rng = np.random.default_rng(0)
    src = rng.standard_normal(5000)
    tgt = np.stack([0.3 * rng.standard_normal(5000), 0.1 * rng.standard_normal(5000)])
    mm = E.baseline_mono_mono(src, tgt)
    np.testing.assert_array_equal(mm, [src, src])
    me = E.baseline_mono_energy(src, tgt)
    assert np.mean(me ** 2) == pytest.approx(np.mean(tgt ** 2))  # the target's mean energy over both ears
    np.testing.assert_allclose(me[0], me[1])
    se = E.baseline_stereo_energy(src, tgt)
    np.testing.assert_allclose(np.mean(se ** 2, axis=1), np.mean(tgt ** 2, axis=1))  # each ear's energy
    np.testing.assert_allclose(se[0] / src, np.sqrt(np.mean(tgt[0] ** 2) / np.mean(src ** 2)))


@pytest.fixture(scope="module")
def engine_irs():
    """Four engine impulse responses (0.5 s, binaural) at random poses of the default room."""
    rng = np.random.default_rng(7)
    mats = D.random_poses(4, D.DEFAULT_ROOM, D.DEFAULT_SOURCE, rng)
    return mats, D.simulate_irs(mats, room=D.DEFAULT_ROOM, source_position=D.DEFAULT_SOURCE, ir_seconds=0.5)


def test_ir_reconstruction_from_true_magnitudes_keeps_t60_c50_edt(engine_irs):
    """The waveform synthesis alone (true magnitudes in) must be far inside the targets (2.5 %, 0.6 dB, 16 ms)."""
    mats, irs = engine_irs
    cfg = IRFieldConfig(ir_samples=irs.shape[-1])
    pos, _ = D.listener_axes(mats)
    delays = np.linalg.norm(pos - D.DEFAULT_SOURCE, axis=1) / D.SPEED_OF_SOUND * FS
    lm = aligned_log_magnitude(irs, delays, cfg)
    rec = synthesize(lm, torch.as_tensor(delays), cfg, griffin_lim=8).numpy()
    err = E.ir_errors(rec, irs, FS)
    assert err["skipped"] == 0
    assert err["t60_pct"] < 1.0 and err["c50_db"] < 0.3 and err["edt_s"] < 0.008
    assert 0.3 < err["t60_s"] < 0.6  # the furnished default room
    # The direct sound lands at d / c: onsets agree within 0.75 ms.
    for p, g in zip(rec, irs):
        assert abs(metrics.onset(p[0]) - metrics.onset(g[0])) <= 16


def test_ir_reconstruction_starting_from_the_early_render_keeps_the_direct_sound(engine_irs):
    """With the engine's early response as the starting phase, the direct sound's frames keep their energy.

    From the carrier's phase (an impulse at the aligned onset) Griffin-Lim cannot
    rebuild an HRIR whose ears are up to a third of a frame early or late, and the
    first frames' energy comes out off by about 0.3 neper; from the early render's
    phase it must come out at least twice as close, and the scores stay inside the
    targets by the same margins as above.
    """
    from soundstage.field.irfield import early_stft

    mats, irs = engine_irs
    cfg = IRFieldConfig(ir_samples=irs.shape[-1], early_render=True, prior_order=2)
    pos, rot = D.listener_axes(mats)
    delays = np.linalg.norm(pos - D.DEFAULT_SOURCE, axis=1) / D.SPEED_OF_SOUND * FS
    lm = aligned_log_magnitude(irs, delays, cfg)
    early = early_stft(D.DEFAULT_ROOM, D.DEFAULT_SOURCE, pos, rot, cfg)
    plain = synthesize(lm, torch.as_tensor(delays), cfg, griffin_lim=8).numpy()
    rec = synthesize(lm, torch.as_tensor(delays), cfg, griffin_lim=8, early=early).numpy()

    def direct_frames_error(y):
        got = torch.logsumexp(2 * aligned_log_magnitude(y, delays, cfg).double(), -1)[..., :6]
        return float((got - torch.logsumexp(2 * lm.double(), -1)[..., :6]).abs().mean())

    assert direct_frames_error(rec) < 0.5 * direct_frames_error(plain)
    err = E.ir_errors(rec, irs, FS)
    assert err["t60_pct"] < 1.0 and err["c50_db"] < 0.3 and err["edt_s"] < 0.008


def test_ir_errors_are_zero_for_identical_responses(engine_irs):
    _, irs = engine_irs
    e = E.ir_errors(irs, irs, FS)
    assert e["t60_pct"] == 0 and e["c50_db"] == 0 and e["edt_s"] == 0


def test_evaluate_recording_field_reports_field_and_baselines(tmp_path):
    D.synthetic_walk(tmp_path / "w", seconds=8.0, seed=2)
    opts = TrainOptions(steps=5, batch_size=4, model=dict(hidden=16, layers=2, pos_freqs=2, freq_freqs=3,
                                                           conv_channels=4), crop_frames=8, clip_stride_s=1.0)
    train_fields(tmp_path / "w", tmp_path / "m.pt", opts)
    res = E.evaluate(tmp_path / "m.pt", tmp_path / "w")
    assert res["kind"] == "anerf" and res["clips"] >= 1
    for k in ("field", "mono_mono", "mono_energy", "stereo_energy"):
        assert set(res[k]) >= {"mag", "env", "stft", "dphase", "snr"}
        assert all(np.isfinite(v) for v in res[k].values())
    assert "mag_wave" in res["field"]
    # Mono-Energy and Stereo-Energy differ only in their per-ear gains: equal when both ears are equally loud.
    assert res["mono_energy"]["dphase"] == pytest.approx(res["mono_mono"]["dphase"])
    assert set(res["aligned"]) == set(E.BASELINES)
    D.write_irs(tmp_path / "irs", irs=np.zeros((2, 2, 100)), sample_rate=FS, matrices=np.eye(4)[None].repeat(2, 0),
                split=["train", "val"], source_position=[1, 1, 1])
    with pytest.raises(SoundstageError, match="is an impulse-response set but the field is a recording field"):
        E.evaluate(tmp_path / "m.pt", tmp_path / "irs")
