"""The engine's worker process (``python -m soundstage.worker``): JSON-line protocol, exit codes, cancel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")
pytest.importorskip("soundstage.bake")

REPO = Path(__file__).resolve().parents[1]
CAMERA_AT_ORIGIN_LOOKING_PLUS_Y = [1, 0, 0, 0, 0, 0, -1, 0, 0, 1, 0, 0, 0, 0, 0, 1]


def _job(tmp_path: Path, seconds=1.0, fmt="stereo", room=None, audio=None) -> Path:
    rate, fps = 48000, 24
    if audio is None:
        audio = tmp_path / "src.wav"
        sf.write(str(audio), (0.1 * np.random.default_rng(1).standard_normal(int(rate * seconds))).astype(np.float32),
                 rate)
    n = int(seconds * fps)
    job = {"version": 1, "sample_rate": rate, "fps": fps, "frame_start": 1, "frame_end": n,
           "room": room or {"type": "free_field"},
           "listener": {"name": "Cam", "matrix_world": CAMERA_AT_ORIGIN_LOOKING_PLUS_Y},
           "sources": [{"name": "s", "audio": str(audio), "position": [-2.0, 1.0, 0.0]}],
           "output": {"format": fmt, "path": "out/track.wav"}}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return path


def _start(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "soundstage.worker", *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)


def _events(stdout: str) -> list[dict]:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    events = [json.loads(ln) for ln in lines]  # every stdout line is one JSON object
    assert all("event" in e for e in events)
    return events


def test_done_event_and_files(tmp_path):
    job = _job(tmp_path)
    p = _start(job, "--out", tmp_path / "o" / "x.wav", "--format", "binaural")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    ev = _events(out)
    assert ev[0]["event"] == "start" and ev[-1]["event"] == "done"
    fractions = [e["fraction"] for e in ev if e["event"] == "progress"]
    assert fractions and all(0 <= f <= 1 for f in fractions) and fractions == sorted(fractions)
    done = ev[-1]
    assert Path(done["path"]) == tmp_path / "o" / "x.wav" and Path(done["sidecar"]).is_file()
    assert done["info"]["format"] == "binaural"
    x, rate = sf.read(done["path"])
    assert x.shape == (48000, 2)


def test_user_error_is_one_line_and_exit_2(tmp_path):
    job = _job(tmp_path, audio=tmp_path / "missing_voice.wav")
    p = _start(job)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2
    ev = _events(out)
    assert ev[-1]["event"] == "error" and "missing_voice.wav" in ev[-1]["message"]
    assert "\n" not in ev[-1]["message"] and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_cancel_line_stops_without_touching_the_previous_output(tmp_path):
    job = _job(tmp_path)
    previous = tmp_path / "out" / "track.wav"
    previous.parent.mkdir()
    previous.write_bytes(b"previous take")
    p = _start(job)
    first = json.loads(p.stdout.readline())
    assert first["event"] == "start"
    p.stdin.write("cancel\n")
    p.stdin.flush()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 3, err
    assert _events(out)[-1]["event"] == "cancelled"
    assert previous.read_bytes() == b"previous take"
    assert sorted(x.name for x in previous.parent.iterdir()) == ["track.wav"]


def test_cancel_on_eof_when_the_parent_goes_away(tmp_path):
    job = _job(tmp_path)
    p = _start(job, "--cancel-on-eof")
    assert json.loads(p.stdout.readline())["event"] == "start"
    p.stdin.close()
    out = p.stdout.read()
    p.wait(timeout=120)
    assert p.returncode == 3 and _events(out)[-1]["event"] == "cancelled"
    assert not (tmp_path / "out" / "track.wav").exists()


def test_sigterm_mid_bake_cancels(tmp_path):
    """Once the engine is rendering, SIGTERM stops it at its next check; nothing is written."""
    room = {"type": "shoebox", "min": [-3, -3, -1.5], "max": [3, 3, 1.5], "material": "plasterboard"}
    job = _job(tmp_path, seconds=20.0, fmt="binaural", room=room)
    p = _start(job)
    t0 = time.monotonic()
    while True:
        line = p.stdout.readline()
        assert line, "worker ended before rendering"
        ev = json.loads(line)
        if ev["event"] == "progress" and "direct" in ev["message"]:
            break
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 3, err
    assert _events(out)[-1]["event"] == "cancelled"
    assert not (tmp_path / "out" / "track.wav").exists()
    assert time.monotonic() - t0 < 60


def test_help_needs_no_engine_imports():
    r = subprocess.run([sys.executable, "-m", "soundstage.worker", "--help"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert r.returncode == 0 and "cancel" in r.stdout
