"""Benchmark: importing Gaussian splats into Blender (bpy module), side by side with Blender's own PLY importer.

Files: the real donut capture (45,624 gaussians, SH 0) when ``../shared/data``
has it, and a synthetic furnished room of about a million gaussians
(``make_synthetic_room``, SH degree 3 by default: 248 bytes a gaussian, as
trainers write them).

Each case runs in a fresh Blender (bpy) process with the extension
registered, page cache warm, and reports:

* ``soundstage.import_splats``, step by step as the operator runs them:
  the engine read (higher SH bands skipped, conversions), the object (mesh
  + 6 attributes set with ``foreach_set``, display modifier), their sum
  (``import``), then the first evaluation of the
  viewport display (Geometry Nodes: ``Auto`` keeps at most 500,000 points,
  ``All Points`` every one), peak resident memory;
* the same with the read in a worker process (real Blender's case: its
  Python has no SciPy, so the engine runs in its own environment and
  hands the arrays back through an ``.npz``);
* ``wm.ply_import``: Blender's own C++ PLY importer on the same file (raw
  properties as attributes, no conversions): the reference for "as fast as
  Blender itself";
* for the million: the first ray cast on the splats (builds the cached
  index), a second one (cached), and the room fit (``soundstage.splat_room``).

Run: ``.venv/bin/python benchmarks/bench_blender_splat_import.py [--count 1000000] [--sh-degree 3]
[--python .venv-lts/bin/python]``. Prints a table and writes
benchmarks/results/blender_splat_import_<bpy version>.json. Figures, not assertions.
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

ROOT = Path(__file__).resolve().parents[1]
DONUT = ROOT.parent / "shared" / "data" / "splats" / "donut_sh0.ply"

CHILD = r"""
import importlib.util, json, sys, time
root, path, how = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, root)

def status_kb(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])

spec = importlib.util.spec_from_file_location("ss_render", root + "/headless/render.py")
render = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render)
ext = render.load_extension()
ext.register()
import bpy
import numpy as np
bpy.ops.wm.read_homefile(app_template="")
for o in list(bpy.data.objects):
    bpy.data.objects.remove(o)
import soundstage.splats  # engine imports are not part of the import time (Blender loads the add-on once)
before = status_kb("VmRSS")
out = {}
t0 = time.perf_counter()
if how == "blender":
    if hasattr(bpy.ops.wm, "ply_import"):
        bpy.ops.wm.ply_import(filepath=path)
    else:
        bpy.ops.import_mesh.ply(filepath=path)
    out["import_s"] = time.perf_counter() - t0
    obj = bpy.context.selected_objects[0]
else:
    # The steps of soundstage.import_splats, timed one by one.
    sb = sys.modules[ext.__name__ + ".bridge.splats"]
    # "worker": the read runs in the engine's environment, as in real Blender (no SciPy there).
    r = sb.call_engine("read", path=path, mode="worker" if how == "worker" else "auto")
    out["read_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    obj = sb.create_splat_object(r, "splats", bpy.context.scene.collection, source=path,
                                 display="POINTS" if how == "points" else "AUTO")
    out["object_s"] = time.perf_counter() - t1
    out["import_s"] = time.perf_counter() - t0
    del r
    t1 = time.perf_counter()
    dg = bpy.context.evaluated_depsgraph_get()
    dg.update()
    shown = sum(len(i.object.data.points) for i in dg.object_instances
                if i.object.type == "POINTCLOUD" and i.object.original == obj)
    out["display_s"] = time.perf_counter() - t1
    out["shown"] = shown
out["n"] = len(obj.data.vertices)
out["peak_extra_mb"] = (status_kb("VmHWM") - before) / 1024
if how == "auto" and len(sys.argv) > 4:
    sb = sys.modules[ext.__name__ + ".bridge.splats"]
    o, d = np.array([0.0, 0.3, 1.5]), np.array([1.0, 0.1, 0.05])
    bpy.context.view_layer.objects.active = obj
    t1 = time.perf_counter(); h = sb.raycast_splats(obj, o, d); out["first_cast_s"] = time.perf_counter() - t1
    t1 = time.perf_counter(); sb.raycast_splats(obj, o, d); out["cached_cast_s"] = time.perf_counter() - t1
    out["cast_hit_m"] = None if h is None else float(h["distance"])
    t1 = time.perf_counter(); bpy.ops.soundstage.splat_room(); out["room_s"] = time.perf_counter() - t1
    out["room_size"] = json.loads(bpy.context.active_object["soundstage_room"])["size"]
