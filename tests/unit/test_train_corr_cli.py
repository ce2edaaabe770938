"""``corrtrack train corr --init-from / --refine-sigma / --refine-channels``: the options reach the
training config and the run starts from the given model's Siamese weights (tiny images, a few steps, CPU)."""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from corrtrack.cli import app
from corrtrack.errors import CorrtrackError
from corrtrack.models.corrnet import CorrespondenceNet, CorrNetConfig
from test_train_corr import _make_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _saved_model(path, seed):
    torch.manual_seed(seed)
    net = CorrespondenceNet(CorrNetConfig(input_size=64, pretrained=False))
    with torch.no_grad():
        for p in net.parameters():  # not the fresh-init values: a copied weight must be recognisable
            p.add_(torch.randn_like(p) * 0.1)
    net.save(path)
    return CorrespondenceNet.load(path).state_dict()


def _train(tmp_path, ann, img, out, *extra):
    args = ["train", "corr", "-a", str(ann), "-i", str(img), "-o", str(tmp_path / out), "--input-size", "64",
            "--steps-siamese", "0", "--steps-refine", "2", "--batch-size", "2", "--workers", "0",
            "--device", "cpu", "--seed", "1", *extra]
    return CliRunner().invoke(app, args)


def _siamese(state):
    return {k: v for k, v in state.items() if not k.startswith("refinement.")}


def test_init_from_and_refine_sigma_reach_the_run(tmp_path):
    ann, img = _make_dataset(tmp_path)
    init_a = _saved_model(tmp_path / "a.pt", 1)
    init_b = _saved_model(tmp_path / "b.pt", 2)
    res = _train(tmp_path, ann, img, "run_a", "--init-from", str(tmp_path / "a.pt"), "--refine-sigma", "2.5")
    assert res.exit_code == 0, res.output
    ck = torch.load(tmp_path / "run_a" / "checkpoint.pt", weights_only=False)
    assert ck["config"]["refine_sigma"] == 2.5 and ck["config"]["init_from"] == str(tmp_path / "a.pt")
    assert ck["config"]["net"]["pretrained"] is False  # the copied weights replace ImageNet's anyway
    out_a = CorrespondenceNet.load(tmp_path / "run_a" / "corrnet.pt").state_dict()
    # Siamese stage of 0 steps, frozen during the refinement: the result holds the given weights exactly,
    # and not those of another file (so the comparison can fail).
    for k, v in _siamese(init_a).items():
        assert torch.equal(out_a[k], v), k
    assert any(not torch.equal(out_a[k], init_b[k]) for k in _siamese(init_b))
    # The refinement is new (trained from its own initialisation), not the file's.
    assert not torch.equal(out_a["refinement.pair_in.weight"], init_a["refinement.pair_in.weight"])

    res = _train(tmp_path, ann, img, "run_b", "--init-from", str(tmp_path / "b.pt"))
    assert res.exit_code == 0, res.output
    ck = torch.load(tmp_path / "run_b" / "checkpoint.pt", weights_only=False)
    assert ck["config"]["refine_sigma"] == 1.0  # the default
    out_b = CorrespondenceNet.load(tmp_path / "run_b" / "corrnet.pt").state_dict()
    assert all(torch.equal(out_b[k], v) for k, v in _siamese(init_b).items())


def test_refine_channels_widens_only_the_refinement(tmp_path):
    ann, img = _make_dataset(tmp_path)
    init = _saved_model(tmp_path / "a.pt", 1)  # a 32-channel refinement: only its Siamese part is copied
    res = _train(tmp_path, ann, img, "wide", "--init-from", str(tmp_path / "a.pt"), "--refine-channels", "48")
    assert res.exit_code == 0, res.output
    net = CorrespondenceNet.load(tmp_path / "wide" / "corrnet.pt")
    assert net.config.refine_channels == 48
    state = net.state_dict()
    assert state["refinement.pair_in.weight"].shape[0] == 48 and init["refinement.pair_in.weight"].shape[0] == 32
    assert all(torch.equal(state[k], v) for k, v in _siamese(init).items())


def test_bad_options_are_one_line_errors(tmp_path):
    ann, img = _make_dataset(tmp_path)
    res = _train(tmp_path, ann, img, "x", "--init-from", str(tmp_path / "missing.pt"))
    assert isinstance(res.exception, CorrtrackError) and "missing.pt" in str(res.exception)
    res = _train(tmp_path, ann, img, "x", "--refine-sigma", "0")
    assert isinstance(res.exception, CorrtrackError) and "--refine-sigma" in str(res.exception)


@pytest.mark.parametrize("option", ["--occlude-prob", "--distract-prob"])
def test_augmentation_probs_reach_the_run(tmp_path, option):
    ann, img = _make_dataset(tmp_path)
    res = _train(tmp_path, ann, img, "run", option, "0.4")
    assert res.exit_code == 0, res.output
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["config"][option[2:].replace("-", "_")] == 0.4
    res = _train(tmp_path, ann, img, "run2", option, "1.5")
    assert res.exit_code != 0 and option in res.output


def test_refine_prior_reaches_the_model(tmp_path):
    ann, img = _make_dataset(tmp_path)
    res = _train(tmp_path, ann, img, "prior", "--refine-prior", "--refine-prior-motion", "affine")
    assert res.exit_code == 0, res.output
    net = CorrespondenceNet.load(tmp_path / "prior" / "corrnet.pt")
    assert net.config.refine_prior is True and net.refinement.prior_log_sigma.shape == (17,)
    assert net.config.refine_prior_motion == "affine"
    res = _train(tmp_path, ann, img, "bad", "--refine-prior", "--refine-prior-motion", "spline")
    assert isinstance(res.exception, CorrtrackError) and "refine_prior_motion" in str(res.exception)
    res = _train(tmp_path, ann, img, "plain")
    assert res.exit_code == 0, res.output
    assert CorrespondenceNet.load(tmp_path / "plain" / "corrnet.pt").config.refine_prior is False
