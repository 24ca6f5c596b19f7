"""``soundstage cache info|clear|prune``, and the bake options for chunked, resumable, distributed bakes.

``soundstage.cli`` registers this module's ``add_parser``. Besides the ``cache``
verb it adds these options to ``soundstage bake`` (they belong to the engine
features this module's siblings implement: ``chunks``, ``cache``,
``distributed``)::

    --resume               continue an interrupted bake of the same job
    --chunk-seconds S      chunk length (default 20; 0: one chunk per source)
    --workers N            bake on a local Dask cluster of N worker processes
    --scheduler ADDR       bake on the Dask cluster whose scheduler is at ADDR
    --work-dir DIR         where work folders go (default: the cache's work/)
    --no-cache             neither read nor write the intermediate cache
    --only-chunks LIST     render-farm chunk task: only these chunks, into --work-dir
"""

from __future__ import annotations

import json
import sys

from soundstage.cache import KINDS, Cache, format_bytes, parse_size


def cmd_cache(args) -> int:
    cache = Cache()
    if args.action == "info":
        info = cache.info()
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        print(f"cache folder  {info['root']}")
        print(f"size          {format_bytes(info['total_bytes'])} of {format_bytes(info['max_bytes'])} "
              "(set SOUNDSTAGE_CACHE_MAX to change the bound)")
        print(f"{'kind':8s} {'entries':>8s} {'size':>12s}")
        for kind, v in info["kinds"].items():
            print(f"{kind:8s} {v['entries']:8d} {format_bytes(v['bytes']):>12s}")
        return 0
    if args.action == "clear":
        n, b = cache.clear(args.kind)
        what = f"{args.kind} entries" if args.kind else "entries"
        print(f"removed {n} {what} ({format_bytes(b)}) from {cache.root}")
        return 0
    if args.action == "prune":
        target = args.to if args.to is not None else int(cache.max_bytes * 0.9)
        removed = cache.evict(target)
        print(f"removed {len(removed)} least recently used entries; {format_bytes(cache.info()['total_bytes'])} left")
        return 0
    raise AssertionError(args.action)  # pragma: no cover - argparse restricts the choices


def _size(text: str) -> int:
    import argparse

    try:
        return parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 500M or 2G, got '{text}'") from None


def cmd_bake(args) -> int:
    """``soundstage bake`` with the chunk, resume, cache and Dask options."""
    from soundstage.bake import bake
    from soundstage.cli import _progress_printer

    res = bake(args.job, out=args.out, fmt=args.format, progress=_progress_printer(args.json_progress, args.quiet),
               resume=args.resume or None, chunk_seconds=args.chunk_seconds, workers=args.workers,
               scheduler=args.scheduler, work_dir=args.work_dir, cache=False if args.no_cache else None,
               only_chunks=args.only_chunks)
    if args.only_chunks is not None:
        c = res.info["chunks"]
        line = {"event": "done", "work_dir": str(res.path), "chunks": res.info["only_chunks"],
                "rendered": c["rendered"], "reused": c["cached"] + c["resumed"]}
        print(json.dumps(line) if args.json_progress else
              f"rendered chunks {args.only_chunks} of {res.info['chunks_total']} into {res.path} "
              f"({c['rendered']} parts rendered, {c['cached'] + c['resumed']} already there)", flush=True)
        return 0
    if args.json_progress:
        print(json.dumps({"event": "done", "path": str(res.path), "sidecar": str(res.sidecar)}), flush=True)
    else:
        i = res.info
        c = i.get("chunks", {})
        reused = c.get("from_cache", 0) + c.get("resumed", 0)
        print(f"wrote {res.path} ({i['format']}, {len(i['channels'])} ch, {i['duration_s']:.2f} s, "
              f"peak {i['peak_dbfs']:.1f} dBFS, {i['realtime_factor']}x real time"
              + (f", {reused} of {c['parts']} parts reused" if reused else "") + ")")
        for note in i["notes"]:
            print(f"note: {note}")
    return 0


def _extend_bake(sub) -> None:
    bake_parser = sub.choices.get("bake") if hasattr(sub, "choices") else None
    if bake_parser is None:
        return
    g = bake_parser.add_argument_group("chunks, resume and distributed bakes")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted bake of the same job from its finished chunks")
    g.add_argument("--chunk-seconds", type=float, metavar="S",
                   help="chunk length in seconds (default 20; 0: one chunk per source)")
    g.add_argument("--workers", type=int, metavar="N", help="bake on a local Dask cluster of N worker processes")
    g.add_argument("--scheduler", metavar="ADDR", help="bake on the Dask cluster whose scheduler is at ADDR "
                   "(e.g. tcp://farm:8786); see docs/farm.md")
    g.add_argument("--work-dir", metavar="DIR", help="where finished chunks wait for the final file "
                   "(default: the cache folder's work/)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the intermediate cache")
    g.add_argument("--only-chunks", metavar="LIST", help="render-farm chunk task: render only these chunks "
                   "(3, 0,2,5 or 2-4) into --work-dir and write no track; a final --resume bake assembles it")
    bake_parser.set_defaults(func=cmd_bake)


def add_parser(sub) -> None:
    """Add the ``cache`` verb, and the chunk/resume/Dask options of ``bake``."""
    _extend_bake(sub)
    p = sub.add_parser("cache", help="inspect or empty the cache of intermediates (info, clear, prune)",
                       description="The engine caches processed HRTFs, image sources, late tails and rendered "
                                   "chunks by content, so re-bakes only render what changed.")
    acts = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    acts.required = True
    i = acts.add_parser("info", help="entries and size per kind")
    i.add_argument("--json", action="store_true", help="print JSON")
    c = acts.add_parser("clear", help="delete entries (all, or of one kind)")
    c.add_argument("--kind", choices=list(KINDS), help="only this kind")
    r = acts.add_parser("prune", help="delete least recently used entries down to a size")
    r.add_argument("--to", type=_size, metavar="SIZE", help="target size (default 90%% of the bound)")
    p.set_defaults(func=cmd_cache)


if __name__ == "__main__":  # pragma: no cover
    from soundstage.cli import main

    sys.exit(main(["cache"] + sys.argv[1:]))
