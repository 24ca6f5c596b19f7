"""Learned acoustic fields: accuracy against the baselines and the paper, training time, inference speed.

Runs issue 5's "what it must show" end to end on engine-simulated data and prints
one table (and writes JSON):

* A-NeRF (small preset) on the held-out last 20 % of a 120 s synthetic recording walk:
  MAG and ENV against Mono-Mono, Mono-Energy and Stereo-Energy (AV-NeRF, Table 1: 1.504
  against 2.847 MAG); ablations without the direction input, without scene features
  and without the convolution refinement; scene features once more on a walk whose
  last lap runs outside the earlier ones (extrapolation);
* the impulse-response field (small preset) on 50 held-out positions of a 250-pose
  set: T60, C50 and EDT errors (AV-NeRF's SoundSpaces row: 2.47 %, 0.57 dB, 0.016 s);
  ablations without the direction input, without scene features (no room: the early
  render is the direct sound alone) and without the early render (learned instead);
* training time of both small presets on this machine's CPU (and on CUDA when
  present); inference in poses per second (masks, impulse-response spectrograms,
  impulse-response waveforms) and the real-time factor of a field bake.

Usage::

    .venv/bin/python benchmarks/bench_field.py [--quick] [--work DIR] [--out FILE]

``--quick`` is a smoke run (shorter walk, fewer steps and responses); its figures
mean nothing. Not a test: it takes 10-20 minutes on a shared 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from soundstage.field import data as D  # noqa: E402
from soundstage.field.checkpoint import load_fields  # noqa: E402
from soundstage.field.evaluate import evaluate, predict_irs  # noqa: E402
from soundstage.field.irfield import pose_prior  # noqa: E402
from soundstage.field.render import render_field_job  # noqa: E402
from soundstage.field.train import TrainOptions, train_fields  # noqa: E402

TARGETS = {"mag_vs_mono_energy": 0.6, "t60_pct": 2.5, "c50_db": 0.6, "edt_s": 0.016, "poses_per_s": 1000}


def log(msg):
    print(msg, flush=True)


def train_and_eval(data, out, opts):
    t0 = time.perf_counter()
    res = train_fields(data, out, opts)
    train_s = time.perf_counter() - t0
    ev = evaluate(out, data)
    return {"train_s": round(train_s, 1), "steps": res.info[0]["steps"], "eval": ev}


def anerf_section(work, quick, device):
    secs = 40.0 if quick else 120.0
    steps = {"steps": 60} if quick else {}
    walk = work / "walk"
    if not (walk / "capture.json").exists():
        t0 = time.perf_counter()
        D.synthetic_walk(walk, seconds=secs, seed=0)
        log(f"simulated a {secs:.0f} s walk in {time.perf_counter() - t0:.1f} s")
    out = {}
    for name, kw in (("field", {}), ("no_direction", {"use_direction": False}), ("no_scene", {"scene": "off"}),
                     ("no_conv", {"conv": False})):
        r = train_and_eval(walk, work / f"anerf_{name}.pt", TrainOptions(device=device, **steps, **kw))
        out[name] = r
        f = r["eval"]["field"]
        log(f"A-NeRF {name:13s}: trained {r['steps']} steps in {r['train_s']:.1f} s; held-out MAG {f['mag']:.4f} "
            f"ENV {f['env']:.4f}")
    ev = out["field"]["eval"]
    for b in ("mono_mono", "mono_energy", "stereo_energy"):
        log(f"  baseline {b:14s}: MAG {ev[b]['mag']:.4f} ENV {ev[b]['env']:.4f}   (aligned source: MAG "
            f"{ev['aligned'][b]['mag']:.4f} ENV {ev['aligned'][b]['env']:.4f})")
    spiral = work / "walk_spiral"
    if not (spiral / "capture.json").exists():
        D.synthetic_walk(spiral, seconds=secs, seed=0, growth=0.6)
    for name, kw in (("spiral_scene", {}), ("spiral_no_scene", {"scene": "off"})):
        r = train_and_eval(spiral, work / f"anerf_{name}.pt", TrainOptions(device=device, **steps, **kw))
        out[name] = r
        log(f"A-NeRF {name:15s}: held-out MAG {r['eval']['field']['mag']:.4f} ENV {r['eval']['field']['env']:.4f}"
            f" ({r['eval']['warning'] or 'inside the trained area'})")
    return out


def ir_section(work, quick, device):
    n_tr, n_va = (40, 10) if quick else (200, 50)
    steps = {"steps": 100} if quick else {}
    irs = work / "irs"
    if not (irs / "irs.json").exists():
        t0 = time.perf_counter()
        D.synthetic_irs(irs, n_train=n_tr, n_val=n_va, seed=0)
        log(f"simulated {n_tr + n_va} impulse responses in {time.perf_counter() - t0:.1f} s")
    out = {}
    for name, kw in (("field", {}), ("no_direction", {"use_direction": False}), ("no_scene", {"scene": "off"}),
                     ("no_early_render", {"early_render": False})):
        r = train_and_eval(irs, work / f"ir_{name}.pt", TrainOptions(device=device, **steps, **kw))
        out[name] = r
        e = r["eval"]
        log(f"IR field {name:13s}: trained {r['steps']} steps in {r['train_s']:.1f} s; held-out T60 "
            f"{e['t60_pct']:.2f} %  C50 {e['c50_db']:.3f} dB  EDT {e['edt_s']:.4f} s "
            f"(-10 dB crossing: {e['edt_crossing_s']:.4f} s)")
    return out


def best_rate(fn, n, repeats=5):
    fn()  # warm-up
    best = min(_timed(fn) for _ in range(repeats))
    return n / best


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@torch.no_grad()
def speed_section(work, device):
    out = {}
    f = load_fields(work / "anerf_field.pt", device)[0]
    n = 4096
    rng = np.random.default_rng(0)
    pos = torch.as_tensor(rng.uniform(-1, 1, (n, 3)), dtype=torch.float32, device=device)
    az = torch.as_tensor(rng.uniform(-np.pi, np.pi, n), dtype=torch.float32, device=device)
    sc = torch.as_tensor(rng.standard_normal((n, f.config.scene_dim)), dtype=torch.float32, device=device) \
        if f.config.scene_dim else None
    out["anerf_masks_poses_per_s"] = best_rate(lambda: f.model.masks(pos, az, sc), n)
    real = rng.uniform([0.5, 0.5, 1.2], [5.5, 4.5, 1.8], (n, 3))

    def masks_from_scratch():
        s = f.scene_features(real)
        return f.model.masks(pos, az, None if s is None else torch.as_tensor(s, dtype=torch.float32, device=device))

    out["anerf_masks_with_features_poses_per_s"] = best_rate(masks_from_scratch, n, repeats=3)
    g = load_fields(work / "ir_field.pt", device)[0]
    m = 1024
    p3 = torch.as_tensor(rng.uniform(-1, 1, (m, 3)), dtype=torch.float32, device=device)
    a3 = az[:m]
    d3 = torch.as_tensor(rng.uniform(0.5, 5, m), dtype=torch.float32, device=device)
    s3 = torch.as_tensor(rng.standard_normal((m, g.config.scene_dim)), dtype=torch.float32, device=device) \
        if g.config.scene_dim else None
    e3 = torch.as_tensor(rng.uniform(-0.5, 0.5, m), dtype=torch.float32, device=device)
    # The prior (the engine's early response, or the room's reflection prior) is an
    # input like the scene features, computed at real poses.
    rp, rf = D.listener_axes(D.random_poses(m, D.DEFAULT_ROOM, D.DEFAULT_SOURCE, rng))

    def prior_at(p, fr):
        x = pose_prior(g.room, g.source_position, p, fr, g.config)
        return None if x is None else torch.as_tensor(x, device=device)

    pr = prior_at(rp, rf)
    # In chunks of the batch predict_irs uses: one call over all 1024 poses is bound by
    # memory traffic (its (1024, 2, T, F) intermediates), not arithmetic, and is ~2x slower.
    b = 64

    def chunks(sc, prr):
        for i in range(0, m, b):
            g.model(p3[i:i + b], a3[i:i + b], e3[i:i + b], d3[i:i + b], None if sc is None else sc[i:i + b],
                    None if prr is None else prr[i:i + b])

    out["ir_spectrogram_poses_per_s"] = best_rate(lambda: chunks(s3, pr), m)
    # The same, with the scene features and the prior computed for the poses (what a query costs from scratch).
    def from_scratch():
        sc = g.scene_features(rp)
        sc = None if sc is None else torch.as_tensor(sc, device=device)
        chunks(sc, prior_at(rp, rf))

    out["ir_spectrogram_with_features_poses_per_s"] = best_rate(from_scratch, m, repeats=3)
    mats = D.random_poses(256, D.DEFAULT_ROOM, D.DEFAULT_SOURCE, rng)
    pp, rr = D.listener_axes(mats)
    for gl in (0, 8):
        out[f"ir_waveform_gl{gl}_poses_per_s"] = best_rate(
            lambda gl=gl: predict_irs(g, pp, rr, griffin_lim=gl, device=device), 256, repeats=3)
    # A field bake of 30 s of a walking listener.
    seconds, fps = 30.0, 24
    t, mats = D.walk_path(seconds, fps, D.DEFAULT_ROOM, 11)
    job = {"version": 1, "sample_rate": 48000, "fps": fps, "frame_start": 1, "frame_end": len(mats) - 1,
           "listener": {"name": "Cam", "matrix_world": [x.reshape(-1).tolist() for x in mats[:-1]]},
           "sources": [{"name": "S", "audio": str(work / "walk" / "source.wav"), "position": D.DEFAULT_SOURCE}],
           "output": {"format": "binaural", "path": str(work / "bake.wav")}}
    for kind in ("anerf", "ir"):
        t0 = time.perf_counter()
        res = render_field_job(work / f"{kind}_field.pt", job, device=str(device))
        out[f"{kind}_bake_realtime_factor"] = round(seconds / (time.perf_counter() - t0), 2)
        del res
    return out


def threads_section(work, device, steps=50):
    """Seconds per training step of the IR field's small preset with 1 and 2 torch threads."""
    out = {}
    for th in (1, 2):
        t0 = time.perf_counter()
        train_fields(work / "irs", work / f"threads{th}.pt", TrainOptions(device=str(device), steps=steps, threads=th))
        out[f"ir_train_s_per_step_{th}_threads"] = round((time.perf_counter() - t0) / steps, 4)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run with meaningless figures")
    ap.add_argument("--work", default=None, help="folder for data and models (default: a temporary one)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "field.json"))
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--only", choices=["anerf", "irfield", "speed"], action="append",
                    help="run only these sections (repeatable) and merge them into --out; needs --work for speed")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_field_"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs; work folder {work}")
    t0 = time.perf_counter()
    sections = args.only or ["anerf", "irfield", "speed"]
    results = {}
    if args.only and Path(args.out).is_file():  # a partial run adds to what is there
        results = json.loads(Path(args.out).read_text())
    results.update({"device": device, "torch": torch.__version__, "python": platform.python_version(),
                    "cpus": os.cpu_count(), "machine": platform.machine(), "threads": torch.get_num_threads(),
                    "quick": args.quick})
    if "anerf" in sections:
        results["anerf"] = anerf_section(work, args.quick, device)
    if "irfield" in sections:
        results["irfield"] = ir_section(work, args.quick, device)
    if "speed" in sections:
        results["speed"] = speed_section(work, torch.device(device))
        results["speed"].update(threads_section(work, device))
    results.setdefault("wall_s_sections", {})[",".join(sections)] = round(time.perf_counter() - t0, 1)
    results["wall_s"] = round(sum(results["wall_s_sections"].values()), 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if not all(k in results for k in ("anerf", "irfield", "speed")):
        Path(args.out).write_text(json.dumps(results, indent=2, default=float) + "\n")
        log(f"wrote {args.out} (partial: {', '.join(k for k in ('anerf', 'irfield', 'speed') if k in results)})")
        return 0

    a = results["anerf"]
    ev = a["field"]["eval"]
    ratio = ev["field"]["mag"] / ev["mono_energy"]["mag"]
    ir = results["irfield"]["field"]["eval"]
    sp = results["speed"]
    checks = {
        "MAG at least 40 % below Mono-Energy": ratio <= TARGETS["mag_vs_mono_energy"],
        "ENV below Stereo-Energy": ev["field"]["env"] < ev["stereo_energy"]["env"],
        "no-direction ablation worse (MAG)": a["no_direction"]["eval"]["field"]["mag"] > ev["field"]["mag"],
        "IR T60 error < 2.5 %": ir["t60_pct"] < TARGETS["t60_pct"],
        "IR C50 error < 0.6 dB": ir["c50_db"] < TARGETS["c50_db"],
        "IR EDT error < 0.016 s": ir["edt_s"] < TARGETS["edt_s"],
        "inference >= 1000 poses/s (masks)": sp["anerf_masks_poses_per_s"] >= TARGETS["poses_per_s"],
        "inference >= 1000 poses/s (IR spectrograms)": sp["ir_spectrogram_poses_per_s"] >= TARGETS["poses_per_s"],
    }
    results["checks"] = checks
    log("")
    log(f"A-NeRF held-out MAG {ev['field']['mag']:.4f} = {100 * ratio:.0f} % of Mono-Energy "
        f"({ev['mono_energy']['mag']:.4f}); ENV {ev['field']['env']:.4f} vs Stereo-Energy "
        f"{ev['stereo_energy']['env']:.4f}; without direction MAG {a['no_direction']['eval']['field']['mag']:.4f}")
    log(f"IR field held-out: T60 {ir['t60_pct']:.2f} %, C50 {ir['c50_db']:.3f} dB, EDT {ir['edt_s']:.4f} s "
        f"(ISO 3382 line fit; as the -10 dB crossing, INRAS/NeRAF-style: "
        f"{ir['edt_crossing_s']:.4f} s)")
    log(f"training ({device}): A-NeRF small {a['field']['train_s']:.0f} s, IR field small "
        f"{results['irfield']['field']['train_s']:.0f} s")
    log("inference: " + ", ".join(f"{k} {v:.0f}" for k, v in sp.items()))
    for k, v in checks.items():
        log(f"  [{'pass' if v else 'FAIL'}] {k}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=float) + "\n")
    log(f"wrote {args.out} ({results['wall_s']:.0f} s)")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
