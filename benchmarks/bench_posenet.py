"""PoseNet (the paper's two-stage BN-Inception pose network) next to MoveNet: size, speed, accuracy.

    CORRTRACK_HOME=... .venv/bin/python benchmarks/bench_posenet.py [--model OUT/posenet.pt]
        [--repeats 10] [--skip-speed] [--skip-accuracy] [--threads 2]

Size: parameter counts of PoseNet at the paper's size (width 1.0, 288x384),
of the given trained model, and of MoveNet lightning / thunder.

Speed: ms per batch and per person for batches of 1, 6 and 12 real crops
(walkers of vtest.avi), CPU with ``--threads`` threads, contenders timed
interleaved (``bench_pose.time_interleaved``) so load from other processes hits
them alike; PoseNet at the paper's size runs with random weights (speed does
not depend on them).

Accuracy (with --model): the same protocol as ``bench_pose.py`` - ground-truth
boxes, crops from ``TopDownPoseEstimator`` - on the 3 labelled PoseTrack18 val
frames (poseval mAP, our evaluator) and the 14 COCO people of shared/data
(OKS-AP, PCK@0.2), the model next to MoveNet thunder and lightning.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_pose.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_pose import DATA, coco_scores, posetrack_map, real_crops, time_interleaved  # noqa: E402

from corrtrack.models.movenet import MoveNet, load_movenet  # noqa: E402
from corrtrack.models.posenet import PoseNet  # noqa: E402
from corrtrack.pipeline.pose import PoseConfig, TopDownPoseEstimator, crop_image, crop_squares  # noqa: E402

BATCHES = (1, 6, 12)


def rect_crops(w: int, h: int, n: int) -> np.ndarray:
    """The walkers of ``bench_pose.real_crops`` cut as PoseNet sees them (w x h rectangles)."""
    from corrtrack.io.video import open_source

    with open_source(DATA / "opencv" / "vtest.avi", start=400, end=401) as src:
        frame = next(iter(src)).image
    boxes = np.array([[272, 200, 302, 287], [686, 298, 745, 412], [588, 138, 618, 205]])
    crops = crop_image(frame, crop_squares(boxes, PoseConfig(aspect_ratio=w / h)), (w, h))
    return crops[np.arange(n) % len(crops)]


def sizes(model: PoseNet | None) -> None:
    print("\n## Parameters\n")
    print("| model | input (w x h) | parameters |")
    print("|---|---|---:|")
    paper = PoseNet()
    print(f"| PoseNet, paper size (width 1.0) | 288 x 384 | {paper.num_parameters() / 1e6:.1f} M |")
    if model is not None:
        w, h = model.input_size
        print(f"| PoseNet, this model (width {model.config.width:g}) | {w} x {h} | "
              f"{model.num_parameters() / 1e6:.2f} M |")
    for v, s in (("lightning", 192), ("thunder", 256)):
        n = sum(p.numel() for p in MoveNet(v).parameters())
        print(f"| MoveNet {v} | {s} x {s} | {n / 1e6:.2f} M |")


def speed(model: PoseNet | None, repeats: int) -> None:
    print(f"\n## CPU speed ({torch.get_num_threads()} threads, median of {repeats}, real crops)\n")
    print("| model | batch | ms / batch | ms / person |")
    print("|---|---:|---:|---:|")
    nets = {"PoseNet paper size (288x384)": PoseNet().eval()}
    if model is not None:
        w, h = model.input_size
        nets[f"PoseNet this model ({w}x{h}, width {model.config.width:g})"] = model
    movenets = {}
    for v in ("lightning", "thunder"):
        try:
            movenets[f"MoveNet {v}"] = load_movenet(v, device="cpu")
        except Exception as e:  # noqa: BLE001 - a benchmark reports what it could not run
            print(f"(MoveNet {v} not available: {e})")
    for b in BATCHES:
        runs = {}
        for name, net in nets.items():
            x = torch.from_numpy(rect_crops(*net.input_size, b))
            runs[name] = (lambda n=net, x=x: n.predict(x))
        for name, mv in movenets.items():
            x = torch.from_numpy(real_crops(mv.input_size, b))
            runs[name] = (lambda m=mv, x=x: m(x))
        with torch.inference_mode():
            ms = time_interleaved(runs, repeats)
        for name, v in ms.items():
            print(f"| {name} | {b} | {v:.1f} | {v / b:.1f} |", flush=True)


def accuracy(model_path: Path) -> None:
    print("\n## Accuracy with ground-truth boxes\n")
    print("| model | PoseTrack18 val mAP (3 frames, 14 people) | COCO OKS-AP (14 people) | COCO PCK@0.2 |")
    print("|---|---:|---:|---:|")
    for name, cfg in ((f"PoseNet {model_path.name}", PoseConfig(model=str(model_path))),
                      ("MoveNet thunder (teacher)", PoseConfig(model="thunder")),
                      ("MoveNet lightning", PoseConfig(model="lightning"))):
        est = TopDownPoseEstimator(cfg, device="cpu")
        pt = posetrack_map(est)
        ap, pck = coco_scores(est)
        print(f"| {name} | {pt:.1f} | {ap:.1f} | {pck:.1f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="a trained PoseNet file (corrtrack train pose -> OUT/posenet.pt)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"bench_posenet: real data folder {DATA} not found (set CORRTRACK_SHARED)")
    torch.set_num_threads(args.threads)
    model = PoseNet.load(args.model) if args.model else None
    if model is not None:
        print(f"model: {args.model} ({model.meta})")
    sizes(model)
    if not args.skip_speed:
        speed(model, args.repeats)
    if model is not None and not args.skip_accuracy:
        accuracy(args.model)


if __name__ == "__main__":
    main()
