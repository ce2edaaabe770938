"""Correspondence network: accuracy on held-out affine pairs, truncation scores, CPU speed.

    CORRTRACK_HOME=... .venv/bin/python benchmarks/bench_corr.py [--model PATH] [--pairs 12]
        [--skip-speed] [--skip-accuracy] [--threads 2]

Accuracy (set (a) of issue 6): the real annotated images, none of which the
shipped model saw in training (it was trained on pseudo-labelled video frames):
COCO (4 images, 14 people, COCO-17) and the 3 labelled PoseTrack18 frames
(14 people, PoseTrack-18 slots). Each image gets ``--pairs`` random affine
warps drawn like the training ones (translation, rotation, flip, scale,
brightness/contrast, blur) but from a different seed; every labelled joint is
propagated from the image to its warp, and scored where it stays in the frame:
  * PCK@0.1: within 0.1 x the longer side of the person's box (tight box
    around its warped labelled joints);
  * PCKh@0.5 (PoseTrack frames only, they have head boxes): within 0.5 x head
    size, head size = 0.6 x the warped head-box diagonal (poseval's rule).
Side by side: the trained model (refined maps), the same model without the
refinement module (softmax argmax), the same backbone untrained (ImageNet
MobileNetV2 + a randomly initialised FPN head, seed 0; no refinement, an
untrained one is noise) and OpenCV DIS optical flow (PRESET_MEDIUM, on the
grey images at full resolution) moving the same keypoints.

Truncation: the maximum of each joint's map for joints the warp moved out of
the frame vs joints that stayed in; reported as both means and the AUC (the
chance that a visible joint scores above a truncated one).

Speed on this CPU (``--threads``, default 2): ms per frame for features at the
input size (square 512 canvas, and 512 x 384 for a 4:3 frame without square
padding), ms per frame pair for the affinity maps of 6 people, and ms per person
for refinement (6 people in one batch). The machine is shared: the load
average is printed beside the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("CORRTRACK_SHARED", ROOT.parent / "shared")) / "data"

from corrtrack.layouts import COCO17  # noqa: E402
from corrtrack.models.corrnet import DEFAULT_WEIGHTS, CorrespondenceNet, CorrNetConfig  # noqa: E402
from corrtrack.models.corr_codec import inside_image  # noqa: E402
from corrtrack.pipeline.propagate import frame_features, propagate  # noqa: E402
from corrtrack.structures import Poses  # noqa: E402
from corrtrack.train.corr import WarpConfig, _photometric, sample_affine  # noqa: E402

SETS = (("coco", "mmpose/coco/test_coco.json", "mmpose/coco"),
        ("posetrack18", "mmpose/posetrack18/annotations/test_posetrack18_val.json", "mmpose/posetrack18"))


def load_people():
    out = []
    for name, ann, root in SETS:
        d = json.loads((DATA / ann).read_text())
        by_img: dict[int, list] = {}
        for a in d["annotations"]:
            kp = np.asarray(a["keypoints"], float).reshape(17, 3)
            if (kp[:, 2] > 0).sum() >= 1 and not a.get("iscrowd", 0):
                by_img.setdefault(a["image_id"], []).append((kp, a.get("bbox_head")))
        for im in d["images"]:
            if im["id"] in by_img:
                rgb = cv2.cvtColor(cv2.imread(str(DATA / root / im["file_name"])), cv2.COLOR_BGR2RGB)
                out.append((name, rgb, by_img[im["id"]]))
    return out


def dis_flow(a_rgb, b_rgb, kp):
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(cv2.cvtColor(a_rgb, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b_rgb, cv2.COLOR_RGB2GRAY), None)
    xy = kp[..., :2].reshape(-1, 1, 2).astype(np.float32)
    fx = cv2.remap(flow[..., 0], xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fy = cv2.remap(flow[..., 1], xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return kp[..., :2] + np.stack([fx, fy], -1).reshape(kp.shape[:-1] + (2,))


def accuracy(nets: dict, pairs: int, seed: int):
    people = load_people()
    warp = WarpConfig()
    methods = list(nets) + ["DIS optical flow"]
    hits = {m: [] for m in methods}
    hits_h = {m: [] for m in methods}
    trunc = {m: ([], []) for m in nets}  # (visible maxima, truncated maxima)
    for ii, (name, img, persons) in enumerate(people):
        h, w = img.shape[:2]
        kp = np.stack([p[0] for p in persons])
        kp[..., 2] = (kp[..., 2] > 0).astype(float)
        poses = Poses(kp, COCO17)
        for j in range(pairs):
            rng = np.random.default_rng([seed, 99, ii, j])
            m = sample_affine(rng, w, h, warp)
            img2 = _photometric(cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR), rng)
            gt = kp[..., :2] @ m[:, :2].T + m[:, 2]
            valid = kp[..., 2] > 0
            present = valid & inside_image(gt, w, h)
            box = np.array([np.ptp(g[v], 0).max() if v.sum() > 1 else np.nan for g, v in zip(gt, present)])
            scale = np.sqrt(abs(np.linalg.det(m[:, :2])))
            head = np.array([0.6 * np.hypot(hb[2], hb[3]) * scale if hb else np.nan for _, hb in persons])
            preds = {}
            for mname, net in nets.items():
                fa, fb = frame_features(net, img), frame_features(net, img2)
                moved, maps = propagate(net, None, None, poses, feats_a=fa, feats_b=fb,
                                        use_refinement=mname.startswith("trained") and "without" not in mname)
                preds[mname] = moved.keypoints[..., :2]
                conf = moved.keypoints[..., 2]
                trunc[mname][0].extend(conf[present].tolist())
                trunc[mname][1].extend(conf[valid & ~present].tolist())
            preds["DIS optical flow"] = dis_flow(img, img2, kp)
            for mname, p in preds.items():
                err = np.linalg.norm(p - gt, axis=-1)
                ok = present & np.isfinite(box)[:, None]
                hits[mname].extend((err[ok] <= 0.1 * np.broadcast_to(box[:, None], err.shape)[ok]).tolist())
                if name == "posetrack18":
                    okh = present & np.isfinite(head)[:, None]
                    hits_h[mname].extend((err[okh] <= 0.5 * np.broadcast_to(head[:, None], err.shape)[okh]).tolist())
    return methods, hits, hits_h, trunc


def auc(pos, neg):
    pos, neg = np.asarray(pos), np.asarray(neg)
    if not len(pos) or not len(neg):
        return float("nan")
    return float(((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean())


def timeit(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts)), 1e3 * float(np.min(ts))


def speed(net, repeats):
    rows = []
    with torch.inference_mode():
        for w, h in ((512, 512), (512, 384)):
            x = torch.rand(1, 3, h, w)
            rows.append((f"features, {w}x{h} canvas (per frame)", *timeit(lambda: net.features(x), repeats)))
        f = net.features(torch.rand(1, 3, 512, 512))
        g = torch.rand(1, 6 * 17, 2) * 127
        rows.append(("affinity maps, 6 people (per frame pair)", *timeit(lambda: net.affinity(f, f, g), repeats)))
        maps = net.affinity(f, f, g).reshape(1, 6, 17, 128, 128)
        med, best = timeit(lambda: net.refine(f, f, maps), repeats)
        rows.append(("refinement, 6 people in one batch (per person)", med / 6, best / 6))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--pairs", type=int, default=12, help="warps per image")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    trained = CorrespondenceNet.load(args.model)
    if not args.skip_accuracy:
        torch.manual_seed(0)
        untrained = CorrespondenceNet(CorrNetConfig()).eval()
        nets = {"trained + refinement": trained, "trained, without refinement": trained,
                "untrained (ImageNet backbone)": untrained}
        t = time.time()
        methods, hits, hits_h, trunc = accuracy(nets, args.pairs, args.seed)
        n = len(hits[methods[0]])
        print(f"\nHeld-out affine pairs: COCO 4 images + PoseTrack18 3 frames (28 people), {args.pairs} warps each, "
              f"{n} joints in frame ({time.time() - t:.0f} s)\n")
        print("| method | PCK@0.1 | PCKh@0.5 (PoseTrack18) |")
        print("|---|---|---|")
        for m in methods:
            print(f"| {m} | {100 * np.mean(hits[m]):.1f} | {100 * np.mean(hits_h[m]):.1f} |")
        print("\nTruncation: map maximum of joints that stay in the frame vs joints warped out\n")
        print("| maps | visible mean | truncated mean | AUC visible > truncated | truncated joints |")
        print("|---|---|---|---|---|")
        for m, (vis, tr) in trunc.items():
            if m.startswith("untrained"):
                continue
            kind = "refined (sigmoid)" if "without" not in m else "softmax"
            print(f"| {m}: {kind} | {np.mean(vis):.3f} | {np.mean(tr) if tr else float('nan'):.3f} | "
                  f"{auc(vis, tr):.3f} | {len(tr)} |")
    if not args.skip_speed:
        load = os.getloadavg()[0]
        print(f"\nSpeed on this CPU, {args.threads} threads, load average {load:.1f} (ms: median / best of "
              f"{args.repeats})\n")
        print("| stage | median ms | best ms |")
        print("|---|---|---|")
        for name, med, best in speed(trained, args.repeats):
            print(f"| {name} | {med:.1f} | {best:.1f} |")


if __name__ == "__main__":
    main()
