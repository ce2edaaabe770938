"""MoveNet top-down pose: speed per person (batched) and accuracy on the real annotated images.

    CORRTRACK_HOME=... .venv/bin/python benchmarks/bench_pose.py [--repeats 20] [--skip-speed]
        [--skip-accuracy] [--skip-reference] [--ort-site DIR]

Speed: ms per batch and per person for batches of 1, 6, 12 real crops, both
MoveNet sizes, on this CPU with torch.set_num_threads(2) (and on CUDA when
present). Side by side, when available: the same converted model exported to
ONNX and run by onnxruntime with 2 threads (the original graph cannot be
loaded by onnxruntime without TensorFlow, see METHOD.md), and one inference of
the original TF.js graph in node (pure-JS tfjs, the parity reference).
Contenders are timed interleaved, so load from other processes hits them alike;
``--clock cpu`` times this process's CPU time instead of wall time (steadier when
other jobs share the machine). Our model runs eager, frozen (TorchScript trace) and as the
pipeline runs it on a CPU (the network on ONNX Runtime, the decoding in torch;
``corrtrack.models.frozen``).

Accuracy, both sizes, boxes from the ground truth and from our NanoDet
detector (default: boxes above 0.4, plus candidates 0.2-0.4 whose pose is
confident, see ``DetectorConfig.candidate_threshold``; and the 0.4 threshold alone):
  * COCO: the 4 images / 14 people of shared/data/mmpose/coco — COCO
    keypoint AP (OKS, pycocotools) and PCK@0.2 x max(box w, h) with GT boxes;
  * PoseTrack18 val: the 3 labelled frames — poseval mAP with our evaluator
    (COCO-17 -> PoseTrack-18 via Poses.to_layout; all joints kept).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# OpenMP threads that spin while waiting collapse when other processes share the 2 cores
# (measured: lightning batch 1 took ~1.2 s instead of ~40 ms); must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("CORRTRACK_SHARED", ROOT.parent / "shared")) / "data"

from corrtrack.io.video import open_source, read_image  # noqa: E402
from corrtrack.layouts import POSETRACK18  # noqa: E402
from corrtrack.pipeline.pose import PoseConfig, TopDownPoseEstimator, crop_image, crop_squares  # noqa: E402
from corrtrack.structures import PoseSequence  # noqa: E402

VARIANTS = ("lightning", "thunder")
VARIANTS_SIZE = {"lightning": 192, "thunder": 256}
BATCHES = (1, 6, 12)


def real_crops(size: int, n: int) -> np.ndarray:
    """n crops of the walkers in vtest.avi frame 400 (repeated as needed)."""
    with open_source(DATA / "opencv" / "vtest.avi", start=400, end=401) as src:
        frame = next(iter(src)).image
    boxes = np.array([[272, 200, 302, 287], [686, 298, 745, 412], [588, 138, 618, 205]])
    crops = crop_image(frame, crop_squares(boxes, PoseConfig()), size)
    return crops[np.arange(n) % len(crops)]


def times_interleaved(runs: dict, repeats: int, clock=time.perf_counter) -> dict[str, list[float]]:
    """ms of each call of each callable; calls alternate so that load from other processes
    on the machine hits every contender alike. ``clock``: ``time.perf_counter`` (wall) or
    ``time.process_time`` (CPU time of this process, all threads: what a call costs, much less
    sensitive than wall time to other processes on a shared machine)."""
    for fn in runs.values():
        for _ in range(3):
            fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t = clock()
            fn()
            times[name].append(1000 * (clock() - t))
    return times


def time_interleaved(runs: dict, repeats: int, clock=time.perf_counter) -> dict[str, float]:
    """Median ms of each callable (see ``times_interleaved``)."""
    return {name: float(np.median(v)) for name, v in times_interleaved(runs, repeats, clock).items()}


def ort_session(model, size: int, threads: int):
    """Our converted module exported to ONNX and loaded in onnxruntime (None if not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    path = Path(tempfile.mkdtemp()) / "movenet.onnx"
    x = torch.zeros(2, size, size, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.cpu(), (x,), str(path), input_names=["input"], output_names=["keypoints"],
                          dynamic_axes={"input": {0: "n"}}, opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def tfjs_ms(variant: str, crop: np.ndarray) -> float | None:
    from corrtrack.models.cache import HUMAN_MODELS

    run_js = ROOT / "tools" / "tfjs_ref" / "run.js"
    model_json = HUMAN_MODELS.folder / "models" / f"movenet-{variant}.json"
    if not (ROOT / "tools" / "tfjs_ref" / "node_modules" / "@tensorflow" / "tfjs").is_dir() or not model_json.is_file():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "x.raw"
        crop[None].astype("<i4").tofile(inp)
        shape = ",".join(map(str, (1, *crop.shape)))
        proc = subprocess.run(["node", str(run_js), str(model_json), str(inp), shape, "int32", f"{tmp}/out"],
                              capture_output=True, text=True)
        if proc.returncode:
            return None
        return float(json.loads((Path(tmp) / "out" / "outputs.json").read_text())["ms"])


def bench_speed(repeats: int, reference: bool, threads: int = 2, clock: str = "wall") -> None:
    from corrtrack.models.movenet import load_movenet

    torch.set_num_threads(threads)
    timer = time.perf_counter if clock == "wall" else time.process_time
    print(f"\n## MoveNet speed (torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"median of {repeats}, {clock} time, real crops, load average {os.getloadavg()[0]:.1f})\n")
    print("| model | runtime | batch | ms / batch | ms / person | / onnxruntime |")
    print("|---|---|---:|---:|---:|---:|")
    for variant in VARIANTS:
        eager = load_movenet(variant, device="cpu")
        frozen = load_movenet(variant, device="cpu").freeze_for_cpu(runtime="torchscript")
        default = load_movenet(variant, device="cpu").freeze_for_cpu()  # what the pipeline runs on CPU
        sess = ort_session(eager, eager.input_size, threads)
        for b in BATCHES:
            x = torch.from_numpy(real_crops(eager.input_size, b))
            xf = x.float().numpy()
            runs = {"torch cpu, eager": lambda: eager(x), "torch cpu, frozen TorchScript": lambda: frozen(x),
                    "onnxruntime heads + torch decode (default)": lambda: default(x)}
            if sess is not None:
                runs["onnxruntime cpu (same model)"] = lambda: sess.run(None, {"input": xf})
            with torch.inference_mode():
                ms = time_interleaved(runs, repeats, timer)
            for name, v in ms.items():
                r = f"{v / ms['onnxruntime cpu (same model)']:.2f}" if sess is not None and "same model" not in name else ""
                print(f"| {variant} | {name} | {b} | {v:.1f} | {v / b:.2f} | {r} |", flush=True)
        if torch.cuda.is_available():
            gpu = load_movenet(variant, device="cuda")
            for b in BATCHES:
                x = torch.from_numpy(real_crops(gpu.input_size, b)).cuda()

                def run():
                    gpu(x)
                    torch.cuda.synchronize()
                with torch.inference_mode():
                    v = time_interleaved({"cuda": run}, repeats)["cuda"]
                print(f"| {variant} | torch {torch.cuda.get_device_name()} | {b} | {v:.1f} | {v / b:.2f} | |", flush=True)
        if reference:
            v = tfjs_ms(variant, real_crops(VARIANTS_SIZE[variant], 1)[0])
            if v is not None:
                print(f"| {variant} | tfjs in node (pure JS, reference) | 1 | {v:.0f} | {v:.0f} | |", flush=True)
    if sess is None:
        print("\n(onnxruntime not importable: `pip install --target DIR onnxruntime onnx` and pass "
              "--ort-site DIR to compare with it)")


# -- accuracy ---------------------------------------------------------------------------------
# ``detector`` below: None (ground-truth boxes), a callable image -> boxes (our Detector), or a
# dict image path -> (N, 5) xyxy+score boxes (a detections file, see ``detections_file``).

def _boxes(detector, image: np.ndarray, path: Path):
    return detector.get(path, np.zeros((0, 5))) if isinstance(detector, dict) else detector(image)


def detections_file(path: Path, images: dict[int, Path], min_score: float = 0.0) -> dict[Path, np.ndarray]:
    """A COCO results list of person boxes -> {image path: (N, 5) xyxy+score}; ``images``: id -> path."""
    out: dict[Path, list] = {p: [] for p in images.values()}
    for d in json.loads(Path(path).read_text()):
        if d.get("category_id", 1) == 1 and d["score"] >= min_score and d["image_id"] in images:
            x, y, w, h = d["bbox"]
            out[images[d["image_id"]]].append([x, y, x + w, y + h, d["score"]])
    return {p: np.array(b, np.float64).reshape(-1, 5) for p, b in out.items()}


def coco_scores(est: TopDownPoseEstimator, detector=None) -> tuple[float, float]:
    """(COCO keypoint AP in %, PCK@0.2 in %); PCK only with GT boxes (NaN with a detector)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root = DATA / "mmpose" / "coco"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(root / "test_coco.json"))
    results, hits = [], []
    for img_id in gt.getImgIds():
        path = root / gt.loadImgs(img_id)[0]["file_name"]
        image = read_image(path)
        anns = gt.loadAnns(gt.getAnnIds(imgIds=img_id, iscrowd=False))
        if detector is None:
            boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns])
        else:
            boxes = _boxes(detector, image, path)
        poses = est(image, boxes)
        for kp, score in zip(poses.keypoints, poses.scores):
            results.append(dict(image_id=img_id, category_id=1, keypoints=kp.ravel().tolist(), score=float(score)))
        if detector is None:
            for a, kp in zip(anns, poses.keypoints):
                g = np.array(a["keypoints"], np.float64).reshape(17, 3)
                vis = g[:, 2] > 0
                d = np.linalg.norm(kp[vis, :2] - g[vis, :2], axis=1)
                hits += list(d < 0.2 * max(a["bbox"][2], a["bbox"][3]))
    if not results:
        return 0.0, float("nan")
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100 * float(ev.stats[0]), (100 * float(np.mean(hits)) if hits else float("nan"))


def posetrack_map(est: TopDownPoseEstimator, detector=None) -> float:
    from corrtrack.eval.posetrack import evaluate
    from corrtrack.io.posetrack import read_posetrack_dir

    root = DATA / "mmpose" / "posetrack18"
    gts = read_posetrack_dir(root / "annotations" / "val")
    preds = []
    for seq in gts:
        out = []
        for frame, gt in seq:
            image = read_image(root / frame.file_name)
            boxes = gt.boxes if detector is None else _boxes(detector, image, root / frame.file_name)
            out.append(est(image, boxes).to_layout(POSETRACK18))
        preds.append(PoseSequence(seq.name, seq.frames, out))
    return evaluate(gts, preds, tracking=False).ap.mAP


def bench_accuracy() -> None:
    from corrtrack.pipeline.detector import Detector, DetectorConfig

    torch.set_num_threads(2)
    detector = Detector()
    threshold_only = Detector(DetectorConfig(candidate_threshold=None), model=detector.model)
    print("\n## MoveNet accuracy on the real annotated images (crop: 3:4, padding 1.25)\n")
    print("| model | boxes | COCO OKS-AP (4 img, 14 people) | COCO PCK@0.2 | PoseTrack18 mAP (3 frames, 14 people) |")
    print("|---|---|---:|---:|---:|")
    for variant in VARIANTS:
        est = TopDownPoseEstimator(PoseConfig(model=variant), device="cpu")
        for name, det in (("ground truth", None), ("NanoDet + pose-verified candidates (default)", detector),
                          ("NanoDet, score threshold only", threshold_only)):
            ap, pck = coco_scores(est, det)
            pt = posetrack_map(est, det)
            pck_s = f"{pck:.1f}" if not np.isnan(pck) else "–"
            print(f"| {variant} | {name} | {ap:.1f} | {pck_s} | {pt:.1f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch and onnxruntime")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or this process's CPU time (steadier on a shared machine)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-reference", action="store_true", help="do not time the TF.js reference in node")
    ap.add_argument("--ort-site", help="folder holding onnxruntime + onnx (pip install --target), appended to "
                    "sys.path: times our model exported to ONNX in onnxruntime, side by side")
    args = ap.parse_args()
    if args.ort_site:
        sys.path.append(args.ort_site)
    if not DATA.is_dir():
        sys.exit(f"bench_pose: real data folder {DATA} not found (set CORRTRACK_SHARED)")
    if not args.skip_speed:
        bench_speed(args.repeats, not args.skip_reference, args.threads, args.clock)
    if not args.skip_accuracy:
        bench_accuracy()


if __name__ == "__main__":
    main()
