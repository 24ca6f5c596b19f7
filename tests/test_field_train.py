"""Training: determinism, exact resume after an interruption, stacking, progress and cancel."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from soundstage.errors import Cancelled, SoundstageError  # noqa: E402
from soundstage.field import data as D  # noqa: E402
from soundstage.field.checkpoint import load_fields  # noqa: E402
from soundstage.field.train import TrainOptions, lr_at, normaliser, train_fields  # noqa: E402

TINY = dict(hidden=16, layers=2, pos_freqs=2, freq_freqs=3, conv_channels=4)


def tiny(**kw) -> TrainOptions:
    base = dict(steps=12, batch_size=4, model=dict(TINY), crop_frames=8, clip_stride_s=1.0, checkpoint_every=4)
    base.update(kw)
    return TrainOptions(**base)


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    d = tmp_path_factory.mktemp("walk")
    D.synthetic_walk(d, seconds=8.0, seed=1)
    return d


def _weights(path):
    return {k: v.clone() for k, v in load_fields(path)[0].model.state_dict().items()}


def test_same_seed_same_model_and_progress_reported(walk, tmp_path):
    seen = []
    a = train_fields(walk, tmp_path / "a.pt", tiny(), progress=lambda f, m: seen.append((f, m)))
    b = train_fields(walk, tmp_path / "b.pt", tiny())
    wa, wb = _weights(a.path), _weights(b.path)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert seen[-1][0] == 1.0 and any("step 12/12" in m for _, m in seen)
    assert all(0.0 <= f <= 1.0 for f, _ in seen)
    c = train_fields(walk, tmp_path / "c.pt", tiny(seed=5))
    assert any(not torch.equal(wa[k], v) for k, v in _weights(c.path).items())
    f = a.fields[0]
    assert f.info["scene_features"] and f.config.scene_dim > 0  # the synthetic capture carries its room
    assert f.info["clips"] > 0 and np.isfinite(f.info["final_loss"])


def test_resume_after_interruption_is_exact(walk, tmp_path):
    full = train_fields(walk, tmp_path / "full.pt", tiny())
    calls = {"n": 0}

    def cancel():  # polled once per step: stop before step 10 (the last checkpoint was at step 8)
        calls["n"] += 1
        return calls["n"] > 9

    with pytest.raises(Cancelled):
        train_fields(walk, tmp_path / "cut.pt", tiny(), cancel=cancel)
    assert not (tmp_path / "cut.pt").exists() and (tmp_path / "cut.train.pt").exists()
    res = train_fields(walk, tmp_path / "cut.pt", tiny(), resume=True)
    assert res.fields[0].info["steps_run"] == 4
    wf, wr = _weights(full.path), _weights(res.path)
    for k in wf:
        torch.testing.assert_close(wf[k], wr[k], rtol=0, atol=0)


def test_resume_refuses_other_options(walk, tmp_path):
    train_fields(walk, tmp_path / "m.pt", tiny())
    with pytest.raises(SoundstageError, match="other data or options"):
        train_fields(walk, tmp_path / "m.pt", tiny(lr=0.1), resume=True)


def test_stacked_fields_and_ablations(walk, tmp_path):
    res = train_fields([walk, walk], tmp_path / "two.pt", tiny(use_direction=False, conv=False, scene="off"))
    fields = load_fields(res.path)
    assert len(fields) == 2 and fields[0].source_name != fields[1].source_name
    assert not fields[0].config.use_direction and not fields[0].config.conv and fields[0].config.scene_dim == 0


def test_bad_options_and_outputs(walk, tmp_path):
    with pytest.raises(SoundstageError, match="should end in .pt"):
        train_fields(walk, tmp_path / "m.bin", tiny())
    with pytest.raises(SoundstageError, match="does not exist"):
        train_fields(walk, tmp_path / "no" / "m.pt", tiny())
    with pytest.raises(SoundstageError, match="unknown preset"):
        train_fields(walk, tmp_path / "m.pt", tiny(preset="huge"))
    with pytest.raises(SoundstageError, match="no capture.json"):
        train_fields(tmp_path, tmp_path / "m.pt", tiny())
    with pytest.raises(SoundstageError, match="threads must be at least 1"):
        train_fields(walk, tmp_path / "m.pt", tiny(threads=0))


def test_thread_limit_applies_while_training_and_is_restored(walk, tmp_path):
    before = torch.get_num_threads()
    seen = []
    train_fields(walk, tmp_path / "t.pt", tiny(steps=2, threads=1),
                 progress=lambda f, m: seen.append(torch.get_num_threads()))
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_schedule_and_normaliser():
    assert lr_at(0, 100, 1.0) == pytest.approx(0.2)
    assert lr_at(5, 100, 1.0) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0) == pytest.approx(0.01)
    p = np.array([[0.0, 0.0, 1.5], [4.0, 2.0, 1.7]])
    c, s = normaliser(p, True)
    n = (p - c) / s
    assert np.all(np.abs(n) <= 1.0) and np.max(np.abs(n)) > 0.85
