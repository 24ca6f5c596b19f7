"""``soundstage footage ...``: tracked footage and stills to sources, and the DOA judge.

The main command line registers this group with ``add_parser(subparsers)``; each
sub-command sets ``func(args) -> int``. Errors the user can fix are
``SoundstageError`` (one line, exit 2, printed by the main command line); outputs are
written atomically (``soundstage.audio_io.write_json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from soundstage.errors import SoundstageError


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``footage`` command group on an ``argparse`` sub-parser set."""
    p = subparsers.add_parser("footage", help="tracked footage and stills to sound sources; DOA judge",
                              description="Turn what a camera saw into sound sources (docs/footage.md).")
    sub = p.add_subparsers(dest="footage_command", metavar="COMMAND")
    sub.required = True

    tr = sub.add_parser("track", help="2-D marker track + camera + depth -> cleaned 3-D path (JSON)")
    tr.add_argument("csv", help="track CSV with columns frame,x,y (optional name, depth); pixels, y down")
    tr.add_argument("--camera", required=True, help="camera path JSON (frames, matrix_world, lens_mm, ...)")
    g = tr.add_mutually_exclusive_group()
    g.add_argument("--depth", help="folder or glob of per-frame depth maps (.npy .npz .pfm)")
    g.add_argument("--depth-values", help="CSV frame,depth or JSON {frames, depth}: one depth per frame")
    tr.add_argument("--depth-kind", choices=["z", "range"], default="z",
                    help="z: along the camera axis (Blender's Z pass); range: along the ray (default z)")
    tr.add_argument("--depth-scale", type=float, default=1.0, help="multiply stored depths (0.001 for mm)")
    tr.add_argument("--depth-offset", type=float, default=0.0,
                    help="metres pushed along the ray behind the visible surface (object radius)")
    tr.add_argument("--patch", type=int, default=5, help="depth patch side in pixels (default 5)")
    tr.add_argument("--marker", help="marker name when the CSV holds several")
    tr.add_argument("--eps", type=float, help="DBSCAN radius in metres (default: from the data)")
    tr.add_argument("--min-samples", type=int, help="DBSCAN core size (default 5)")
    tr.add_argument("--smooth", type=int, default=0, help="Savitzky-Golay window in frames (odd; 0 = off)")
    tr.add_argument("--out", help="write the path JSON here (default: print a summary only)")
    tr.set_defaults(func=cmd_track)

    im = sub.add_parser("image", help="regions of a still + depth map -> one source per region (JSON)")
    im.add_argument("depth", help="depth map of the still (.npy .npz .pfm), camera resolution")
    im.add_argument("--camera", required=True, help="camera path JSON")
    im.add_argument("--frame", type=int, help="camera frame of the still (default: the first)")
    im.add_argument("--regions", required=True,
                    help="JSON {name: [x0,y0,x1,y1], ...} boxes, or a label image (.npy, int, 0 = background)")
    im.add_argument("--depth-kind", choices=["z", "range"], default="z")
    im.add_argument("--depth-scale", type=float, default=1.0)
    im.add_argument("--library", help="sound library folder matched to the region names")
    im.add_argument("--out", help="write the sources JSON here")
    im.set_defaults(func=cmd_image)

    d = sub.add_parser("doa", help="judge a baked binaural track by an interaural model against its job")
    d.add_argument("wav", help="binaural WAV (left, right)")
    d.add_argument("--job", required=True, help="the job that was baked (ground-truth poses)")
    d.add_argument("--source", help="source name (required when the job has several)")
    d.add_argument("--front", action="store_true", help="the source is in front (in the picture): fold estimates")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(func=cmd_doa)

    demo = sub.add_parser("demo", help="write the synthetic shot's inputs (track CSV, camera, depth maps) to a folder")
    demo.add_argument("folder", help="output folder (created)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)
    return p


def _errors(true: np.ndarray, positions: np.ndarray) -> dict:
    e = np.linalg.norm(positions - true, axis=1)
    return {"median_m": float(np.nanmedian(e)), "mean_m": float(np.nanmean(e)), "max_m": float(np.nanmax(e))}


def track_to_path(track, camera, depth, *, kind="z", patch=5, depth_offset=0.0, eps=None, min_samples=None,
                  smooth=0) -> dict:
    """Lift and clean one track; the JSON document ``footage track`` writes."""
    from soundstage.footage.clean import clean_path
    from soundstage.footage.lift import lift_track

    lifted = lift_track(camera, track, depth, patch=patch, kind=kind, depth_offset=depth_offset)
    cleaned = clean_path(lifted.frames, lifted.positions, eps=eps, min_samples=min_samples, smooth=smooth)
    raw = lifted.positions
    lookup = {int(f): p for f, p in zip(lifted.frames, raw) if np.isfinite(p).all()}
    resid = [np.linalg.norm(lookup[int(f)] - p) for f, p, k in zip(cleaned.frames, cleaned.positions, cleaned.inlier)
             if k and int(f) in lookup]
    return {
        "version": 1, "name": track.name, "camera": camera.name, "depth_kind": kind,
        "frames": cleaned.frames.tolist(), "positions": np.round(cleaned.positions, 6).tolist(),
        "inliers": cleaned.inlier.tolist(), "filled": cleaned.filled.tolist(),
        "raw_positions": [None if not np.isfinite(p).all() else np.round(p, 6).tolist() for p in raw],
        "raw_frames": lifted.frames.tolist(),
        "dropped": lifted.summary()["dropped"], "messages": lifted.messages,
        "outlier_frames": cleaned.outlier_frames, "gap_frames": cleaned.gap_frames,
        "stats": {**cleaned.summary(), "lifted": int(lifted.valid.sum()),
                  "inlier_residual_median_m": float(np.median(resid)) if resid else 0.0},
    }


def cmd_track(args) -> int:
    from soundstage.audio_io import write_json
    from soundstage.footage.camera import read_camera
    from soundstage.footage.depth import DepthSequence, DepthValues
    from soundstage.footage.track import read_track_csv

    camera = read_camera(args.camera)
    track = read_track_csv(args.csv, name=args.marker)
    if isinstance(track, list):
        raise SoundstageError(f"{args.csv} holds {len(track)} markers ({', '.join(t.name for t in track)}); "
                              "choose one with --marker")
    if args.depth:
        depth = DepthSequence.from_path(args.depth, scale=args.depth_scale)
    elif args.depth_values:
        depth = DepthValues.from_file(args.depth_values)
    else:
        depth = None  # the CSV's own depth column
    doc = track_to_path(track, camera, depth, kind=args.depth_kind, patch=args.patch,
                        depth_offset=args.depth_offset, eps=args.eps, min_samples=args.min_samples,
                        smooth=args.smooth)
    if args.out:
        write_json(args.out, doc)
    s = doc["stats"]
    print(f"{args.out or track.name}: {s['frames']} frames, {s['lifted']} lifted, {s['outliers']} outliers removed, "
          f"{s['filled']} filled")
    for reason, info in doc["dropped"].items():
        frames = info["frames"]
        shown = ", ".join(str(f) for f in frames[:10]) + (" ..." if len(frames) > 10 else "")
        print(f"  dropped ({reason}): {info['count']} frame(s): {shown}")
    return 0


def cmd_image(args) -> int:
    from soundstage.audio_io import write_json
    from soundstage.footage.camera import read_camera
    from soundstage.footage.depth import read_depth_map
    from soundstage.footage.library import match_library
    from soundstage.footage.regions import sources_from_image

    camera = read_camera(args.camera)
    depth = read_depth_map(args.depth) * args.depth_scale
    rp = Path(args.regions)
    if not rp.is_file():
        raise SoundstageError(f"regions file not found: {rp}")
    if rp.suffix.lower() == ".json":
        try:
            regions = json.loads(rp.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SoundstageError(f"{rp}: not valid JSON ({e})") from None
        if not isinstance(regions, dict) or not regions:
            raise SoundstageError(f"{rp}: expected an object {{\"name\": [x0, y0, x1, y1], ...}}")
    else:
        regions = read_depth_map(rp).astype(np.int64) if rp.suffix.lower() != ".npy" else np.load(rp)
        if not np.issubdtype(np.asarray(regions).dtype, np.integer):
            raise SoundstageError(f"{rp}: a label image holds integers (0 = background)")
    frame = int(camera.frames[0]) if args.frame is None else args.frame
    sources = sources_from_image(camera, frame, depth, regions, kind=args.depth_kind)
    audio = {}
    unmatched = []
    if args.library:
        m = match_library([s["name"] for s in sources], args.library)
        audio, unmatched = {k: str(v) for k, v in m.items()}, m.unmatched
    out = {"version": 1, "camera": camera.name, "frame": frame, "sources": [
        {**s, "audio": audio.get(s["name"])} for s in sources], "unmatched_audio": unmatched}
    if args.out:
        write_json(args.out, out)
    for s in sources:
        where = "no depth in region" if s["position"] is None else np.round(s["position"], 3).tolist()
        print(f"{s['name']}: {where} ({s['n_pixels']} px)" + (f" <- {audio[s['name']]}" if s["name"] in audio else ""))
    if unmatched:
        print(f"  no library sound for: {', '.join(unmatched)}")
    return 0


def cmd_doa(args) -> int:
    from soundstage.footage.doa import evaluate_job_doa

    kw = {}
    res = evaluate_job_doa(args.wav, args.job, args.source, **kw)
    if args.front:
        from soundstage.footage.doa import angle_diff, fold

        res["median_error_front_prior_deg"] = float(np.nanmedian(angle_diff(fold(res["estimate_deg"]),
                                                                              res["truth_deg"])))
    if args.json:
        print(json.dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in res.items()},
                         allow_nan=True))
        return 0
    print(f"{args.wav}: source '{res['source']}', {res['windows']} windows: median azimuth error "
          f"{res['median_error_deg']:.1f} deg (front/back folded), unfolded {res['median_error_unfolded_deg']:.1f} deg, "
          f"front/back confusion {res['front_back_confusion']:.0%}")
    if args.front:
        print(f"  with the source-in-front prior: median error {res['median_error_front_prior_deg']:.1f} deg")
    return 0


