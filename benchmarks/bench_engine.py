"""Engine speed and accuracy against the Sonic4D-style reference, side by side.

Scenario (issue 1): a moving source and a moving, turning listener, 30 s at
48 kHz, a 6 x 5 x 3 m room with T60 about 0.6 s, poses at 30 fps, binaural.

Reference: the method of the Sonic4D paper built on pyroomacoustics: for every
frame a full image-source RIR at each ear position (ears 9 cm either side of
the head centre), then block-wise convolution of the source with that frame's
RIRs (overlap-add). It is far too slow to run for all 900 frames here, so it
runs on ``--ref-frames`` evenly spread frames and its per-frame cost is
multiplied out; the printout says so.

Accuracy: T30, EDT and C50 of Soundstage's impulse response (AmbiX W, static
source and listener) against pyroomacoustics' full ISM RIR of the same room.

Each side runs in its own process so peak memory (max RSS) is its own.

Run: ``.venv/bin/python benchmarks/bench_engine.py [--seconds 30] [--ref-frames 12]``
Prints a table and writes benchmarks/results/engine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FS = 48000
FPS = 30
ROOM = [6.0, 5.0, 3.0]
ALPHA = 0.22  # gives T60 close to 0.6 s in this room (image-source decay)
EAR = 0.09


def scenario(seconds: float):
    """Per-frame source positions and listener matrices (camera walks and turns)."""
    from scipy.spatial.transform import Rotation

    n = int(round(seconds * FPS))
    t = np.arange(n) / FPS
    src = np.stack([3 + 2.0 * np.cos(0.3 * t), 2.5 + 1.5 * np.sin(0.3 * t), 1.5 + 0 * t], axis=1)
    lis = np.stack([1.5 + 0.5 * np.sin(0.1 * t), 1.5 + 0.3 * t / seconds, 1.6 + 0 * t], axis=1)
    yaw = 40 * np.sin(0.2 * t)
    mats = []
    for k in range(n):
        R = Rotation.from_euler("z", yaw[k], degrees=True) * Rotation.from_euler("xyz", [90, 0, -90], degrees=True)
        M = np.eye(4)
        M[:3, :3] = R.as_matrix()
        M[:3, 3] = lis[k]
        mats.append(M)
    return src, np.array(mats)


def source_audio(seconds: float, path: Path):
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * FS)) / FS
    x = 0.1 * rng.standard_normal(len(t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)) + 0.2 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, x.astype(np.float32), FS, subtype="FLOAT")


def run_ours(seconds: float, workdir: Path) -> dict:
    from soundstage.bake import bake

    src, mats = scenario(seconds)
    audio = workdir / "src.wav"
    source_audio(seconds, audio)
    job = {
        "version": 1, "sample_rate": FS, "fps": FPS, "frame_start": 1, "frame_end": len(src),
        "room": {"type": "shoebox", "min": [0, 0, 0], "max": ROOM, "material": {"absorption": ALPHA}},
        "listener": {"name": "Cam", "matrix_world": mats.reshape(len(mats), 16).tolist()},
        "sources": [{"name": "S", "audio": str(audio), "position": src.tolist()}],
        "output": {"format": "binaural", "path": str(workdir / "ours.wav")},
    }
    t0 = time.perf_counter()
    res = bake(job)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "audio_s": seconds, "sidecar_wall_s": res.info["wall_time_s"]}


def run_reference(seconds: float, ref_frames: int, workdir: Path) -> dict:
    import pyroomacoustics as pra
    from scipy.signal import fftconvolve

    from soundstage.poses import listener_frame

    src, mats = scenario(seconds)
    audio = workdir / "src.wav"
    source_audio(seconds, audio)
    x, _ = sf.read(audio, dtype="float32")
    pos, rot = listener_frame(mats)
    F = len(src)
    hop = FS // FPS
    frames = np.linspace(0, F - 1, ref_frames).round().astype(int)
    t0 = time.perf_counter()
    out = np.zeros((len(x) + FS * 2, 2))
    for k in frames:
        left = rot[k][:, 1]
        for e, sign in enumerate((1.0, -1.0)):
            room = pra.ShoeBox(ROOM, fs=FS, materials=pra.Material(ALPHA), max_order=40, air_absorption=True)
            room.add_source(src[k])
            room.add_microphone(pos[k] + sign * EAR * left)
            room.compute_rir()
            rir = np.asarray(room.rir[0][0])
            block = x[k * hop : (k + 1) * hop]
            y = fftconvolve(block, rir)
            end = min(len(out), k * hop + len(y))
            out[k * hop : end, e] += y[: end - k * hop]
    per_frame = (time.perf_counter() - t0) / len(frames)
    return {"per_frame_s": per_frame, "frames_measured": len(frames), "frames_total": F,
            "wall_s_extrapolated": per_frame * F}


def accuracy(workdir: Path) -> dict:
    import pyroomacoustics as pra

    from soundstage import metrics
    from soundstage.job import load_job
    from soundstage.render import render_job

    x = np.zeros(int(1.5 * FS), np.float32)
    x[0] = 1.0
    sf.write(workdir / "imp.wav", x, FS, subtype="FLOAT")
    s, l = [4.1, 1.3, 1.6], [1.5, 3.2, 1.2]
    M = np.eye(4)
    M[:3, 3] = l
    job = {"version": 1, "sample_rate": FS, "fps": FPS, "frame_start": 1, "frame_end": 45,
           "room": {"type": "shoebox", "min": [0, 0, 0], "max": ROOM, "material": {"absorption": ALPHA}},
           "render": {"air_absorption": False},
           "listener": {"name": "Cam", "matrix_world": M.ravel().tolist()},
           "sources": [{"name": "S", "audio": str(workdir / "imp.wav"), "position": s}],
           "output": {"format": "ambix", "path": str(workdir / "ir.wav")}}
    w = render_job(load_job(job)).audio[:, 0].astype(float)
    room = pra.ShoeBox(ROOM, fs=FS, materials=pra.Material(ALPHA), max_order=60, air_absorption=False)
    room.add_source(s)
    room.add_microphone(l)
    room.compute_rir()
    ref = np.asarray(room.rir[0][0])
    out = {}
    for name, f in (("T30_s", metrics.t30), ("EDT_s", metrics.edt), ("C50_dB", metrics.clarity)):
        out[name] = {"soundstage": round(f(w, FS), 4), "pyroomacoustics": round(f(ref, FS), 4)}
    return out


def child(part: str, seconds: float, ref_frames: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        wd = Path(d)
        res = run_ours(seconds, wd) if part == "ours" else (
            run_reference(seconds, ref_frames, wd) if part == "ref" else accuracy(wd))
    res["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--ref-frames", type=int, default=12)
    ap.add_argument("--part", choices=["ours", "ref", "acc"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.part:
        child(a.part, a.seconds, a.ref_frames)
        return

    def run(part):
        r = subprocess.run([sys.executable, __file__, "--part", part, "--seconds", str(a.seconds),
                            "--ref-frames", str(a.ref_frames)], capture_output=True, text=True, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])

    ours, ref, acc = run("ours"), run("ref"), run("acc")
    speedup = ref["wall_s_extrapolated"] / ours["wall_s"]
    rt = ours["audio_s"] / ours["wall_s"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    print(f"scenario: {a.seconds:.0f} s at {FS} Hz, {FPS} fps poses, binaural, 6x5x3 m room, alpha {ALPHA}")
    print(f"soundstage: {ours['wall_s']:.2f} s wall, {rt:.1f}x real time, peak RSS {ours['max_rss_mb']} MB")
    print(f"reference : {ref['per_frame_s']:.3f} s per frame (measured on {ref['frames_measured']} of "
          f"{ref['frames_total']} frames) -> {ref['wall_s_extrapolated']:.0f} s for the scene, "
          f"peak RSS {ref['max_rss_mb']} MB")
    print(f"speed-up over reference: {speedup:.0f}x (target >= 100x); real-time factor {rt:.1f} (target >= 10)")
    for k, v in acc.items():
        if k == "max_rss_mb":
            continue
        rel = (v["soundstage"] - v["pyroomacoustics"])
        print(f"{k:7s} soundstage {v['soundstage']:.3f}  pyroomacoustics {v['pyroomacoustics']:.3f}  diff {rel:+.3f}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "engine.json").write_text(json.dumps({"ours": ours, "reference": ref, "accuracy": acc,
                                                 "speedup": speedup, "realtime_factor": rt}, indent=2))


if __name__ == "__main__":
    main()
