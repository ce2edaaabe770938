"""The frozen CPU path must compute what the eager module computes, and step aside when it can't."""
import warnings

import pytest
import torch
from torch import nn

from corrtrack.models import frozen
from corrtrack.models.frozen import FrozenCPU, _OnnxCall
from corrtrack.models.movenet import MoveNet


RUNTIMES = ["torchscript", pytest.param("onnx", marks=pytest.mark.skipif(not frozen.onnx_available(),
                                                                        reason="onnxruntime not installed"))]


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, groups=8),
                         nn.Hardtanh(0.0, 6.0), nn.Conv2d(8, 4, 1)).eval()


def test_same_outputs_and_one_trace_per_shape():
    net = small_net()
    fast = FrozenCPU(net, max_shapes=2, batch_generic=True)
    with torch.inference_mode():
        for shape in [(1, 3, 16, 16), (3, 3, 16, 16), (2, 3, 20, 12), (1, 3, 24, 24)]:
            x = torch.randn(shape)
            torch.testing.assert_close(fast(x), net(x), atol=1e-5, rtol=1e-4)
    # batch size is not part of the key; the oldest shape was dropped (LRU of 2)
    assert [k[0][0] for k in fast._traces] == [(3, 20, 12), (3, 24, 24)]
    assert all(isinstance(t, torch.jit.ScriptModule) for t in fast._traces.values())


def test_batch_size_is_part_of_the_key_by_default():
    class CountsRows(nn.Module):
        def forward(self, x):
            return x * 0 + len(x)  # len(x) is a Python int: a trace bakes it in

    fast = FrozenCPU(CountsRows().eval())
    with torch.no_grad():
        assert fast(torch.ones(1, 2)).max() == 1 and fast(torch.ones(3, 2)).max() == 3
    assert len(fast._traces) == 2


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_nanodet_frozen_matches_eager_across_batch_sizes(runtime):
    from corrtrack.models.nanodet import NanoDet
    from corrtrack.pipeline.detector import Detector

    torch.manual_seed(2)
    net = NanoDet().eval()
    x = torch.rand(3, 3, 64, 96)
    fast = Detector(device="cpu", model=net, runtime=runtime)._network  # as the pipeline builds it
    with torch.inference_mode():
        eager = net(x)
        fast(x[:1])
        frozen = fast(x)
    for a, b in zip(frozen, eager):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
    (trace,) = fast._traces.values()  # one for every batch size
    assert isinstance(trace, _OnnxCall if runtime == "onnx" else torch.jit.ScriptModule)


def test_eager_when_training_or_grad_or_disabled():
    net = small_net()
    x = torch.randn(1, 3, 8, 8)
    fast = FrozenCPU(net)
    y = fast(x)  # autograd on: eager, differentiable
    assert y.requires_grad and not fast._traces
    net.train()
    with torch.no_grad():
        fast(x)
    assert not fast._traces
    net.eval()
    off = FrozenCPU(net, enabled=False)
    with torch.no_grad():
        off(x)
    assert not off._traces


