"""``corrtrack data pseudolabel`` on real frames of vtest.avi: a COCO keypoint dataset that
``train corr`` reads, holding the walkers; bad inputs are one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from corrtrack.cli import app
from corrtrack.errors import CorrtrackError

pytestmark = pytest.mark.integration


def test_pseudolabel_vtest_frames(shared_data, tmp_path):
    from test_detector_real import VTEST_PEOPLE  # the hand-checked walkers

    from corrtrack.models.registry import weights_path
    from corrtrack.pipeline.detector import match_boxes
    from corrtrack.train.corr import read_coco_records

    missing = [m for m in ("nanodet", "movenet-thunder") if not weights_path(m).is_file()]
    if missing:
        pytest.skip(f"model weights not installed ({', '.join(missing)}): run `corrtrack models fetch`")
    out = tmp_path / "labels"
    res = CliRunner().invoke(app, ["data", "pseudolabel", str(shared_data / "opencv" / "vtest.avi"), "-o", str(out),
                                   "--every-n", "300", "--min-score", "0.3", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "annotations.json").read_text())
    frames = {im["frame_index"]: im for im in data["images"]}
    assert set(frames) <= {0, 300, 600} and 300 in frames  # every 300th frame of 795
    assert all(im["width"] == 768 and im["height"] == 576 for im in data["images"])
    people = [a for a in data["annotations"] if a["image_id"] == frames[300]["id"]]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in people)])
    assert (match_boxes(boxes, VTEST_PEOPLE[300]) >= 0).sum() >= 4, f"frame 300: {len(people)} people labelled"
    for a in data["annotations"]:
        kp = np.reshape(a["keypoints"], (17, 3))
        x, y, w, h = a["bbox"]
        labelled = kp[:, 2] == 2
        assert labelled.sum() == a["num_keypoints"] >= 6 and (kp[~labelled] == 0).all()
        # joints lie around their person (the crop is 1.25× the box), not somewhere else in the frame
        assert (np.abs(kp[labelled, 0] - (x + w / 2)) <= 0.75 * max(w, 0.75 * h)).all()
        assert (np.abs(kp[labelled, 1] - (y + h / 2)) <= 0.75 * max(h, w / 0.75)).all()
    records = read_coco_records(out / "annotations.json", out)  # what `train corr` reads
    assert len(records) == len(data["images"]) and all(r.path.is_file() for r in records)
    assert str(out) in res.output and f"{len(data['annotations'])} people" in res.output


@pytest.mark.parametrize("args,message", [
    (["{missing}"], "no such file"),
    (["{vtest}", "--every-n", "0"], "--every-n"),
    (["{vtest}", "--min-score", "1.5"], "--min-score"),
    (["{vtest}", "{missing}"], "no such file"),  # checked before anything is labelled
])
def test_pseudolabel_bad_inputs_are_one_line_errors(shared_data, tmp_path, args, message):
    subs = {"missing": str(tmp_path / "missing.mp4"), "vtest": str(shared_data / "opencv" / "vtest.avi")}
    res = CliRunner().invoke(app, ["data", "pseudolabel", *(a.format(**subs) for a in args), "-o",
                                   str(tmp_path / "out")])
    assert isinstance(res.exception, CorrtrackError), res.output
    assert message in str(res.exception) and "\n" not in str(res.exception)
    assert not (tmp_path / "out").exists()


def test_pseudolabel_output_must_be_a_folder(shared_data, tmp_path):
    file = tmp_path / "taken"
    file.write_text("x")
    res = CliRunner().invoke(app, ["data", "pseudolabel", str(shared_data / "opencv" / "vtest.avi"), "-o", str(file)])
    assert isinstance(res.exception, CorrtrackError) and "not a folder" in str(res.exception)
