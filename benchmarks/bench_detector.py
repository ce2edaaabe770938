"""Detector speed: ms/frame of our PyTorch NanoDet at 416×416, and of the same
network exported to ONNX and run by onnxruntime (the reference runtime).

    .venv/bin/python benchmarks/bench_detector.py [--threads 2] [--runs 30]

onnxruntime and onnx are used only here, not by corrtrack: install them into
the venv for this script (``pip install onnxruntime onnx``); without them the
onnxruntime rows are skipped. Rows:

- network: the forward pass alone on a letterboxed vtest.avi frame (batch 1): eager
  NCHW, eager channels-last, and the frozen TorchScript trace the Detector runs on CPU
- detector: ``Detector.detect`` on the 768×576 frame — letterbox, network,
  decode, NMS, boxes mapped back (what a user pays per frame)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
VTEST = ROOT.parent / "shared" / "data" / "opencv" / "vtest.avi"


CLOCK = time.perf_counter  # --clock cpu: time.process_time (this process's CPU time, steadier when shared)


def timeit(fn, runs: int, warmup: int = 3) -> tuple[float, float]:
    """Median and minimum wall time of ``fn()`` in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = CLOCK()
        fn()
        times.append((CLOCK() - t0) * 1000)
    return statistics.median(times), min(times)


def test_frame(video: Path, index: int = 360) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = cap.read()
    cap.release()
    if not ok:
        sys.exit(f"cannot read frame {index} of {video}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch and onnxruntime")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or this process's CPU time (steadier when other jobs share the machine)")
    ap.add_argument("--video", type=Path, default=VTEST, help="vtest.avi (frame 360 is used)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time

    from corrtrack.models.registry import load_model
    from corrtrack.pipeline.detector import Detector, letterbox_image

    frame = test_frame(args.video)
    canvas, _ = letterbox_image(frame, 416)
    x = torch.from_numpy(np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], np.float32) / 255)
    rows = []  # (runtime, what, device, median ms, min ms, note)

    model = load_model("nanodet", "cpu")
    with torch.inference_mode():
        med, best = timeit(lambda: model(x), args.runs)
        rows.append(("torch", "network", "cpu", med, best, f"{args.threads} threads, NCHW"))
        cl = torch.channels_last
        fast = load_model("nanodet", "cpu").to(memory_format=cl)
        xcl = x.contiguous(memory_format=cl)
        med, best = timeit(lambda: fast(xcl), args.runs)
        rows.append(("torch", "network", "cpu", med, best, f"{args.threads} threads, channels_last"))
        from corrtrack.models.frozen import FrozenCPU

        frozen = FrozenCPU(fast, batch_generic=True, optimize=False)
        med, best = timeit(lambda: frozen(xcl), args.runs)
        rows.append(("torch", "network", "cpu", med, best,
                     f"{args.threads} threads, channels_last, frozen trace (as Detector on CPU)"))
        det = Detector(device="cpu", model=fast)
        n = len(det(frame))
        med, best = timeit(lambda: det(frame), args.runs)
        rows.append(("torch", "detector", "cpu", med, best, f"{n} people found"))
        if torch.cuda.is_available():
            gpu = load_model("nanodet", "cuda").to(memory_format=cl)
            xg = xcl.cuda()

            def run_gpu():
                gpu(xg)
                torch.cuda.synchronize()

            med, best = timeit(run_gpu, args.runs * 3, warmup=10)
            rows.append(("torch", "network", torch.cuda.get_device_name(), med, best, "batch 1"))
            xb = xg.repeat(16, 1, 1, 1).contiguous(memory_format=cl)

            def run_gpu_batch():
                gpu(xb)
                torch.cuda.synchronize()

            med, best = timeit(run_gpu_batch, args.runs, warmup=5)
            rows.append(("torch", "network", torch.cuda.get_device_name(), med / 16, best / 16,
                         "batch 16, per frame"))
            gdet = Detector(device="cuda", model=gpu)
            med, best = timeit(lambda: gdet(frame), args.runs * 3, warmup=10)
            rows.append(("torch", "detector", torch.cuda.get_device_name(), med, best, ""))

    try:
        import onnxruntime as ort
    except ImportError:
        rows.append(("onnxruntime", "network", "cpu", float("nan"), float("nan"),
                     "skipped: pip install onnxruntime onnx"))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "nanodet.onnx"
            try:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"],
                                      output_names=["scores", "boxes"], opset_version=17)
            except Exception as e:  # the exporter needs the `onnx` package
                rows.append(("onnxruntime", "network", "cpu", float("nan"), float("nan"),
                             f"skipped: ONNX export failed ({str(e).splitlines()[0][:60]})"))
            else:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = args.threads
                opts.inter_op_num_threads = 1
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                feed = {"input": x.numpy()}
                out = sess.run(None, feed)
                with torch.inference_mode():
                    ref = model(x)
                diff = max(float(np.abs(a - b.numpy()).max()) for a, b in zip(out, ref))
                med, best = timeit(lambda: sess.run(None, feed), args.runs)
                rows.append(("onnxruntime " + ort.__version__, "network", "cpu", med, best,
                             f"{args.threads} threads, max |diff| vs torch {diff:.1e}"))

    print(f"\nNanoDet 416x416, vtest.avi frame 360 (768x576), torch {torch.__version__}, "
          f"{args.runs} runs after warm-up, {args.clock} time, load average {os.getloadavg()[0]:.1f}\n")
    print(f"| {'runtime':<22} | {'what':<8} | {'device':<24} | {'median ms':>9} | {'min ms':>7} | note")
    print(f"|{'-' * 24}|{'-' * 10}|{'-' * 26}|{'-' * 11}|{'-' * 9}|------")
    for rt, what, dev, med, best, note in rows:
        print(f"| {rt:<22} | {what:<8} | {dev:<24} | {med:>9.1f} | {best:>7.1f} | {note}")
    cpu = {r[0].split()[0]: r[3] for r in rows if r[1] == "network" and r[2] == "cpu"}  # last torch row
    if np.isfinite(cpu.get("onnxruntime", np.nan)):
        print(f"\ntorch (frozen, as Detector) / onnxruntime (network, CPU): {cpu['torch'] / cpu['onnxruntime']:.2f}x")


if __name__ == "__main__":
    main()
