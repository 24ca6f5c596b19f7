"""Benchmark: importing a million gaussians (time and peak memory vs file size).

Targets (issue 4): under 10 s, and extra memory under twice the file size.

A random scene of ``--count`` gaussians is written in the Inria PLY layout
(binary little-endian, SH degree 3 by default: 62 float32 properties
including the nx/ny/nz the reference trainer writes, 248 bytes a gaussian) and as a 32-byte
``.splat``. Each import then runs in a fresh process so that its peak
resident memory (VmHWM) is its own; "extra" is that peak minus the
process's resident size just before the read. Side by side: Soundstage's
chunked reader and the obvious alternative, plyfile reading the whole body
followed by the same conversions in numpy.

The page cache is warm (the file was just written), as it is when a user
imports a file they just downloaded or copied; a cold read adds disk time.

Run: ``.venv/bin/python benchmarks/bench_splats_import.py [--count 1000000] [--sh-degree 3]``
Prints a table and writes benchmarks/results/splats_import.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as np
from scipy.special import expit
import soundstage.splats as ss
import plyfile

def status_kb(key):
    # VmHWM (peak RSS) belongs to this process image; ru_maxrss would not do:
    # on Linux it survives fork and exec, so it includes the parent's memory.
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(key)

def rss_kb():
    return status_kb("VmRSS")

path, how = sys.argv[1], sys.argv[2]
before = rss_kb()
t0 = time.perf_counter()
if how == "soundstage":
    s = ss.read_splats(path)
    arrays = [s.positions, s.scales, s.rotations, s.opacities, s.colors, s.sh_dc, s.sh_rest]
    arrays = [a for a in arrays if a is not None] + list(s.extra.values())
    n = len(s)
else:
    v = plyfile.PlyData.read(path)["vertex"].data
    names = v.dtype.names
    pos = np.stack([v["x"], v["y"], v["z"]], 1)
    scales = np.exp(np.stack([v[f"scale_{{i}}"] for i in range(3)], 1))
    q = np.stack([v[f"rot_{{i}}"] for i in range(4)], 1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    op = expit(v["opacity"])
    dc = np.stack([v[f"f_dc_{{i}}"] for i in range(3)], 1)
    col = np.clip(0.5 + 0.28209479177387814 * dc, 0, 1)
    rest = [k for k in names if k.startswith("f_rest_")]
    k = len(rest) // 3
    sh = np.stack([v[f"f_rest_{{j}}"] for j in range(3 * k)], 1).reshape(-1, 3, k).transpose(0, 2, 1).copy() if k else None
    arrays = [pos, scales, q, op, col, dc] + ([] if sh is None else [sh])
    n = len(v)
elapsed = time.perf_counter() - t0
peak = status_kb("VmHWM")
print(json.dumps({{"n": int(n), "seconds": elapsed, "rss_before_kb": before, "peak_kb": peak,
                  "result_bytes": int(sum(a.nbytes for a in arrays))}}))
"""


def make_scene(n: int, sh_degree: int, seed: int = 0):
    from soundstage.splats.model import SH_C0, Splats

    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4)).astype(np.float32)
    k = (sh_degree + 1) ** 2 - 1
    dc = rng.normal(0, 1, (n, 3)).astype(np.float32)
    s = Splats(
        positions=rng.uniform(-5, 5, (n, 3)).astype(np.float32),
        scales=np.exp(rng.uniform(-6, -1, (n, 3))).astype(np.float32),
        rotations=q,  # unnormalised, as trainers write them
        opacities=rng.uniform(0.01, 0.99, n).astype(np.float32),
        colors=np.clip(0.5 + SH_C0 * dc, 0, 1),
        sh_rest=rng.normal(0, 0.1, (n, k, 3)).astype(np.float32) if k else None,
        sh_degree=sh_degree, sh_dc=dc,
        extra={c: np.zeros(n, np.float32) for c in ("nx", "ny", "nz")},
    )
    return s


def run_child(path: Path, how: str) -> dict:
    code = CHILD.format(root=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code, str(path), how], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{how} on {path.name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--sh-degree", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2, help="runs per reader; the best time is reported")
    ap.add_argument("--no-plyfile", action="store_true", help="skip the plyfile side")
    args = ap.parse_args()

    from soundstage.splats import write_ply, write_splat

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_splats_") as tmp:
        t0 = time.perf_counter()
        scene = make_scene(args.count, args.sh_degree)
        ply = Path(tmp) / f"scene_sh{args.sh_degree}.ply"
        write_ply(ply, scene)
        splat = Path(tmp) / "scene.splat"
        write_splat(splat, scene)
        del scene
        print(f"wrote {args.count:,} gaussians in {time.perf_counter() - t0:.1f} s "
              f"({ply.stat().st_size / 1e6:.0f} MB .ply, {splat.stat().st_size / 1e6:.0f} MB .splat)")
        cases = [(ply, "soundstage")] + ([] if args.no_plyfile else [(ply, "plyfile")]) + [(splat, "soundstage")]
        for path, how in cases:
            runs = [run_child(path, how) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            size = path.stat().st_size
            extra = max(r["peak_kb"] - r["rss_before_kb"] for r in runs) * 1024
            rows.append({"file": path.name, "reader": how, "gaussians": best["n"], "file_bytes": size,
                         "seconds": best["seconds"], "extra_bytes": extra, "extra_over_file": extra / size,
                         "result_bytes": best["result_bytes"]})
    print(f"\n{'file':<16}{'reader':<12}{'gaussians':>11}{'file MB':>9}{'time s':>8}"
          f"{'extra MB':>10}{'extra/file':>11}{'result MB':>10}")
    for r in rows:
        print(f"{r['file']:<16}{r['reader']:<12}{r['gaussians']:>11,}{r['file_bytes'] / 1e6:>9.0f}"
              f"{r['seconds']:>8.2f}{r['extra_bytes'] / 1e6:>10.0f}{r['extra_over_file']:>11.2f}"
              f"{r['result_bytes'] / 1e6:>10.0f}")
    ours = [r for r in rows if r["reader"] == "soundstage" and r["file"].endswith(".ply")][0]
    ok_time = ours["seconds"] < 10
    ok_mem = ours["extra_over_file"] < 2
    print(f"\ntargets: time < 10 s {'met' if ok_time else 'MISSED'}, extra memory < 2 x file "
          f"{'met' if ok_mem else 'MISSED'}")
    ref = [r for r in rows if r["reader"] == "plyfile"]
    if ref:
        print(f"plyfile + numpy / soundstage: time x{ref[0]['seconds'] / ours['seconds']:.2f}, "
              f"extra memory x{ref[0]['extra_bytes'] / ours['extra_bytes']:.2f}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "count": args.count, "sh_degree": args.sh_degree}
    (out / "splats_import.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