def cmd_demo(args) -> int:
    from soundstage.audio_io import write_json
    from soundstage.footage.synthetic import synthetic_shot

    folder = Path(args.folder)
    (folder / "depth").mkdir(parents=True, exist_ok=True)
    shot = synthetic_shot(args.seed)
    write_json(folder / "camera.json", shot.camera.to_json())
    lines = ["frame,x,y"] + [f"{f},{u:.3f},{v:.3f}" for f, (u, v) in zip(shot.track.frames, shot.track.uv)]
    (folder / "track.csv").write_text("\n".join(lines) + "\n")
    for f in shot.camera.frames:
        np.save(folder / "depth" / f"depth_{f:04d}.npy", shot.depth.map(int(f)).astype(np.float32))
    write_json(folder / "truth.json", {"frames": shot.camera.frames.tolist(), "positions": shot.true_path.tolist(),
                                        "radius_m": shot.radius})
    print(f"{folder}: camera.json, track.csv ({len(shot.track)} frames), depth/ ({len(shot.camera.frames)} Z-pass "
          f"maps), truth.json; try: soundstage footage track {folder}/track.csv --camera {folder}/camera.json "
          f"--depth {folder}/depth --depth-offset {shot.radius} --out path.json")
    return 0


def main(argv=None) -> int:
    """Run the group standalone: ``python -m soundstage.footage.cli track ...``."""
    import sys

    parser = argparse.ArgumentParser(prog="soundstage")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["footage", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except SoundstageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
