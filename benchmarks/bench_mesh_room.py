"""Benchmark of the mesh room: image sources and ray tracing in a furnished room.

A 6 x 5 x 3 m room with 16 boxes of furniture (about 200 triangles), a
listener walking across it for 900 frames (37.5 s at 24 fps) and a fixed
source. Prints timings and, for a few frames, the ratio of the fast image
search to the slow reference (they must agree exactly).

Run: ``.venv/bin/python benchmarks/bench_mesh_room.py [--frames 900] [--orders 2,3]``.
Also writes benchmarks/results/mesh_room.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from soundstage.rooms.mesh import MeshRoom, box_mesh, early_images_reference


def furnished_room():
    """Vertices, faces and per-face absorption (F, 7) of a furnished 6 x 5 x 3 m room (204 triangles)."""
    boxes = [([0, 0, 0], [6, 5, 3], 0.10)]  # the room shell
    # Table: top and four legs.
    boxes += [([2.0, 1.5, 0.72], [3.6, 2.5, 0.76], 0.05)]
    boxes += [([x, y, 0.0], [x + 0.06, y + 0.06, 0.72], 0.05) for x in (2.02, 3.52) for y in (1.52, 2.42)]
    # Sofa: seat, back, two arms.
    boxes += [
        ([0.3, 3.8, 0.0], [2.5, 4.7, 0.45], 0.5),
        ([0.3, 4.5, 0.45], [2.5, 4.7, 0.9], 0.5),
        ([0.3, 3.8, 0.45], [0.5, 4.7, 0.65], 0.5),
        ([2.3, 3.8, 0.45], [2.5, 4.7, 0.65], 0.5),
    ]
    # Bookshelf, cabinet, bed with headboard, lamp (base and shade), TV unit and rug.
    boxes += [
        ([5.6, 0.5, 0.0], [5.95, 2.3, 2.1], 0.3),
        ([4.6, 0.05, 0.0], [5.5, 0.5, 0.9], 0.08),
        ([4.0, 3.0, 0.0], [5.9, 4.9, 0.5], 0.6),
        ([5.8, 3.0, 0.5], [5.9, 4.9, 1.2], 0.2),
        ([0.4, 0.4, 0.0], [0.6, 0.6, 1.5], 0.05),
        ([0.3, 0.3, 1.5], [0.7, 0.7, 1.8], 0.4),
        ([0.05, 1.5, 0.0], [0.5, 3.0, 0.5], 0.1),
    ]
    verts, faces, absorption = [], [], []
    for lo, hi, a in boxes:
        v, f = box_mesh(lo, hi)
        faces.append(f + sum(len(x) for x in verts))
        verts.append(v)
        absorption.append(np.tile(np.linspace(a, min(1.0, 2 * a), 7), (len(f), 1)))
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(absorption)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=900)
    ap.add_argument("--orders", default="2,3", help="comma-separated image-source orders to time")
    ap.add_argument("--rays", type=int, default=4000)
    args = ap.parse_args()

    v, f, a = furnished_room()
    t0 = time.perf_counter()
    room = MeshRoom(v, f, a, np.full_like(a, 0.1), name="bench")
    t_build = time.perf_counter() - t0
    n = args.frames
    s = np.tile([[1.2, 2.0, 1.5]], (n, 1))
    lis = np.column_stack([np.linspace(1.0, 5.0, n), np.linspace(0.8, 2.8, n), np.full(n, 1.6)])
    print(f"mesh: {len(room.faces)} triangles, {len(room.plane_offset)} planes, built in {t_build:.3f} s")
    results = {"cpus": os.cpu_count(), "triangles": len(room.faces), "planes": len(room.plane_offset),
               "build_s": t_build, "frames": n, "images": {}}

    for order in (int(k) for k in args.orders.split(",")):
        t0 = time.perf_counter()
        im = room.early_images(s, lis, order)
        t_img = time.perf_counter() - t0
        print(
            f"early_images: {n} frames, order {order}: {t_img:.2f} s "
            f"({im.n_images} slots, {im.valid.sum(axis=1).mean():.1f} visible per frame)"
        )
        frames = np.linspace(0, n - 1, 3 if order < 3 else 1).astype(int)  # the reference is slow at order 3
        t0 = time.perf_counter()
        refs = [early_images_reference(room, s[k], lis[k], order) for k in frames]
        t_ref = (time.perf_counter() - t0) / len(frames)
        agree = all(len(r) == int(im.valid[k].sum()) for r, k in zip(refs, frames))
        print(f"  slow reference: {t_ref:.2f} s per frame vs {t_img / n * 1e3:.2f} ms per frame "
              f"(x{t_ref / (t_img / n):.0f}); image counts agree: {agree}")
        results["images"][order] = {"seconds": t_img, "slots": im.n_images, "reference_s_per_frame": t_ref,
                                    "agree": agree}

    t0 = time.perf_counter()
    hist = room.energy_histogram(
        s[0], lis[0], air=np.zeros(7), speed_of_sound=343.0, bin_width=1e-3, t_max=1.5,
        rng=np.random.default_rng(0), n_rays=args.rays,
    )
    t_rt = time.perf_counter() - t0
    print(f"energy_histogram: {args.rays} rays, 1.5 s: {t_rt:.2f} s (total energy {hist[3].sum():.3f})")
    results["energy_histogram"] = {"rays": args.rays, "t_max": 1.5, "seconds": t_rt}
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "mesh_room.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
