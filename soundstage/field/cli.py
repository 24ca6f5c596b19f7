"""``soundstage field ...``: train, evaluate and render learned acoustic fields.

Registered by the main command line through ``add_parser(subparsers)``; every
sub-command sets ``func(args) -> int`` and raises ``SoundstageError`` for input the
user can fix (exit 2, one line). torch is imported only when a command runs, so
``soundstage --help`` stays fast and works without it.
"""

from __future__ import annotations

import json
import sys


def _printer(args):
    from soundstage.cli import _progress_printer

    return _progress_printer(getattr(args, "json_progress", False), getattr(args, "quiet", False))


def _warn(lines) -> None:
    for line in lines:
        if line:
            print(f"warning: {line}", file=sys.stderr)


def _done(args, **fields) -> None:
    if getattr(args, "json_progress", False):
        print(json.dumps({"event": "done", **fields}, default=str), flush=True)


def cmd_train(args) -> int:
    from soundstage.field.train import TrainOptions, train_fields

    opts = TrainOptions(preset=args.preset, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        scene=args.scene, use_direction=not args.no_direction,
                        conv=False if args.no_conv else None,
                        early_render=False if args.no_early_render else None, checkpoint_every=args.checkpoint_every,
                        device=args.device, threads=args.threads)
    res = train_fields(args.data, args.out, opts, resume=args.resume, progress=_printer(args))
    _done(args, path=str(res.path), fields=[{"source": f.source_name, "kind": f.kind, **f.info} for f in res.fields])
    if not args.json_progress:
        for f in res.fields:
            i = f.info
            print(f"trained {f.kind} field '{f.source_name}': {i['steps']} steps in {i['seconds']:.1f} s on "
                  f"{i['device']}, final loss {i['final_loss']:.4g}, scene features "
                  f"{'on' if i['scene_features'] else 'off'}")
        print(f"wrote {res.path}")
    return 0


def _fmt_scores(name: str, s: dict) -> str:
    keys = [k for k in ("mag", "env", "stft", "dphase", "snr", "mag_wave") if k in s]
    return f"{name:24s} " + "  ".join(f"{k.upper()} {s[k]:8.4f}" for k in keys)


def cmd_eval(args) -> int:
    from soundstage.field.evaluate import evaluate

    res = evaluate(args.model, args.data, split=args.split, field=args.field, device=args.device,
                   griffin_lim=args.griffin_lim)
    if args.json:
        print(json.dumps(res, indent=2, default=float))
    elif res["kind"] == "irfield":
        print(f"impulse-response field '{res['source']}' on {res['responses']} {args.split} responses:")
        print(f"  T60 error {res['t60_pct']:.2f} %   (ground truth mean T60 {res['t60_s']:.3f} s)")
        print(f"  C50 error {res['c50_db']:.3f} dB  (ground truth mean C50 {res['c50_db_gt']:.2f} dB)")
        print(f"  EDT error {res['edt_s']:.4f} s  (ground truth mean EDT {res['edt_s_gt']:.3f} s; "
              f"as the -10 dB crossing, INRAS/NeRAF-style: {res['edt_crossing_s']:.4f} s)")
    else:
        print(f"recording field '{res['source']}' on {res['clips']} {args.split} clips (1 s):")
        print(_fmt_scores("A-NeRF field", res["field"]))
        for k, label in (("mono_mono", "Mono-Mono"), ("mono_energy", "Mono-Energy"),
                         ("stereo_energy", "Stereo-Energy")):
            print(_fmt_scores(label, res[k]))
        for k, label in (("mono_energy", "Mono-Energy (aligned)"), ("stereo_energy", "Stereo-Energy (aligned)")):
            print(_fmt_scores(label, res["aligned"][k]))
    _warn([res.get("warning")])
    return 0


def cmd_render(args) -> int:
    import warnings

    from soundstage.field.checkpoint import OutsideTrainedArea
    from soundstage.field.render import render_field_job

    with warnings.catch_warnings():
        # The same text is in the sidecar's notes and printed below as one "warning:" line;
        # Python's own warning print would add the source line of the call.
        warnings.simplefilter("ignore", OutsideTrainedArea)
        res = render_field_job(args.model, args.job, out=args.out, progress=_printer(args), device=args.device,
                               griffin_lim=args.griffin_lim)
    _done(args, path=str(res.path), sidecar=str(res.sidecar))
    i = res.info
    if not args.json_progress:
        print(f"wrote {res.path} (binaural, {i['duration_s']:.2f} s, peak {i['peak_dbfs']:.1f} dBFS, "
              f"{i['realtime_factor']}x real time, {i['backend']})")
    _warn(i["notes"])
    return 0


def cmd_info(args) -> int:
    from soundstage.field.checkpoint import load_fields

    fields = load_fields(args.model)
    rows = [{"source": f.source_name, "kind": f.kind, "config": f.config.as_dict(),
             "source_position": f.source_position.tolist(), "parameters": sum(p.numel() for p in f.model.parameters()),
             "trained": f.info} for f in fields]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        for r in rows:
            print(f"{r['kind']} field '{r['source']}': {r['parameters']} parameters, source at "
                  f"{[round(x, 3) for x in r['source_position']]}, trained on {r['trained'].get('data')}")
    return 0