def test_untraceable_module_falls_back_with_a_warning():
    class Odd(nn.Module):
        def forward(self, x):
            return {"sum": x.sum().item()}  # a Python float: not traceable

    fast = FrozenCPU(Odd().eval())
    with torch.no_grad(), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fast(torch.ones(1, 2))
        out2 = fast(torch.ones(1, 2))  # no second attempt, no second warning
    assert out == out2 == {"sum": 2.0}
    assert len([m for m in w if "no frozen CPU path" in str(m.message)]) == 1


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("variant", ["lightning", "thunder"])
def test_movenet_frozen_matches_eager(variant, runtime):
    torch.manual_seed(1)
    net = MoveNet(variant).eval()
    for p in net.parameters():  # random weights, scaled so activations stay in a sane range
        p.data.mul_(0.5)
    x = torch.randint(0, 256, (3, net.input_size, net.input_size, 3)).float()
    with torch.inference_mode():
        eager = net.maps(x)
        net.freeze_for_cpu(runtime=runtime)
        net.maps(x[:1])  # traced on one crop, then reused for three: batch-generic
        frozen = net.maps(x)
        (trace,) = net._network._traces.values()  # the frozen path ran, once
        assert isinstance(trace, _OnnxCall if runtime == "onnx" else torch.jit.ScriptModule)
    for k in eager:
        torch.testing.assert_close(frozen[k], eager[k], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_correspondence_features_frozen_match_eager_and_training_stays_eager(runtime):
    from corrtrack.models.corrnet import CorrespondenceNet, CorrNetConfig

    torch.manual_seed(3)
    net = CorrespondenceNet(CorrNetConfig(pretrained=False)).eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.inference_mode():
        eager = net.features(x)
        net.freeze_for_cpu(runtime=runtime)
        frozen = net.features(x)
        # the ONNX export must leave the network in eval mode, or every later call would run eager
        assert not net.training
        net.features(x)
    (trace,) = net._features._traces.values()
    assert isinstance(trace, _OnnxCall if runtime == "onnx" else torch.jit.ScriptModule)
    torch.testing.assert_close(frozen, eager, atol=1e-4, rtol=1e-3)
    net.train()
    assert net.features(x).requires_grad  # training gets the differentiable eager branch


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_correspondence_refinement_frozen_matches_eager_for_any_number_of_persons(runtime):
    import torch.nn.functional as F

    from corrtrack.models.corrnet import CorrespondenceNet, CorrNetConfig

    torch.manual_seed(4)
    net = CorrespondenceNet(CorrNetConfig(pretrained=False)).eval()
    with torch.no_grad():  # random head weights: the residual init would hide a wrong encoder path
        net.refinement.head.weight.normal_(0, 0.3)
        net.refinement.head.bias.normal_(0, 0.3)
    f1 = F.normalize(torch.randn(1, 32, 24, 32), dim=1)
    f2 = F.normalize(torch.randn(1, 32, 24, 32), dim=1)
    maps = torch.softmax(torch.randn(1, 5, 17, 24 * 32) * 3, -1).reshape(1, 5, 17, 24, 32)
    with torch.inference_mode():
        eager = net.refine(f1, f2, maps)
        net.freeze_for_cpu(runtime=runtime)
        for p in (2, 5, 1):  # one trace (made at 2 persons) serves every count
            torch.testing.assert_close(net.refine(f1, f2, maps[:, :p]), eager[:, :p], atol=1e-5, rtol=1e-4)
    (trace,) = net._refined_persons._traces.values()
    assert isinstance(trace, _OnnxCall if runtime == "onnx" else torch.jit.ScriptModule)


@pytest.mark.skipif(not frozen.onnx_available(), reason="onnxruntime not installed")
def test_onnx_runtime_matches_eager_one_session_per_shape():
    net = small_net()
    fast = FrozenCPU(net, batch_generic=True, runtime="onnx")
    with torch.inference_mode():
        for shape in [(1, 3, 16, 16), (4, 3, 16, 16), (2, 3, 20, 12)]:
            x = torch.randn(shape)
            torch.testing.assert_close(fast(x), net(x), atol=1e-5, rtol=1e-4)
    assert [k[0][0] for k in fast._traces] == [(3, 16, 16), (3, 20, 12)]
    assert all(isinstance(t, _OnnxCall) for t in fast._traces.values())


class _IgnoresSecond(nn.Module):
    def forward(self, a, b):
        return a * 2


@pytest.mark.skipif(not frozen.onnx_available(), reason="onnxruntime not installed")
def test_onnx_runtime_runs_a_module_that_ignores_an_input():
    # the exporter drops such an input from the graph; feeding it anyway made ORT refuse the call
    fast = FrozenCPU(_IgnoresSecond().eval(), runtime="onnx")
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(fast(a, b), a * 2)
    assert isinstance(next(iter(fast._traces.values())), _OnnxCall)


def test_build_parts_runs_every_network_on_the_run_s_cpu_runtime(monkeypatch):
    from corrtrack.pipeline import detector, pose
    from corrtrack.pipeline.run import RunConfig, build_parts
    from corrtrack.pipeline.tracker import TrackerConfig

    seen = {}
    monkeypatch.setattr(detector, "Detector", lambda *a, runtime, **k: seen.setdefault("detect", runtime))
    monkeypatch.setattr(pose, "TopDownPoseEstimator", lambda *a, runtime, **k: seen.setdefault("estimate", runtime))
    parts = build_parts(RunConfig(cpu_runtime="torchscript", device="cpu"))
    assert seen == {"detect": "torchscript", "estimate": "torchscript"}
    assert parts.correspond.net._features.runtime == "torchscript"
    seen.clear()
    build_parts(RunConfig(tracker=TrackerConfig(similarity="oks"), device="cpu"))
    assert seen == {"detect": "onnx", "estimate": "onnx"}  # the default


def test_onnx_runtime_falls_back_to_torchscript_without_onnxruntime(monkeypatch):
    monkeypatch.setattr(frozen, "onnx_available", lambda: False)
    assert frozen.effective_runtime("onnx") == "torchscript"
    net = small_net()
    fast = FrozenCPU(net, runtime="onnx")
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), atol=1e-5, rtol=1e-4)
    assert isinstance(next(iter(fast._traces.values())), torch.jit.ScriptModule)
    with pytest.raises(ValueError, match="runtime"):
        FrozenCPU(net, runtime="tensorrt")


@pytest.mark.skipif(not frozen.onnx_available(), reason="onnxruntime not installed")
def test_onnx_export_that_disagrees_with_eager_falls_back(monkeypatch):
    net = small_net()
    monkeypatch.setattr(_OnnxCall, "ATOL", -1.0)  # no output can be within a negative tolerance
    fast = FrozenCPU(net, runtime="onnx")
    with torch.no_grad(), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fast(torch.randn(1, 3, 8, 8))
    assert isinstance(next(iter(fast._traces.values())), torch.jit.ScriptModule)
    assert any("no ONNX Runtime path" in str(m.message) for m in w)


@pytest.mark.parametrize("runtime", ["onnx", "torchscript"])
def test_corr_propagator_runs_the_shipped_net_on_the_chosen_runtime(runtime):
    from corrtrack.pipeline.run import CorrPropagator

    net = CorrPropagator.load(device="cpu", runtime=runtime).net
    assert net._features.runtime == net._refined_persons.runtime == runtime


def test_corr_propagator_input_size_sets_the_canvas():
    from corrtrack.errors import CorrtrackError
    from corrtrack.pipeline.run import CorrPropagator

    prop = CorrPropagator.load(device="cpu", runtime="torchscript", input_size=384)
    assert prop.net.config.input_size == 384 and not prop.net.config.square
    assert prop.net.letterbox(768, 576).canvas_w == 384  # fitted to 4:3: 384 x 288
    assert CorrPropagator.load(device="cpu", runtime="torchscript").net.config.input_size == 512
    with pytest.raises(CorrtrackError, match="multiple of 32"):
        CorrPropagator.load(device="cpu", input_size=400)
