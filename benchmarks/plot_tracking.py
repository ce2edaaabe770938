"""Plot ID switches and MOTA per method and preset from the JSON of bench_tracking.py.

    .venv/bin/python benchmarks/bench_tracking.py --quick --json out/bench_tracking/quick.json
    .venv/bin/python benchmarks/plot_tracking.py out/bench_tracking/quick.json [--out docs/img/bench_tracking.png]
        [--methods corr,oks,iou,flow,reid] [--title TEXT]

The JSON holds ``{"results": {preset or "total": {method: {"IDSW": .., "MOTA": .., ...}}}, "info": {...}}``
(any file of that shape works, e.g. one written from bench_quality.py's results). Writes one PNG
(atomically) with grouped bars: one group per preset and the total, one bar per method.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corrtrack.errors import CorrtrackError

DEFAULT_OUT = ROOT / "docs" / "img" / "bench_tracking.png"
METRICS = ("IDSW", "MOTA")


def load_results(path: Path, methods: list[str] | None = None) -> tuple[dict, dict]:
    """(results[group][method] -> metrics, info) from a bench_tracking.py JSON; CorrtrackError when unusable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorrtrackError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorrtrackError(f"{path}: not a valid JSON file ({e})") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not results or not all(isinstance(v, dict) and v for v in results.values()):
        raise CorrtrackError(f"{path}: has no 'results' of the form {{preset: {{method: metrics}}}}")
    for group, rows in results.items():
        for method, r in rows.items():
            missing = [m for m in METRICS if not isinstance(r, dict) or not isinstance(r.get(m), (int, float))]
            if missing:
                raise CorrtrackError(f"{path}: {group}/{method} lacks {', '.join(missing)}")
    if methods:
        known = {m for rows in results.values() for m in rows}
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise CorrtrackError(f"{path}: no method {unknown[0]!r} (it has {', '.join(sorted(known))})")
        results = {g: {m: rows[m] for m in methods if m in rows} for g, rows in results.items()}
    return results, data.get("info") or {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", type=Path, help="bench_tracking.py --json output")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--methods", default=None, help="comma-separated subset, in this order (default: all)")
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)
    from corrtrack.bench import plot_quality

    try:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
        results, info = load_results(args.json, methods)
        title = args.title
        if title is None:
            title = "Synthetic suite" + (f": {info['sequences']} sequences, {info['frames']} frames"
                                         if {"sequences", "frames"} <= set(info) else "")
        out = plot_quality(results, args.out, title, METRICS)
    except CorrtrackError as e:
        print(f"plot_tracking: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