def cmd_synth_walk(args) -> int:
    from soundstage.field.data import synthetic_walk

    p = synthetic_walk(args.out, seconds=args.seconds, seed=args.seed, snr_db=args.snr_db, progress=_printer(args))
    _done(args, path=str(p))
    if not args.json_progress:
        print(f"wrote {p}")
    return 0


def cmd_synth_irs(args) -> int:
    from soundstage.field.data import synthetic_irs

    p = synthetic_irs(args.out, n_train=args.train, n_val=args.val, seed=args.seed, ir_seconds=args.ir_seconds,
                      progress=_printer(args))
    _done(args, path=str(p))
    if not args.json_progress:
        print(f"wrote {p}")
    return 0


def _progress_flags(p) -> None:
    p.add_argument("--json-progress", action="store_true", help="print progress as JSON lines on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def add_parser(subparsers):
    """Register the ``field`` command group on an ``argparse`` sub-parser set."""
    p = subparsers.add_parser("field", help="learned acoustic fields: train from a capture, evaluate, render",
                              description="Learned acoustic fields (AV-NeRF's A-NeRF and impulse-response fields); "
                                          "see docs/field.md.")
    sub = p.add_subparsers(dest="field_command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train a field from a capture, an RWAVS scene or an impulse-response set",
                       description="Train one field per DATA folder (one source each) and write them as one model.")
    t.add_argument("data", nargs="+", metavar="DATA", help="capture folder, RWAVS scene folder or irs.json folder")
    t.add_argument("--out", required=True, help="model file to write (.pt)")
    t.add_argument("--preset", choices=["small", "paper"], default="small",
                   help="small: minutes on a 2-core CPU (default); paper: AV-NeRF's size")
    t.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr", type=float, default=None, help="peak learning rate")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--scene", choices=["auto", "on", "off"], default="auto",
                   help="scene features from the capture's room (default: when it has one)")
    t.add_argument("--no-direction", action="store_true", help="ablation: no direction input")
    t.add_argument("--no-conv", action="store_true", help="ablation: no convolution refinement")
    t.add_argument("--no-early-render", action="store_true",
                   help="impulse-response fields: learn the direct sound and early reflections instead of "
                        "starting from the engine's own (for responses this engine did not make)")
    t.add_argument("--resume", action="store_true", help="continue from <out stem>.train.pt if present")
    t.add_argument("--checkpoint-every", type=int, default=250, help="steps between training checkpoints")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    t.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: one per core; 1 is often faster on a busy machine)")
    _progress_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="score a field on held-out data against the baselines",
                       description="MAG/ENV (recording fields, with Mono-Mono, Mono-Energy and Stereo-Energy) or "
                                   "T60/C50/EDT errors (impulse-response fields).")
    e.add_argument("model", metavar="MODEL.pt")
    e.add_argument("data", metavar="DATA")
    e.add_argument("--split", choices=["val", "train", "all"], default="val")
    e.add_argument("--field", default=None, help="which field of a stacked model (name or index)")
    e.add_argument("--griffin-lim", type=int, default=8, help="phase iterations of impulse-response fields")
    e.add_argument("--device", default=None)
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("render", help="bake a job with a field instead of the room simulator",
                       description="Like 'soundstage bake', but the sound comes from the field (binaural only).")
    r.add_argument("model", metavar="MODEL.pt")
    r.add_argument("job", metavar="JOB.json")
    r.add_argument("--out", metavar="PATH", help="output WAV (overrides output.path)")
    r.add_argument("--griffin-lim", type=int, default=8, help="phase iterations of impulse-response fields")
    r.add_argument("--device", default=None)
    _progress_flags(r)
    r.set_defaults(func=cmd_render)

    i = sub.add_parser("info", help="what a model file holds")
    i.add_argument("model", metavar="MODEL.pt")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    w = sub.add_parser("synth-walk", help="simulate a recording walk (a capture) with the engine")
    w.add_argument("out", metavar="OUT_DIR")
    w.add_argument("--seconds", type=float, default=120.0)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--snr-db", type=float, default=20.0)
    _progress_flags(w)
    w.set_defaults(func=cmd_synth_walk)

    s = sub.add_parser("synth-irs", help="simulate an impulse-response set with the engine")
    s.add_argument("out", metavar="OUT_DIR")
    s.add_argument("--train", type=int, default=200, help="training poses")
    s.add_argument("--val", type=int, default=50, help="held-out poses")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--ir-seconds", type=float, default=0.5)
    _progress_flags(s)
    s.set_defaults(func=cmd_synth_irs)
    return p


if __name__ == "__main__":
    from soundstage.cli import main

    sys.exit(main(["field"] + sys.argv[1:]))
