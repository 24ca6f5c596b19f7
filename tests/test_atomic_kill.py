"""The kill test: 20 SIGKILLs at random moments of a bake.

Each time, the target is either the previous file, byte for byte, or the
complete new track (its samples equal an uninterrupted bake of that version).
Bakes alternate between two versions of a job and always run with
``--resume``, so kills also land while resuming and while writing the final
file (a 9 MB 5.1 track); at the end the temporary files the kills left behind
are swept and a last ``--resume`` completes the track.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from bakekit import moving_scene
from soundstage.bake import bake
from soundstage.locks import TEMP_PREFIX

ENV = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSTAGE_")}
KILLS = 20


def _start(job_file, work):
    return subprocess.Popen([sys.executable, "-m", "soundstage.cli", "bake", str(job_file), "--resume",
                             "--chunk-seconds", "1", "--no-cache", "--work-dir", str(work), "--quiet"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_twenty_sigkills_never_damage_the_track(tmp_path):
    target = tmp_path / "out.wav"
    work = tmp_path / "work"
    versions, refs = [], []
    for v, gain in enumerate((0.0, -6.0)):
        job = moving_scene(tmp_path, fmt="5.1", room="free", seconds=8.0, n_sources=2)
        job["sources"][0]["gain_db"] = gain
        job["output"]["path"] = str(target)
        f = tmp_path / f"job{v}.json"
        f.write_text(json.dumps(job))
        versions.append(f)
        ref = bake(job, out=tmp_path / f"ref{v}.wav", cache=False, work_dir=tmp_path / "refwork")
        refs.append(sf.read(ref.path, dtype="float32")[0])
    assert not np.array_equal(refs[0], refs[1])
    target.write_bytes((tmp_path / "ref1.wav").read_bytes())  # the previous track

    # How long an uninterrupted bake takes here, to spread the kills over it.
    t0 = time.monotonic()
    p = _start(versions[0], tmp_path / "timing")
    assert p.wait(300) == 0, p.stderr.read()
    full = time.monotonic() - t0
    target.write_bytes((tmp_path / "ref1.wav").read_bytes())

    rng = np.random.default_rng(20)
    outcomes = []
    for i in range(KILLS):
        v = i % 2
        before = target.read_bytes()
        # Half anywhere in the bake, half near its end (resume, final write).
        delay = rng.uniform(0.05, 0.9) * full if i % 4 < 2 else rng.uniform(0.7, 1.2) * full
        p = _start(versions[v], work)
        time.sleep(delay)
        p.kill()
        p.wait(30)
        after = target.read_bytes()
        if after == before:
            outcomes.append("previous")
            continue
        # Not the previous file: it must be the complete new one.
        x, fs = sf.read(target, dtype="float32")
        assert fs == 48000 and x.shape == refs[v].shape, f"kill {i}: a damaged file ({x.shape})"
        np.testing.assert_array_equal(x, refs[v], err_msg=f"kill {i}: neither the previous nor the new track")
        json.loads(target.with_suffix(".json").read_text())  # the sidecar is whole JSON
        outcomes.append("new")
    print(f"{KILLS} SIGKILLs (full bake {full:.1f} s): {outcomes.count('previous')} left the previous file, "
          f"{outcomes.count('new')} the complete new one; "
          f"{len(list(tmp_path.glob(TEMP_PREFIX + '*')))} temporary files left")
    assert outcomes.count("previous") >= 1 and outcomes.count("new") >= 1

    # Temporary files left by kills during the final write are swept once stale.
    old = time.time() - 3600
    for f in tmp_path.glob(TEMP_PREFIX + "*"):
        os.utime(f, (old, old))
    for v in (0, 1):  # both versions resume to their complete tracks
        p = _start(versions[v], work)
        assert p.wait(300) == 0, p.stderr.read()
        np.testing.assert_array_equal(sf.read(target, dtype="float32")[0], refs[v])
    assert not list(tmp_path.glob(TEMP_PREFIX + "*"))
    assert not any(d.is_dir() for d in work.iterdir())  # finished bakes' work folders are gone
