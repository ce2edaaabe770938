"""The residual refinement module: starts as the Siamese map, learns only a correction (random weights)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from corrtrack.errors import CorrtrackError
from corrtrack.models.corr_codec import decode_maps
from corrtrack.models.corrnet import CorrespondenceNet, CorrNetConfig
from corrtrack.train.corr import init_siamese

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = CorrNetConfig(input_size=128, pretrained=False)



def _inputs(seed=0, persons=2):
    torch.manual_seed(seed)
    f1 = F.normalize(torch.randn(1, 32, 16, 16), dim=1)
    f2 = F.normalize(torch.randn(1, 32, 16, 16), dim=1)
    maps = torch.softmax(3 * torch.randn(1, persons, 17, 256), -1).reshape(1, persons, 17, 16, 16)
    maps[:, 0, 5] = 0  # a joint that was not propagated
    return f1, f2, maps


def test_untrained_residual_refinement_is_the_siamese_map():
    torch.manual_seed(0)
    net = CorrespondenceNet(TINY).eval()
    f1, f2, maps = _inputs()
    with torch.no_grad():
        refined = net.refine(f1, f2, maps)
    # sigmoid(log p) = p / (1 + p): the Siamese argmax, and its sub-cell peak to a few hundredths of a cell.
    torch.testing.assert_close(refined, maps / (1 + maps), atol=1e-6, rtol=1e-5)
    a, b = decode_maps(refined[0, 1]), decode_maps(maps[0, 1])
    torch.testing.assert_close(a[:, :2].floor(), b[:, :2].floor())
    torch.testing.assert_close(a[:, :2], b[:, :2], atol=0.03, rtol=0)
    assert float(refined[0, 0, 5].max()) < 1e-9  # an empty map stays empty


def test_refinement_learns_a_correction_on_top():
    torch.manual_seed(0)
    net = CorrespondenceNet(TINY)
    f1, f2, maps = _inputs(persons=1)
    target = torch.zeros_like(maps)
    target[..., 3, 4] = 1.0  # every joint should go to cell (4, 3), wherever its Siamese peak is
    opt = torch.optim.Adam(net.refinement_parameters(), lr=3e-2)
    net.refinement.train()
    for _ in range(60):
        loss = F.binary_cross_entropy_with_logits(net.refine_logits(f1, f2, maps), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        dec = decode_maps(net.refine(f1, f2, maps)[0, 0])
    ok = torch.ones(17, dtype=torch.bool)
    ok[5] = False
    assert ((dec[ok, :2].round() - torch.tensor([4.0, 3.0])).abs().sum(-1) == 0).float().mean() > 0.9


def test_old_non_residual_files_still_load(tmp_path):
    torch.manual_seed(0)
    old = CorrespondenceNet(dataclasses.replace(TINY, refine_residual=False)).eval()
    path = tmp_path / "old.pt"
    old.save(path)
    obj = torch.load(path, weights_only=True)
    del obj["config"]["refine_residual"]  # as written before the field existed
    torch.save(obj, path)
    back = CorrespondenceNet.load(path)
    assert back.config.refine_residual is False
    f1, f2, maps = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(back.refine(f1, f2, maps), old.refine(f1, f2, maps), atol=2e-2, rtol=0)


def test_init_siamese_copies_all_but_the_refinement(tmp_path):
    torch.manual_seed(1)
    src = CorrespondenceNet(TINY)
    src.save(tmp_path / "src.pt", half=False)
    torch.manual_seed(2)
    dst = CorrespondenceNet(TINY)
    ref_before = {k: v.clone() for k, v in dst.refinement.state_dict().items()}
    init_siamese(dst, tmp_path / "src.pt")
    for k, v in src.state_dict().items():
        if k.startswith("refinement."):
            torch.testing.assert_close(dst.state_dict()[k], ref_before[k.removeprefix("refinement.")])
        else:
            torch.testing.assert_close(dst.state_dict()[k], v)
    other = CorrespondenceNet(dataclasses.replace(TINY, feature_channels=16))
    with pytest.raises(CorrtrackError, match="src.pt"):
        init_siamese(other, tmp_path / "src.pt")
