"""Model files: round trip, and every way a file can be wrong is refused with one line."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from soundstage.errors import SoundstageError  # noqa: E402
from soundstage.field.checkpoint import (  # noqa: E402
    CheckpointError, Field, load_fields, save_fields,
)
from soundstage.field.irfield import IRField, IRFieldConfig  # noqa: E402
from soundstage.field.model import ANeRF, ANeRFConfig  # noqa: E402


def _field(kind="anerf", seed=0):
    torch.manual_seed(seed)
    if kind == "anerf":
        model = ANeRF(ANeRFConfig(hidden=16, layers=2, pos_freqs=2, freq_freqs=3, conv_channels=4))
    else:
        model = IRField(IRFieldConfig(hidden=16, layers=2, ir_samples=1000))
    return Field(kind=kind, model=model, centre=np.array([3.0, 2.5, 1.5]), scale=2.0, source_name=f"src{seed}",
                 source_position=np.array([3.7, 2.3, 1.2]), level_gain=0.5,
                 train_positions=np.random.default_rng(0).uniform(0, 5, (50, 3)), info={"steps": 3})


def test_round_trip_gives_the_same_field(tmp_path):
    a, b = _field("anerf", 1), _field("irfield", 2)
    p = save_fields(tmp_path / "m.pt", [a, b])
    fa, fb = load_fields(p)
    assert (fa.kind, fb.kind) == ("anerf", "irfield")
    assert fa.source_name == "src1" and fa.level_gain == 0.5 and fa.info == {"steps": 3}
    np.testing.assert_allclose(fa.train_positions, a.train_positions, atol=1e-6)
    x = torch.rand(2, 3)
    for old, new in ((a.model, fa.model), (b.model, fb.model)):
        old.eval()
        if isinstance(old, ANeRF):
            torch.testing.assert_close(old.masks(x, torch.rand(2))[0], new.masks(x, torch.zeros(2))[0])
        else:
            az, el, dist = torch.rand(2), torch.rand(2), torch.rand(2) + 1
            torch.testing.assert_close(old(x, az, el, dist), new(x, az, el, dist))


def test_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_fields(tmp_path / "none.pt")
    p = save_fields(tmp_path / "m.pt", [_field()])
    data = p.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_fields(tmp_path / "cut.pt")
    (tmp_path / "noise.pt").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_fields(tmp_path / "noise.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no format tag"):
        load_fields(tmp_path / "other.pt")


def test_code_in_a_checkpoint_is_not_run(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": "soundstage-field", "x": Evil()}, f)
    torch.save({"format": "soundstage-field", "version": 1, "fields": [Evil()]}, tmp_path / "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(CheckpointError):
            load_fields(tmp_path / name)
    assert not (tmp_path / "pwned").exists()


def _doctored(tmp_path, edit):
    p = save_fields(tmp_path / "m.pt", [_field()])
    doc = torch.load(p, weights_only=True)
    edit(doc)
    torch.save(doc, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.update(version=2), "newer than this Soundstage"),
    (lambda d: d.update(format="something"), "expected 'soundstage-field'"),
    (lambda d: d.update(format="soundstage-field-training"), "training checkpoint"),
    (lambda d: d.update(fields=[]), "holds no fields"),
    (lambda d: d["fields"][0].update(kind="nerf"), "unknown field kind"),
    (lambda d: d["fields"][0]["config"].update(hidden=32), "has shape"),
    (lambda d: d["fields"][0]["config"].update(wings=2), "config is not valid"),
    (lambda d: d["fields"][0]["state"].pop("mix_out.bias"), "missing parameter 'mix_out.bias'"),
    (lambda d: d["fields"][0]["state"].update(extra=torch.zeros(1)), "unexpected parameter 'extra'"),
    (lambda d: d["fields"][0]["state"]["mix_out.bias"].fill_(float("nan")), "NaN"),
    (lambda d: d["fields"][0]["meta"].update(scale=-1.0), "invalid numbers"),
    (lambda d: d["fields"][0]["meta"].pop("centre"), "metadata is damaged"),
    (lambda d: d["fields"][0]["config"].update(scene_dim=4), "missing parameter .scene"),
])
def test_checked_on_load(tmp_path, edit, message):
    with pytest.raises(CheckpointError, match=message) as e:
        load_fields(_doctored(tmp_path, edit))
    assert "\n" not in str(e.value) and isinstance(e.value, SoundstageError)


def test_save_is_atomic(tmp_path, monkeypatch):
    p = save_fields(tmp_path / "m.pt", [_field()])
    before = p.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_fields(p, [_field(seed=5)])
    assert p.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["m.pt"]


def test_trained_area_warning():
    f = _field()
    f.train_positions = np.array([[1.0, 1.0, 1.5], [2.0, 1.0, 1.5]])
    assert f.area_warning(np.array([[1.5, 1.2, 1.5]])) is None
    w = f.area_warning(np.array([[1.5, 1.2, 1.5], [5.0, 4.0, 1.5]]), "listener poses")
    assert "1 of 2 listener poses are outside the trained area" in w
