"""Issue 4's figures in one place: NanoDet + MoveNet speed and accuracy on this machine.

    CORRTRACK_HOME=... .venv/bin/python benchmarks/bench_models.py [--repeats 15] [--no-write]

Prints, and writes as the section "Detector and pose models" of BENCHMARKS.md
(only between its ``<!-- models:start -->`` / ``<!-- models:end -->`` markers):

* detector: ms/frame on vtest.avi (768×576) and on a PoseTrack18 frame
  (1920×1080), for the graph's fixed 416 input, the default "auto" input size
  and "auto" on a canvas fitted to the frame; the people found (IoU >= 0.5,
  one-to-one) on vtest frames 300 and 360 (hand-drawn boxes of
  tests/integration/test_detector_real.py), the 3 PoseTrack18 frames (14
  people; GT ``bbox``) and the 4 COCO images (14 people; GT ``bbox``);
* MoveNet lightning / thunder: ms per person, batches of 1 and 12 real crops;
* pose accuracy, detector + lightning / thunder and ground-truth boxes:
  PoseTrack18 mAP (3 frames, ``corrtrack.eval``) and COCO OKS-AP (4 images,
  pycocotools), plus the boxes of the detections files that ship with the
  data (a strong detector's, all scores) for comparison.

Torch runs with 2 threads and OMP_WAIT_POLICY=PASSIVE. Times are medians and
minima of interleaved runs; the load average is printed, and when it is above
2 (2 cores) the table says that the CPU was shared and the times are noisy.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see bench_pose.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from bench_detector import test_frame  # noqa: E402
from bench_pose import (DATA, VARIANTS, coco_scores, detections_file, posetrack_map, real_crops,  # noqa: E402
                        times_interleaved)
from test_detector_real import VTEST_PEOPLE  # noqa: E402  (the hand-checked walkers)

from corrtrack.pipeline.detector import Detector, DetectorConfig, canvas_shape, match_boxes  # noqa: E402

SECTION = "Detector and pose models"
START, END = "<!-- models:start -->", "<!-- models:end -->"
POSE_BATCHES = (1, 12)
DETECTORS = {  # name -> config; the detector alone, at its score threshold (no pose to verify candidates)
    "416 (the graph's input)": DetectorConfig(input_size=416, candidate_threshold=None),
    "auto (default)": DetectorConfig(candidate_threshold=None),
    "auto, fitted canvas": DetectorConfig(square=False, candidate_threshold=None),
}


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- data -------------------------------------------------------------------------------------

def posetrack_frames() -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(path, image, GT boxes) of the 3 labelled PoseTrack18 frames."""
    from corrtrack.io.posetrack import read_posetrack_dir
    from corrtrack.io.video import read_image

    root = DATA / "mmpose" / "posetrack18"
    return [(root / frame.file_name, read_image(root / frame.file_name), gt.boxes)
            for seq in read_posetrack_dir(root / "annotations" / "val") for frame, gt in seq]


