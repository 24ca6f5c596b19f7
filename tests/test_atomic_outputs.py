"""Interrupting a bake never damages the previous track, and --resume continues it.

* a lock per target: a second bake of it fails at once with one line, and a
  lock held by a process that died (even by SIGKILL) is free again;
* stale temporary files are swept, live ones are not;
* cancel (Esc in Blender) and Ctrl-C (SIGINT) leave the previous file
  byte-identical and the finished chunks in the work folder; ``--resume``
  renders only the rest, and the result equals an uninterrupted bake.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bakekit import error_db, moving_scene
from soundstage.bake import bake
from soundstage.cli import main
from soundstage.errors import Cancelled
from soundstage.locks import TEMP_PREFIX, FileLock, LockedError, sweep_stale_temps, target_lock

ENV = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSTAGE_")}


def _previous(path: Path) -> bytes:
    """Put a recognisable 'previous track' at ``path`` and return its bytes."""
    sf.write(path, np.full((1000, 2), 0.25, np.float32), 48000, subtype="FLOAT")
    path.with_suffix(".json").write_text('{"previous": true}\n')
    return path.read_bytes()


def test_lock_excludes_and_is_released_by_death(tmp_path):
    lock_file = tmp_path / ".x.wav.lock"
    code = ("import sys, time; from soundstage.locks import FileLock; "
            f"l = FileLock({str(lock_file)!r}); l.acquire(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        mine = FileLock(lock_file, what="output 'x.wav'")
        with pytest.raises(LockedError, match=rf"output 'x.wav' is being written by another bake \(pid {holder.pid} "):
            mine.acquire(timeout=0.3)
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait(10)
        assert lock_file.exists()  # left behind, but nobody holds it
        mine.acquire(timeout=5)
        assert mine.held
        mine.release()
        assert not lock_file.exists()
    finally:
        holder.kill()
        holder.wait(10)


def test_second_bake_of_a_target_fails_in_one_line(tmp_path, capsys):
    job = moving_scene(tmp_path, fmt="stereo", room="free", seconds=0.3, n_sources=1, cuts=False)
    (tmp_path / "job.json").write_text(json.dumps(job))
    before = _previous(tmp_path / "out.wav")
    with target_lock(tmp_path / "out.wav"):
        with pytest.raises(LockedError):
            bake(job, cache=False)
        assert main(["bake", str(tmp_path / "job.json"), "--no-cache"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is being written by another bake" in err[0] and "out.wav" in err[0]
    assert (tmp_path / "out.wav").read_bytes() == before
    bake(job, cache=False)  # free again
    assert (tmp_path / "out.wav").read_bytes() != before


def test_stale_temporary_files_are_swept_live_ones_kept(tmp_path):
    old, fresh = tmp_path / f"{TEMP_PREFIX}dead.wav", tmp_path / f"{TEMP_PREFIX}live.wav"
    other = tmp_path / "keep.wav"
    for f in (old, fresh, other):
        f.write_bytes(b"x")
    t = time.time() - 3600
    os.utime(old, (t, t))
    os.utime(other, (t, t))
    assert sweep_stale_temps(tmp_path) == [old]
    assert fresh.exists() and other.exists()
    # A bake sweeps its output folder.
    os.utime(fresh, (t, t))
    job = moving_scene(tmp_path, fmt="stereo", room="free", seconds=0.2, n_sources=1, cuts=False)
    bake(job, cache=False)
    assert not fresh.exists() and other.exists()


def _reference(tmp_path, job):
    ref = bake(job, out=tmp_path / "ref.wav", cache=False, work_dir=tmp_path / "refwork", chunk_seconds=0.25)
    return sf.read(ref.path, dtype="float32")[0]


def test_cancel_keeps_the_previous_file_and_resume_finishes(tmp_path):
    job = moving_scene(tmp_path, fmt="binaural", room="shoebox", seconds=1.5, n_sources=2)
    target = tmp_path / "out.wav"
    before = _previous(target)
    side_before = target.with_suffix(".json").read_bytes()
    stop = threading.Event()
    finished = []

    def progress(fraction, message):
        if "done" in message and "chunk" in message:
            finished.append(message)
            if len(finished) == 5:
                stop.set()  # Esc after five parts

    with pytest.raises(Cancelled):
        bake(job, cancel=stop, progress=progress, chunk_seconds=0.25, cache=False, work_dir=tmp_path / "w")
    assert target.read_bytes() == before and target.with_suffix(".json").read_bytes() == side_before
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))
    (work,) = (tmp_path / "w").iterdir() if (tmp_path / "w").is_dir() else [None]
    assert len(_parts(work)) == 5
    assert not list(tmp_path.glob(".out.wav.lock"))  # released
    # Without --resume a bake starts over; with it, only the other 7 parts are rendered.
    done = bake(job, resume=True, chunk_seconds=0.25, cache=False, work_dir=tmp_path / "w")
    assert done.info["chunks"]["resumed"] == 5 and done.info["chunks"]["rendered"] == 7
    assert error_db(sf.read(target, dtype="float32")[0], _reference(tmp_path, job)) <= -120
    assert not work.exists()  # removed once the track is complete


def test_resume_ignores_a_corrupt_part(tmp_path):
    job = moving_scene(tmp_path, fmt="stereo", room="free", seconds=1.0, n_sources=1)
    stop = threading.Event()
    n = []

    def progress(fraction, message):
        if "chunk" in message and "done" in message:
            n.append(1)
            if len(n) == 3:
                stop.set()

    with pytest.raises(Cancelled):
        bake(job, cancel=stop, progress=progress, chunk_seconds=0.25, cache=False, work_dir=tmp_path / "w")
    parts = sorted(_parts(tmp_path / "w"))
    assert len(parts) == 3
    parts[0].write_bytes(parts[0].read_bytes()[:200])  # a damaged file (e.g. a disk error)
    done = bake(job, resume=True, chunk_seconds=0.25, cache=False, work_dir=tmp_path / "w")
    assert done.info["chunks"]["resumed"] == 2 and done.info["chunks"]["rendered"] == 2
    assert error_db(sf.read(done.path, dtype="float32")[0], _reference(tmp_path, job)) <= -120


def _parts(work: Path) -> list[Path]:
    """Finished part files in a work root (not the temporary files being written)."""
    return [f for f in work.rglob("*.npy") if not f.name.startswith(TEMP_PREFIX)]


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "soundstage.cli", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_ctrl_c_then_resume_from_the_command_line(tmp_path):
    job = moving_scene(tmp_path, fmt="binaural", room="shoebox", seconds=2.0, n_sources=2)
    (tmp_path / "job.json").write_text(json.dumps(job))
    target = tmp_path / "out.wav"
    before = _previous(target)
    work = tmp_path / "w"
    args = ("bake", tmp_path / "job.json", "--chunk-seconds", "0.25", "--no-cache", "--work-dir", work, "--quiet")
    # Ctrl-C must reach the bake even when these tests run in a background job (`make test &`):
    # such a shell starts them with SIGINT ignored, children inherit that, and Python then keeps
    # it ignored instead of installing its handler.
    p = _cli(*args, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not _parts(work) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == "cancelled; nothing was written"
    assert target.read_bytes() == before
    kept = len(_parts(work))
    assert kept >= 1
    p = _cli(*args, "--resume")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    info = json.loads(target.with_suffix(".json").read_text())
    assert info["chunks"]["resumed"] >= kept and info["chunks"]["rendered"] == 16 - info["chunks"]["resumed"]
    assert error_db(sf.read(target, dtype="float32")[0], _reference(tmp_path, job)) <= -120
