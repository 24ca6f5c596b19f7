"""Scenes for the chunk, cache, resume and Dask tests: moving sources, a turning listener, cuts."""

from __future__ import annotations

import numpy as np

from jobkit import camera_matrix, write_noise

SHOEBOX = {"type": "shoebox", "min": [0, 0, 0], "max": [6, 5, 3], "material": "brickwork"}
FREE = {"type": "free_field"}


def moving_scene(folder, *, fmt="binaural", room="shoebox", seconds=2.0, n_sources=2, cuts=True, fps=24,
                 fs=48000, order=1, render=None, out="out.wav"):
    """A job dict: sources circling in a 6 x 5 x 3 m room (or free field), the camera turning.

    With ``cuts`` the first source teleports 1.5 m halfway through and the
    camera jumps (position and a 100-degree turn) at three quarters, so both
    kinds of crossfaded cut fall inside the shot. Source i starts at frame
    1 + 3 i, so the sources' audio does not line up with the chunks.
    """
    frames = int(round(seconds * fps))
    t = np.arange(frames) / fps
    sources = []
    for i in range(n_sources):
        audio = write_noise(folder / f"noise{i}.wav", fs=fs, seconds=seconds, seed=i)
        pos = np.stack([1.6 + 0.6 * i + 0.8 * np.sin(2 * t + i), 1.2 + 0.5 * np.cos(3 * t + i),
                        1.2 + 0.1 * i + 0 * t], axis=1)
        if cuts and i == 0:
            pos[frames // 2:, 0] += 1.5
        sources.append({"name": f"src{i}", "audio": audio, "position": pos.tolist(), "start_frame": 1 + 3 * i})
    cams = [camera_matrix([3.0, 2.5, 1.6], yaw_deg=40 * tt) for tt in t]
    if cuts:
        for k in range(frames * 3 // 4, frames):
            cams[k] = camera_matrix([3.5, 2.0, 1.6], yaw_deg=40 * t[k] + 100)
    job = {
        "version": 1, "sample_rate": fs, "fps": fps, "frame_start": 1, "frame_end": frames,
        "room": SHOEBOX if room == "shoebox" else FREE,
        "listener": {"name": "Camera", "matrix_world": [np.asarray(m).reshape(-1).tolist() for m in cams]},
        "sources": sources,
        "output": {"format": fmt, "ambisonic_order": order, "path": str(folder / out)},
    }
    if render:
        job["render"] = render
    return job


def error_db(x, ref):
    """Largest sample difference relative to the reference's peak, dB (-inf when identical)."""
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    peak = np.max(np.abs(ref))
    diff = np.max(np.abs(x - ref)) if x.size else 0.0
    return -np.inf if diff == 0 else 20 * np.log10(diff / peak)