def coco_frames() -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(path, image, GT boxes) of the 4 COCO images (all 14 person annotations)."""
    import json

    from corrtrack.io.video import read_image

    root = DATA / "mmpose" / "coco"
    data = json.loads((root / "test_coco.json").read_text())
    out = []
    for img in data["images"]:
        boxes = [[x, y, x + w, y + h] for a in data["annotations"] if a["image_id"] == img["id"]
                 for x, y, w, h in [a["bbox"]]]
        path = root / img["file_name"]
        out.append((path, read_image(path), np.array(boxes, np.float64).reshape(-1, 4)))
    return out


def reference_detections() -> dict[Path, np.ndarray]:
    """The detections files shipped with the data, all scores: {image path: (N, 5) xyxy+score}."""
    import json

    out = {}
    for root, gt_file, det_file in (
            (DATA / "mmpose" / "posetrack18", "annotations/test_posetrack18_val.json",
             "annotations/test_posetrack18_human_detections.json"),
            (DATA / "mmpose" / "coco", "test_coco.json", "test_coco_det_AP_H_56.json")):
        images = {im["id"]: root / im["file_name"] for im in json.loads((root / gt_file).read_text())["images"]}
        out.update(detections_file(root / det_file, images))
    return out


def found(boxes_of, frames) -> tuple[int, int, int]:
    """(people found, people, boxes) over ``frames`` of (path, image, GT boxes);
    ``boxes_of(path, image)`` -> (N, 4)."""
    hits = people = dets = 0
    for path, image, truth in frames:
        boxes = boxes_of(path, image)
        hits += int((match_boxes(boxes, truth) >= 0).sum())
        people += len(truth)
        dets += len(boxes)
    return hits, people, dets


# -- benchmarks ---------------------------------------------------------------------------------

def bench_detector(repeats: int, model) -> list[list[str]]:
    vtest = {i: test_frame(DATA / "opencv" / "vtest.avi", i) for i in sorted(VTEST_PEOPLE)}
    pt, coco = posetrack_frames(), coco_frames()
    dets = {name: Detector(cfg, device="cpu", model=model) for name, cfg in DETECTORS.items()}
    runs = {}
    for name, det in dets.items():  # all contenders interleaved: load bursts hit them alike
        runs[name, "vtest"] = lambda d=det: d(vtest[360])
        runs[name, "pt"] = lambda d=det: d(pt[0][1])
    with torch.inference_mode():
        times = times_interleaved(runs, repeats)
    rows = []
    for name, cfg in DETECTORS.items():
        det = dets[name]
        t = {what: times[name, what] for what in ("vtest", "pt")}
        walkers = []
        for i, image in vtest.items():
            boxes = det(image).boxes
            hit = int((match_boxes(boxes, VTEST_PEOPLE[i]) >= 0).sum())
            walkers.append(f"{hit}/{len(VTEST_PEOPLE[i])}, {len(boxes) - hit} FP")
        canvases = [canvas_shape(w, h, cfg) for w, h in ((768, 576), (1920, 1080))]
        pt_hit, pt_n, pt_boxes = found(lambda _, im, d=det: d(im).boxes, pt)
        co_hit, co_n, co_boxes = found(lambda _, im, d=det: d(im).boxes, coco)
        rows.append([name, " / ".join(f"{w}×{h}" for h, w in canvases),
                     f"{np.median(t['vtest']):.0f} ({min(t['vtest']):.0f})",
                     f"{np.median(t['pt']):.0f} ({min(t['pt']):.0f})", "; ".join(walkers),
                     f"{pt_hit}/{pt_n} ({pt_boxes})", f"{co_hit}/{co_n} ({co_boxes})"])
        print("  " + " | ".join(rows[-1]), flush=True)
    ref = reference_detections()
    for thr in (0.5, 0.3):
        cells = []
        for frames in (pt, coco):
            hit, n, nb = found(lambda path, _, t=thr: ref[path][ref[path][:, 4] >= t, :4], frames)
            cells.append(f"{hit}/{n} ({nb})")
        rows.append([f"detections files, score ≥ {thr}", "–", "–", "–", "–", *cells])
    return rows


def bench_pose_speed(repeats: int) -> list[list[str]]:
    from corrtrack.models.movenet import load_movenet

    models = {v: load_movenet(v, device="cpu").freeze_for_cpu() for v in VARIANTS}  # as the pipeline runs them
    runs = {(v, b): (lambda x=torch.from_numpy(real_crops(m.input_size, b)), m=m: m(x))
            for v, m in models.items() for b in POSE_BATCHES}
    with torch.inference_mode():
        t = times_interleaved(runs, repeats)
    rows = []
    for v, m in models.items():
        rows.append([v, f"{m.input_size}×{m.input_size}",
                     *(f"{np.median(t[v, b]) / b:.1f} ({min(t[v, b]) / b:.1f})" for b in POSE_BATCHES)])
        print("  " + " | ".join(rows[-1]), flush=True)
    return rows


def bench_accuracy(model) -> list[list[str]]:
    from corrtrack.pipeline.pose import PoseConfig, TopDownPoseEstimator

    boxes = {"ground truth": None}
    boxes.update({f"NanoDet {name.replace(' (default)', '')}, score threshold only": Detector(cfg, device="cpu",
                                                                                               model=model)
                  for name, cfg in DETECTORS.items() if "fitted" not in name})
    # what detect + pose does by default: low-score candidates kept where the pose is confident
    boxes["NanoDet auto + pose-verified candidates (default)"] = Detector(DetectorConfig(), device="cpu", model=model)
    boxes["detections files (all scores)"] = reference_detections()
    ests = {v: TopDownPoseEstimator(PoseConfig(model=v), device="cpu") for v in VARIANTS}
    rows = []
    for name, det in boxes.items():
        row = [name]
        for est in ests.values():
            row += [f"{posetrack_map(est, det):.1f}", f"{coco_scores(est, det)[0]:.1f}"]
        rows.append(row)
        print("  " + " | ".join(rows[-1]), flush=True)
    return rows


# -- output -------------------------------------------------------------------------------------

def table(header: list[str], rows: list[list[str]], right_from: int = 1) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, align, *rows])


def write_section(md_path: Path, body: str) -> None:
    """Replace what lies between the markers (or append the section), atomically; the rest of the
    file (other helpers' sections) is kept as it is on disk right now."""
    from corrtrack.io.atomic import atomic_open

    text = md_path.read_text(encoding="utf-8") if md_path.exists() else "# Benchmarks\n"
    block = f"{START}\n{body.strip()}\n{END}"
    # The "## " title stays outside the markers: a section writer that replaces up to the next
    # "## " heading then never eats our markers.
    pat = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if pat.search(text):
        text = pat.sub(lambda _: block, text)
    else:
        text = text.rstrip() + f"\n\n## {SECTION}\n\n{block}\n"
    with atomic_open(md_path, "w", encoding="utf-8") as f:
        f.write(text.rstrip() + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15, help="timed runs per contender")
    ap.add_argument("--no-write", action="store_true", help="only print; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"bench_models: real data folder {DATA} not found (set CORRTRACK_SHARED)")
    from corrtrack.errors import CorrtrackError
    from corrtrack.models.registry import load_model

    torch.set_num_threads(2)
    try:
        model = load_model("nanodet", "cpu")
    except CorrtrackError as e:
        sys.exit(f"bench_models: {e}")
    load_start, t0 = load_text(), time.time()
    print(f"load average at start: {load_start}")
    print("\ndetector:")
    det_rows = bench_detector(args.repeats, model)
    print("\nMoveNet speed:")
    pose_rows = bench_pose_speed(args.repeats)
    print("\naccuracy:")
    acc_rows = bench_accuracy(model)
    load_end = load_text()
    noisy = max(os.getloadavg()[0], float(load_start.split(" / ")[0])) > 2
    cmd = "python benchmarks/bench_models.py" + "".join(f" {a}" for a in sys.argv[1:])
    body = "\n".join([
        f"* Date {time.strftime('%Y-%m-%d')}; {cpu_name()}, {os.cpu_count()} CPUs; torch {torch.__version__} "
        f"on CPU, 2 threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; command: `{cmd}` "
        f"({time.time() - t0:.0f} s).",
        f"* Load average (1 / 5 / 15 min) at start {load_start}, at end {load_end}."
        + (" **The CPU was shared with other processes (load > 2 on 2 cores): times are noisy; the "
           "minimum (in brackets) is closer to the uncontended cost than the median.**" if noisy else ""),
        "* Found: one-to-one matches with IoU ≥ 0.5 to the ground-truth boxes (PoseTrack: the files' `bbox`, "
        "the keypoints' extent grown by 30%; COCO: the annotations' `bbox`, all 14 including 2 without "
        "keypoints; vtest: the hand-checked walkers of tests/integration/test_detector_real.py); (N) = boxes "
        "output. The detections files are the (much larger) detector's boxes shipped with the test data.",
        "",
        "**NanoDet-m person detector** (score ≥ 0.4; ms/frame median (min), the whole `Detector` call)",
        "",
        table(["input size", "canvas vtest / 1080p", "vtest 768×576 ms", "PoseTrack 1920×1080 ms",
               "vtest frames 300; 360", "PoseTrack18 found (3 frames)", "COCO found (4 images)"], det_rows),
        "",
        "**MoveNet top-down pose, ms per person** (batched real crops, the CPU path the pipeline runs (corrtrack.models.frozen), "
        "median (min))",
        "",
        table(["model", "input", *(f"batch {b}" for b in POSE_BATCHES)], pose_rows),
        "",
        "**Pose accuracy** (PoseTrack18 val mAP, 3 labelled frames, 14 people, `corrtrack.eval`; COCO "
        "keypoint OKS-AP, 4 images, 14 people, pycocotools; crop 3:4, padding 1.25; person score = box "
        "score × mean joint score)",
        "",
        table(["boxes", "lightning PoseTrack mAP", "lightning COCO AP", "thunder PoseTrack mAP",
               "thunder COCO AP"], acc_rows),
    ])
    print("\n" + body)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", body)
        print(f"\nwrote section '{SECTION}' of {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