print("RESULT " + json.dumps(out))
ext.unregister()  # the 4.x module hangs at exit with Python property groups registered
"""


def run_child(python: str, path: Path, how: str, extra: bool = False) -> dict:
    args = [python, "-c", CHILD, str(ROOT), str(path), how] + (["extra"] if extra else [])
    proc = subprocess.run(args, capture_output=True, text=True, cwd=str(ROOT))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{how} on {path.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def bpy_version(python: str) -> str:
    code = "import bpy; print(bpy.app.version_string)"
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000, help="about this many gaussians in the synthetic room")
    ap.add_argument("--sh-degree", type=int, default=3)
    ap.add_argument("--python", default=sys.executable, help="interpreter with the bpy module")
    ap.add_argument("--repeat", type=int, default=2, help="runs per case; the best is reported")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from soundstage.splats import make_synthetic_room, write_ply

    version = bpy_version(args.python)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_blender_splats_") as tmp:
        t0 = time.perf_counter()
        # Density per square metre of surface for about --count gaussians (126 m^2 of walls,
        # floor and ceiling, about 20 m^2 of furniture, 5 % outliers), measured.
        density = args.count / 152.0
        room = make_synthetic_room(density=density, sh_degree=args.sh_degree, seed=0)
        big = Path(tmp) / f"room_{len(room.splats)}_sh{args.sh_degree}.ply"
        write_ply(big, room.splats)
        del room
        print(f"bpy {version}; wrote {big.name} ({big.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t0:.1f} s")
        files = ([DONUT] if DONUT.is_file() else []) + [big]
        for path in files:
            for how in ("auto", "points", "worker", "blender"):
                extra = path == big and how == "auto"
                runs = [run_child(args.python, path, how, extra) for _ in range(args.repeat)]
                best = min(runs, key=lambda r: r["import_s"])
                rows.append({"file": path.name, "how": how, "file_mb": path.stat().st_size / 1e6, **best})
    names = {"auto": "soundstage (Auto display)", "points": "soundstage (All Points)",
             "worker": "soundstage (worker read)",
             "blender": "Blender wm.ply_import"}
    print(f"\n{'file':<26}{'importer':<28}{'splats':>10}{'read s':>8}{'object s':>10}{'import s':>10}"
          f"{'display s':>11}{'shown':>10}{'peak MB':>9}")
    for r in rows:
        def f(key, fmt="{:.2f}"):
            return fmt.format(r[key]) if key in r else "-"
        print(f"{r['file']:<26}{names[r['how']]:<28}{r['n']:>10,}{f('read_s'):>8}{f('object_s'):>10}"
              f"{r['import_s']:>10.2f}{f('display_s'):>11}{f('shown', '{:,}'):>10}{r['peak_extra_mb']:>9.0f}")
    for f in dict.fromkeys(r["file"] for r in rows):
        ours = next(r for r in rows if r["file"] == f and r["how"] == "auto")
        ref = next(r for r in rows if r["file"] == f and r["how"] == "blender")
        print(f"{f}: Soundstage import / Blender's PLY import = {ours['import_s'] / ref['import_s']:.2f} "
              "(Soundstage also converts log-scales, logits, quaternions and colours)")
    x = next(r for r in rows if "first_cast_s" in r)
    print(f"million: first ray cast {x['first_cast_s']:.2f} s (builds the index), cached "
          f"{x['cached_cast_s'] * 1000:.0f} ms (reads and hashes the splats), hit at {x['cast_hit_m']:.2f} m; room fit "
          f"{x['room_s']:.2f} s, size {[round(v, 3) for v in x['room_size']]} (truth 6 x 5 x 3)")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"bpy": version, "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "sh_degree": args.sh_degree}
    tag = ".".join(version.split()[0].split(".")[:2])
    (out / f"blender_splat_import_{tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
