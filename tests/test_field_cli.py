"""``soundstage field ...`` end to end: exit codes, one-line errors, JSON progress."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from soundstage.cli import main  # noqa: E402
from soundstage.field import data as D  # noqa: E402


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    assert main(["field", "synth-walk", str(d / "walk"), "--seconds", "8", "--seed", "5", "--quiet"]) == 0
    assert main(["field", "train", str(d / "walk"), "--out", str(d / "m.pt"), "--steps", "3", "--batch-size", "4",
                 "--quiet"]) == 0
    return d


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["field", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train", "eval", "render", "info", "synth-walk", "synth-irs"):
        assert cmd in out


def test_train_json_progress_and_info(made, capsys):
    rc = main(["field", "train", str(made / "walk"), "--out", str(made / "j.pt"), "--steps", "2", "--batch-size", "2",
               "--json-progress"])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[-1]["event"] == "done" and lines[-1]["path"].endswith("j.pt")
    assert all(x["event"] == "progress" for x in lines[:-1]) and lines[-2]["fraction"] == 1.0
    assert main(["field", "info", str(made / "j.pt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info[0]["kind"] == "anerf" and info[0]["trained"]["steps"] == 2


def test_eval_prints_field_and_baselines(made, capsys):
    assert main(["field", "eval", str(made / "m.pt"), str(made / "walk")]) == 0
    out = capsys.readouterr().out
    for label in ("A-NeRF field", "Mono-Mono", "Mono-Energy", "Stereo-Energy"):
        assert label in out
    assert main(["field", "eval", str(made / "m.pt"), str(made / "walk"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert np.isfinite(res["field"]["mag"]) and res["split"] == "val"


def test_render_command(made, capsys):
    t, mats = D.walk_path(1.0, 10, D.DEFAULT_ROOM, 5)
    job = {"version": 1, "sample_rate": 22050, "fps": 10, "frame_start": 1, "frame_end": 10,
           "listener": {"name": "Cam", "matrix_world": [m.reshape(-1).tolist() for m in mats[:10]]},
           "sources": [{"name": "S", "audio": "walk/source.wav", "position": D.DEFAULT_SOURCE}],
           "output": {"format": "binaural", "path": "out/render.wav"}}
    (made / "job.json").write_text(json.dumps(job))
    assert main(["field", "render", str(made / "m.pt"), str(made / "job.json"), "--quiet"]) == 0
    assert (made / "out" / "render.wav").is_file() and (made / "out" / "render.json").is_file()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["field", "eval", "{d}/nothing.pt", "{d}/walk"], "model file"),
    (["field", "eval", "{d}/corrupt.pt", "{d}/walk"], "corrupt"),
    (["field", "train", "{d}/missing", "--out", "{d}/x.pt"], "not found"),
    (["field", "render", "{d}/m.pt", "{d}/nojob.json"], "job file not found"),
])
def test_user_errors_exit_2_with_one_line(made, capsys, argv, message):
    (made / "corrupt.pt").write_bytes(b"PK\x03\x04 this is not a model")
    rc = main([a.format(d=made) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def _capture_copy(made, name):
    import shutil

    dst = made / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(made / "walk", dst)
    return dst


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_capture_out_of_step_exits_2_naming_the_fix(made, capsys):
    import soundfile as sf

    d = _capture_copy(made, "late")
    rec, fs = sf.read(d / "recording.wav", always_2d=True)
    sf.write(d / "recording.wav", np.concatenate([np.zeros((int(1.5 * fs), 2)), rec])[: len(rec)], fs,
             subtype="FLOAT")  # the recorder was started 1.5 s before the speaker
    assert main(["field", "train", str(d), "--out", str(made / "late.pt"), "--steps", "1", "--quiet"]) == 2
    line = _one_error_line(capsys)
    assert "capture.json" in line and "do not line up in time" in line and '"source_start_s": 1.5' in line
    assert not (made / "late.pt").exists()


def test_capture_with_a_missing_recording_exits_2(made, capsys):
    d = _capture_copy(made, "norec")
    (d / "recording.wav").unlink()
    assert main(["field", "eval", str(made / "m.pt"), str(d)]) == 2
    assert "recording.wav" in _one_error_line(capsys)


@pytest.mark.parametrize("verb", ["info", "render", "eval"])
def test_corrupt_checkpoint_exits_2_for_every_verb(made, capsys, verb):
    good = (made / "m.pt").read_bytes()
    (made / "cut.pt").write_bytes(good[: len(good) // 2])  # a copy interrupted half way
    extra = {"info": [], "render": [str(made / "job.json")], "eval": [str(made / "walk")]}[verb]
    (made / "job.json").write_text(json.dumps({"version": 1}))  # never read: the model is checked first
    assert main(["field", verb, str(made / "cut.pt"), *extra]) == 2
    assert "cut.pt" in _one_error_line(capsys)


def test_render_outside_the_trained_area_warns_and_succeeds(made, capsys):
    mats = np.tile(np.eye(4), (5, 1, 1))
    mats[:, :3, 3] = [0.4, 0.4, 1.5]  # a corner the walk never went near
    job = {"version": 1, "sample_rate": 22050, "fps": 10, "frame_start": 1, "frame_end": 5,
           "listener": {"name": "Cam", "matrix_world": [m.reshape(-1).tolist() for m in mats]},
           "sources": [{"name": "S", "audio": "walk/source.wav", "position": D.DEFAULT_SOURCE}],
           "output": {"format": "binaural", "path": "out/far.wav"}}
    (made / "far.json").write_text(json.dumps(job))
    assert main(["field", "render", str(made / "m.pt"), str(made / "far.json"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert any(x.startswith("warning: ") and "outside the trained area" in x for x in err.splitlines()), err
    notes = json.loads((made / "out" / "far.json").read_text())["notes"]
    assert any("outside the trained area" in n for n in notes)


def test_train_no_early_render_reaches_the_impulse_response_field(tmp_path):
    from soundstage.field.checkpoint import load_fields

    mats = D.random_poses(4, D.DEFAULT_ROOM, D.DEFAULT_SOURCE, np.random.default_rng(3))
    irs = D.simulate_irs(mats, room=D.DEFAULT_ROOM, source_position=D.DEFAULT_SOURCE, ir_seconds=0.25)
    D.write_irs(tmp_path / "irs", irs=irs, sample_rate=D.FIELD_RATE, matrices=mats, split=["train"] * 4,
                source_position=D.DEFAULT_SOURCE, room=D.DEFAULT_ROOM)
    for flag, expected in (([], True), (["--no-early-render"], False)):
        out = tmp_path / f"m{len(flag)}.pt"
        assert main(["field", "train", str(tmp_path / "irs"), "--out", str(out), "--steps", "1", "--batch-size", "2",
                     "--quiet", *flag]) == 0
        assert load_fields(out)[0].config.early_render is expected
