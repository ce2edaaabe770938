"""torchrun data parallelism of the training loops, on CPU (gloo): two processes train one model.

GPUs use the same code with NCCL (corrtrack/train/common.py); none is needed here.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_train_pose import _coco  # noqa: E402  (the tiny generated COCO set of the unit tests)


def test_train_pose_under_torchrun_with_two_processes(tmp_path):
    import torch

    from corrtrack.models.posenet import PoseNet

    ann, img = _coco(tmp_path, n_images=4)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "corrtrack", "train", "pose", "-a", str(ann), "-i", str(img), "-o", str(out),
           "--width", "0.125", "--input-width", "64", "--input-height", "96", "--steps", "4",
           "--batch-size", "2", "--device", "cpu", "--workers", "0", "--checkpoint-every", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    net = PoseNet.load(out / "posenet.pt")
    assert net.meta["batch_size"] == 4  # 2 processes x 2 crops: one global batch
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 4
    assert (out / "metrics.csv").read_text().count("\n") >= 2
