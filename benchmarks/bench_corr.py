"""Correspondence network: accuracy on held-out affine pairs, truncation scores, CPU speed.

    CORRTRACK_HOME=... .venv/bin/python benchmarks/bench_corr.py [--model PATH] [--pairs 12]
        [--sets a,b] [--synth DIR] [--skip-speed] [--skip-accuracy] [--threads 2]

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

Set (b), ``--sets b``: frame pairs at gaps 1, 5 and 10 (a pair starts every 3rd
frame) from a synthetic-benchmark suite (``--synth``; made on first use:
crossing preset, seed 123, 3 sequences x 60 frames, real COCO people on the
vtest.avi background; the training used another seed's sequences for model
selection only). Exact GT: joints visible in both frames are scored, PCK@0.1 of
the longer side of the person's GT box in the second frame and PCKh@0.5.
Occlusion: map maxima of joints visible in both vs joints hidden or gone.

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


def synth_pairs(suite: Path, gaps=(1, 5, 10), every: int = 3):
    """Set (b): (sequence, gap, frame a, frame b, poses a, poses b) from a synthetic suite, COCO-17 joints.

    Only joints visible in a frame are in its PoseTrack GT (hidden or outside: score 0). Persons are
    matched by track id; a frame pair starts every ``every`` frames.
    """
    from corrtrack.io.posetrack import read_posetrack
    from corrtrack.io.video import open_source
    from corrtrack.layouts import convert_keypoints

    files = sorted((suite / "posetrack").glob("*.json"))
    if not files:
        raise SystemExit(f"{suite}: no posetrack/*.json (make it with: corrtrack data synth {suite} "
                         "--preset crossing --seed 123)")
    for f in files:
        seq = read_posetrack(f)
        frames = [fr.image for fr in open_source(suite / "videos" / f"{f.stem}.mp4")]
        for gap in gaps:
            for a in range(0, min(len(frames), len(seq.poses)) - gap, every):
                pa, pb = seq.poses[a], seq.poses[a + gap]
                common = [t for t in pa.track_ids if t in set(pb.track_ids.tolist())]
                if not common:
                    continue
                ia = [int(np.flatnonzero(pa.track_ids == t)[0]) for t in common]
                ib = [int(np.flatnonzero(pb.track_ids == t)[0]) for t in common]
                ka = convert_keypoints(pa.keypoints[ia], pa.layout, COCO17)
                kb = convert_keypoints(pb.keypoints[ib], pb.layout, COCO17)
                yield seq.name, gap, a, frames[a], frames[a + gap], ka, kb, pb.boxes[ib], pb.head_boxes[ib]


def accuracy_synth(nets: dict, suite: Path, gaps=(1, 5, 10)):
    """PCK@0.1 (of the longer side of the GT box in frame b) and PCKh@0.5 per gap, on joints visible in
    both frames; map maxima of joints visible in both vs joints visible in a that are hidden or gone in b."""
    methods = list(nets) + ["DIS optical flow"]
    hits = {(m, g): [] for m in methods for g in gaps}
    hits_h = {(m, g): [] for m in methods for g in gaps}
    occl = {m: ([], []) for m in nets}
    cache: dict = {}
    for seq, gap, a, fa, fb, ka, kb, box_b, head_b in synth_pairs(suite, gaps):
        if seq not in {k[1] for k in cache}:
            cache.clear()  # a new sequence: the frames of the last one are done
        va, vb = ka[..., 2] > 0, kb[..., 2] > 0
        both = va & vb
        side = np.maximum(box_b[:, 2] - box_b[:, 0], box_b[:, 3] - box_b[:, 1])
        head = 0.6 * np.hypot(head_b[:, 2] - head_b[:, 0], head_b[:, 3] - head_b[:, 1])
        kp = ka.copy()
        kp[..., 2] = va.astype(float)
        poses = Poses(kp, COCO17)
        preds = {}
        for mname, net in nets.items():
            feats = []
            for i, fr in ((a, fa), (a + gap, fb)):
                key = (mname.startswith("untrained"), seq, i)
                if key not in cache:
                    cache[key] = frame_features(net, fr)
                feats.append(cache[key])
            refine = mname.startswith("trained") and "without" not in mname
            moved, _ = propagate(net, None, None, poses, feats_a=feats[0], feats_b=feats[1], use_refinement=refine)
            preds[mname] = moved.keypoints[..., :2]
            occl[mname][0].extend(moved.keypoints[..., 2][both].tolist())
            occl[mname][1].extend(moved.keypoints[..., 2][va & ~vb].tolist())
        preds["DIS optical flow"] = dis_flow(fa, fb, kp)
        for mname, p in preds.items():
            err = np.linalg.norm(p - kb[..., :2], axis=-1)
            hits[mname, gap].extend((err[both] <= 0.1 * np.broadcast_to(side[:, None], err.shape)[both]).tolist())
            okh = both & np.isfinite(head)[:, None]
            hits_h[mname, gap].extend((err[okh] <= 0.5 * np.broadcast_to(head[:, None], err.shape)[okh]).tolist())
    return methods, hits, hits_h, occl


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
    ap.add_argument("--sets", default="a,b", help="accuracy sets to run: a (affine pairs), b (synthetic sequences)")
    ap.add_argument("--synth", type=Path, default=ROOT / "out" / "bench_corr_synth",
                    help="set (b) suite folder; made here (crossing, seed 123, 3 x 60 frames) when absent")
    args = ap.parse_args()
    sets = set(args.sets.split(","))
    torch.set_num_threads(args.threads)
    trained = CorrespondenceNet.load(args.model)
    if not args.skip_accuracy:
        torch.manual_seed(0)
        untrained = CorrespondenceNet(CorrNetConfig()).eval()
        nets = {"trained + refinement": trained, "trained, without refinement": trained,
                "untrained (ImageNet backbone)": untrained}
    if not args.skip_accuracy and "a" in sets:
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
    if not args.skip_accuracy and "b" in sets:
        if not (args.synth / "posetrack").is_dir():
            from corrtrack.synth.suite import generate_suite

            generate_suite(args.synth, "crossing", seed=123, overrides={"num_sequences": 3, "num_frames": 60})
        t = time.time()
        gaps = (1, 5, 10)
        methods, hits, hits_h, occl = accuracy_synth(nets, args.synth, gaps)
        seed = json.loads((args.synth / "suite.json").read_text()).get("seed")
        print(f"\nSynthetic sequences {args.synth} (seed {seed}), joints visible in both frames, "
              f"{', '.join(f'gap {g}: {len(hits[methods[0], g])}' for g in gaps)} joints ({time.time() - t:.0f} s)\n")
        print("| method | " + " | ".join(f"PCK@0.1 gap {g}" for g in gaps) + " | "
              + " | ".join(f"PCKh@0.5 gap {g}" for g in gaps) + " |")
        print("|---" * (1 + 2 * len(gaps)) + "|")
        for m in methods:
            print(f"| {m} | " + " | ".join(f"{100 * np.mean(hits[m, g]):.1f}" for g in gaps) + " | "
                  + " | ".join(f"{100 * np.mean(hits_h[m, g]):.1f}" for g in gaps) + " |")
        print("\nOcclusion: map maximum of joints visible in both frames vs joints hidden or gone in frame b\n")
        print("| maps | visible mean | hidden mean | AUC visible > hidden | hidden joints |")
        print("|---|---|---|---|---|")
        for m, (vis, hid) in occl.items():
            if not m.startswith("untrained"):
                print(f"| {m} | {np.mean(vis):.3f} | {np.mean(hid):.3f} | {auc(vis, hid):.3f} | {len(hid)} |")
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
