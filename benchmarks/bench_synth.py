"""The synthetic tracking benchmark: generation speed, sizes, and what each preset holds.

    .venv/bin/python benchmarks/bench_synth.py [--suite all] [--seed 0] [--out DIR] [--keep]

Generates the suite (default: ``all``, the project's tracking benchmark) from
the shared real data, timing it on this machine (frames/s over the whole run,
background medians taken from the cache after the first run — the first run
adds ~20 s per background video), then per preset reports the sizes of the
files and the events measured on the rendered frames: crossings, occlusion
frames (person-frames more than half hidden), exits, re-entries, ground-truth
gaps, ignore regions (person-frames too small to annotate); and how the simplest tracker fares on it: greedy frame-to-frame IoU
matching of the ground-truth boxes (``corrtrack.synth.baseline``), evaluated
with ``corrtrack eval``'s code (MOTA, ID switches summed over joints). True
ids give 0 switches and MOTA 100 everywhere (checked too).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _size(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="where to write the suite (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    import cv2

    from corrtrack.eval.posetrack import evaluate
    from corrtrack.io.posetrack import read_posetrack
    from corrtrack.synth.baseline import greedy_iou_tracks
    from corrtrack.synth.suite import generate_suite

    out = args.out or Path(tempfile.mkdtemp(prefix="bench_synth."))
    cache = ROOT / ".cache" / "synth_backgrounds"
    try:
        t0 = time.perf_counter()
        summary = generate_suite(out, args.suite, seed=args.seed, cache_dir=cache, progress=sys.stderr.isatty())
        wall = time.perf_counter() - t0
        frames = sum(p["frames"] for p in summary["presets"].values())

        rows = []
        for preset, p in summary["presets"].items():
            seqs = [s for s in summary["sequences"] if s["preset"] == preset]
            gts = [read_posetrack(out / s["files"]["posetrack"]) for s in seqs]
            iou = evaluate(gts, [greedy_iou_tracks(g) for g in gts])
            true = evaluate(gts, gts)
            assert true.mot.totals()["num_switches"] == 0 and abs(true.mot.MOTA - 100) < 1e-9
            c = p["counts"]
            ids = sum(len(g.track_ids()) for g in gts)
            rows.append([preset, p["sequences"], p["frames"], ids, c["annotated_poses"], c["crossings"],
                         c["occlusion_frames"], c["exits"], c["reentries"], c["gt_gaps"], c["ignore_regions"],
                         iou.mot.totals()["num_switches"], f"{iou.mot.MOTA:.1f}",
                         _mb(_size(out / s["files"]["video"] for s in seqs)),
                         _mb(_size(out / s["files"]["posetrack"] for s in seqs)),
                         _mb(_size(out / s["files"]["coco"] for s in seqs))])
        head = ["preset", "seqs", "frames", "ids", "poses", "crossings", "occl. frames", "exits", "re-entries",
                "GT gaps", "ignore regions", "IoU IDSW", "IoU MOTA", "video MB", "PoseTrack MB", "COCO MB"]
        widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
        line = lambda r: "| " + " | ".join(str(v).rjust(w) for v, w in zip(r, widths)) + " |"  # noqa: E731
        print(f"synthetic suite '{args.suite}', seed {args.seed}, {summary['usable_people']} usable people, "
              f"{len(summary['backgrounds'])} backgrounds, OpenCV threads {cv2.getNumThreads()}")
        print(line(head))
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in rows:
            print(line(r))
        total = _size(out.rglob("*"))
        print(f"\ngeneration: {frames} frames of {summary['size'][0]}x{summary['size'][1]} in {wall:.1f} s = "
              f"{frames / wall:.1f} frames/s (whole run: people, backgrounds from cache, rendering, MP4, JSON)")
        print(f"suite size on disk: {_mb(total)} MB ({out})")
        print("IoU IDSW: ID switches (summed over the 15 joints, poseval's count) of greedy frame-to-frame IoU "
              "matching of the GT boxes; true ids: 0 switches, MOTA 100 on every preset.")
    finally:
        if args.out is None and not args.keep:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
