"""``soundstage splats ...``: inspect splat files, fit a room, convert camera paths.

The main command line registers this group with ``add_parser(subparsers)``;
each sub-command sets ``func(args) -> int``. Run standalone with
``python -m soundstage.splats.cli``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from soundstage.errors import SoundstageError


def _vector(text: str):
    try:
        v = [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0,0,1, got {text!r}") from None
    if len(v) != 3 or not np.any(v):
        raise argparse.ArgumentTypeError(f"expected three numbers (not all zero) like 0,0,1, got {text!r}")
    return v


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``splats`` command group on an ``argparse`` sub-parser set."""
    p = subparsers.add_parser("splats", help="Gaussian splat scenes: inspect a file, fit a room, read camera paths",
                              description="Gaussian splat scenes (.ply in the Inria layout, .splat).")
    sub = p.add_subparsers(dest="splats_command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser("info", help="count, SH degree, bounds and properties of a splat file")
    info.add_argument("file", help=".ply or .splat file")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=cmd_info)

    room = sub.add_parser("room", help="fit an acoustic room (floor, ceiling, walls) to a splat scene")
    room.add_argument("file", help=".ply or .splat file")
    room.add_argument("--out", required=True, help="write the job's room object here (JSON)")
    room.add_argument("--up", type=_vector, default=[0.0, 0.0, 1.0],
                      help="up direction of the scene (default 0,0,1; COLMAP frames are often 0,-1,0)")
    room.add_argument("--kind", choices=["auto", "shoebox", "mesh"], default="auto",
                      help="shoebox when world-aligned (auto), or force one")
    room.add_argument("--min-opacity", type=float, default=0.5, help="ignore fainter gaussians (default 0.5)")
    room.add_argument("--threshold", type=float, default=None,
                      help="plane inlier distance in scene units (default 0.5%% of the scene size)")
    room.add_argument("--details", default=None, help="also write the fitted planes and reasons here (JSON)")
    room.set_defaults(func=cmd_room)

    cams = sub.add_parser("cameras", help="COLMAP model or transforms.json to Blender camera matrices")
    cams.add_argument("path", help="COLMAP folder / images.txt / images.bin, or a .json camera file")
    cams.add_argument("--out", required=True, help="JSON with names, times and row-major 4x4 matrices")
    cams.add_argument("--undo-applied-transform", action="store_true",
                      help="map nerfstudio poses back to the COLMAP world")
    cams.set_defaults(func=cmd_cameras)
    return p


def _write_json(path, obj) -> None:
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise SoundstageError(f"{path}: the folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def splat_summary(path) -> dict:
    """What ``splats info`` shows, as a dict."""
    from soundstage.splats import read_splats

    splats = read_splats(path)
    lo, hi = splats.bounds()
    op = splats.opacities
    return {
        "file": str(path), "bytes": Path(path).stat().st_size, "gaussians": len(splats),
        "sh_degree": splats.sh_degree, "bounds_min": lo.tolist(), "bounds_max": hi.tolist(),
        "size": (hi - lo).tolist(),
        "opacity": {"median": float(np.median(op)), "fraction_above_0.5": float(np.mean(op >= 0.5))},
        "scale_median": float(np.median(splats.scales.max(axis=1))),
        "extra_properties": sorted(splats.extra),
    }


def cmd_info(args) -> int:
    info = splat_summary(args.file)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['file']}: {info['gaussians']:,} gaussians, SH degree {info['sh_degree']}, "
          f"{info['bytes'] / 1e6:.1f} MB")
    print("  bounds  " + " .. ".join(str(np.round(v, 3).tolist()) for v in (info["bounds_min"], info["bounds_max"])))
    print(f"  opacity median {info['opacity']['median']:.3f}, "
          f"{info['opacity']['fraction_above_0.5']:.0%} at 0.5 or more")
    print(f"  largest-axis scale median {info['scale_median']:.4g}")
    if info["extra_properties"]:
        print("  extra properties: " + ", ".join(info["extra_properties"]))
    return 0


def cmd_room(args) -> int:
    from soundstage.splats import read_splats
    from soundstage.splats.proxy import estimate_room

    splats = read_splats(args.file, max_sh_degree=0)
    proxy = estimate_room(splats, up=args.up, min_opacity=args.min_opacity, threshold=args.threshold)
    room = proxy.to_room(args.kind)
    _write_json(args.out, room)
    if args.details:
        details = proxy.to_dict()
        details["room"] = room
        _write_json(args.details, details)
    size = np.round(proxy.size, 3).tolist()
    print(f"{args.out}: {room['type']} room {size[0]} x {size[1]} x {size[2]} "
          f"(yaw {proxy.yaw_deg:.1f} deg), floor {proxy.materials['floor']}, "
          f"ceiling {proxy.materials['ceiling']}, walls {proxy.materials['walls']}")
    for note in proxy.notes:
        print(f"  note: {note}")
    return 0


def cmd_cameras(args) -> int:
    from soundstage.splats.cameras import read_camera_path, read_transforms_json

    if args.undo_applied_transform:
        path = read_transforms_json(args.path, undo_applied_transform=True)
    else:
        path = read_camera_path(args.path)
    out = {"source": path.source, "convention": "camera-to-world, Blender camera (looks along -Z, up +Y)",
           "names": path.names, "times": None if path.times is None else path.times.tolist(),
           "matrices": path.as_job_matrices()}
    lens = path.lens_mm()
    if lens is not None:
        out["lens_mm_36mm_sensor"] = lens.tolist()
    _write_json(args.out, out)
    print(f"{args.out}: {len(path)} camera poses from {path.source}")
    return 0


def main(argv=None) -> int:
    """Standalone entry: ``python -m soundstage.splats.cli splats info FILE``."""
    parser = argparse.ArgumentParser(prog="soundstage")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    subs.required = True
    add_parser(subs)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SoundstageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
