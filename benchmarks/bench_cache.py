"""Re-bake after changing one of four sources, against the full bake, side by side.

Scenario (issue 6): four sources moving in a 6 x 5 x 3 m room, a walking and
turning camera, binaural, ``--seconds`` long (default 30), the default chunk
length. Three bakes of the same target, each in a fresh process (as a user
runs ``soundstage bake``) with a private, initially empty cache:

1. full: nothing cached but the processed HRTF (which every bake reuses);
2. one changed: source 3 plays a different recording;
3. unchanged: the same job again.

The issue asks for (2) <= 35 % of (1). The timings are wall times of the
whole command (start-up included) and of the bake itself (the sidecar's
``wall_time_s``); the printout gives both ratios. The outputs of (2) are
checked against an uncached bake of the changed job.

Run: ``.venv/bin/python benchmarks/bench_cache.py [--seconds 30]``
Writes benchmarks/results/cache.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def scene(folder: Path, seconds: float) -> dict:
    from bakekit import moving_scene

    return moving_scene(folder, fmt="binaural", room="shoebox", seconds=seconds, n_sources=4, cuts=False,
                        fps=30)


def bake_cli(job_file: Path, env: dict, *extra) -> tuple[float, dict]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "soundstage.cli", "bake", str(job_file), "--quiet", *extra], env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        sys.exit(f"bake failed: {p.stderr.strip()}")
    job = json.loads(job_file.read_text())
    info = json.loads(Path(job["output"]["path"]).with_suffix(".json").read_text())
    return wall, info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        tmp = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDSTAGE_")}
        env["SOUNDSTAGE_CACHE_DIR"] = str(tmp / "cache")
        job = scene(tmp, args.seconds)
        job_file = tmp / "job.json"
        job_file.write_text(json.dumps(job))
        # The processed HRTF is cached once, as on any machine that has baked before.
        subprocess.run([sys.executable, "-c", "from soundstage.hrtf import load_hrtf; load_hrtf('default', 48000)"],
                       env=env, check=True)
        full_wall, full = bake_cli(job_file, env)
        from jobkit import write_noise

        job["sources"][3]["audio"] = write_noise(tmp / "new_take.wav", seconds=args.seconds, seed=99)
        job_file.write_text(json.dumps(job))
        one_wall, one = bake_cli(job_file, env)
        same_wall, same = bake_cli(job_file, env)
        changed = sf.read(job["output"]["path"], dtype="float32")[0]
        ref_file = tmp / "ref.job.json"  # not ref.json: that is the sidecar of ref.wav
        ref_job = dict(job, output=dict(job["output"], path=str(tmp / "ref.wav")))
        ref_file.write_text(json.dumps(ref_job))
        bake_cli(ref_file, env, "--no-cache")
        ref = sf.read(tmp / "ref.wav", dtype="float32")[0]
        identical = bool(np.array_equal(changed, ref))
        cache_info = json.loads(subprocess.run([sys.executable, "-m", "soundstage.cli", "cache", "info", "--json"],
                                               env=env, capture_output=True, text=True).stdout)
    rows = [("full bake", full_wall, full), ("one source changed", one_wall, one),
            ("nothing changed", same_wall, same)]
    print(f"{args.seconds:g} s, 4 sources, binaural, shoebox; {full['chunks']['count']} chunks x 4 sources; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'bake':22s} {'command s':>10s} {'bake s':>8s} {'rendered':>9s} {'cached':>7s}  ratio (command / bake)")
    out = {"seconds": args.seconds, "chunks": full["chunks"]["count"], "load_average": os.getloadavg()[0],
           "cpus": os.cpu_count(), "identical_to_uncached": identical, "cache_bytes": cache_info["total_bytes"]}
    for name, wall, info in rows:
        r_cmd, r_bake = wall / full_wall, info["wall_time_s"] / full["wall_time_s"]
        print(f"{name:22s} {wall:10.2f} {info['wall_time_s']:8.2f} {info['chunks']['rendered']:9d} "
              f"{info['chunks']['from_cache']:7d}  {100 * r_cmd:5.1f} % / {100 * r_bake:5.1f} %")
        out[name.replace(" ", "_")] = {"command_s": round(wall, 3), "bake_s": info["wall_time_s"],
                                       "rendered": info["chunks"]["rendered"],
                                       "from_cache": info["chunks"]["from_cache"],
                                       "ratio_command": round(r_cmd, 4), "ratio_bake": round(r_bake, 4)}
    print(f"re-bake after changing one source equals an uncached bake of it: {identical}; "
          f"cache size {cache_info['total_bytes'] / 2**20:.1f} MiB")
    target = 0.35
    one_r = out["one_source_changed"]
    startup = same_wall - same["wall_time_s"]
    print(f"issue target, one changed <= {100 * target:.0f} % of the full bake: bake time "
          f"{100 * one_r['ratio_bake']:.1f} % ({'met' if one_r['ratio_bake'] <= target else 'NOT met'}); whole "
          f"command {100 * one_r['ratio_command']:.1f} % ({'met' if one_r['ratio_command'] <= target else 'NOT met'}),"
          f" of which about {startup:.1f} s per command is interpreter start-up and imports")
    out["startup_s"] = round(startup, 3)
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "cache.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
