"""Batch-normalised GoogleNet (BN-Inception, Ioffe & Szegedy 2015), the paper's backbone.

The paper uses it "up to layer 17" (Siamese branch, pose stage 1) and "from
layer 3 till layer 17" (refinement, pose stage 2). Counting layers with weights
as GoogleNet does (conv1 = 1, conv2 reduce = 2, conv2 3x3 = 3, then two per
inception module: 3a = 4-5, 3b = 6-7, 4a = 8-9, ..., 4e = 16-17), layer 17 ends
inception 4e and layer 3 is the conv2 3x3 that takes stride-4 input - which
is why a second stage can start there. BN-Inception replaces GoogleNet's max
pool between 3b and 4a by the stride-2 module 3c; we keep it. So this is
conv1 ... inception_4e (total stride 32, 1056 channels).

No ImageNet weights for BN-Inception can be had here (the usual checkpoint is
downloaded from a model hub), so this backbone starts from random
initialisation unless a trained correspondence model is loaded.
"""
from __future__ import annotations

import torch
from torch import nn


def _cbr(cin: int, cout: int, k: int, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Inception(nn.Module):
    """One BN-Inception module: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool(-1x1).

    ``stride`` 2 modules (3c, 4e) drop the 1x1 branch and pass the max-pooled
    input through unchanged, as in the paper's Figure 5.
    """

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, cdr: int, cd: int, pool_proj: int, stride: int = 1):
        super().__init__()
        self.b1 = _cbr(cin, c1, 1) if c1 else None
        self.b3 = nn.Sequential(_cbr(cin, c3r, 1), _cbr(c3r, c3, 3, stride))
        self.bd = nn.Sequential(_cbr(cin, cdr, 1), _cbr(cdr, cd, 3), _cbr(cd, cd, 3, stride))
        if stride == 1:
            self.pool = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), _cbr(cin, pool_proj, 1))
        else:
            self.pool = nn.MaxPool2d(3, 2, 1)
        self.out_channels = (c1 or 0) + c3 + cd + (pool_proj if stride == 1 else cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.b1(x)] if self.b1 is not None else []
        return torch.cat(parts + [self.b3(x), self.bd(x), self.pool(x)], 1)


# name: (c1, 3x3 reduce, 3x3, double reduce, double 3x3, pool proj, stride)
_MODULES = (
    ("inception_3a", (64, 64, 64, 64, 96, 32, 1)),
    ("inception_3b", (64, 64, 96, 64, 96, 64, 1)),
    ("inception_3c", (0, 128, 160, 64, 96, 0, 2)),
    ("inception_4a", (224, 64, 96, 96, 128, 128, 1)),
    ("inception_4b", (192, 96, 128, 96, 128, 128, 1)),
    ("inception_4c", (160, 128, 160, 128, 160, 128, 1)),
    ("inception_4d", (96, 128, 192, 160, 192, 128, 1)),
    ("inception_4e", (0, 128, 192, 192, 256, 0, 2)),
)


def _scaled(c: int, width: float) -> int:
    return max(4, int(round(c * width))) if c else 0


class BNInception(nn.Module):
    """conv1 ... inception_4e. ``forward(x, taps)`` returns the named stages in ``taps``.

    Stage names and strides: conv2_reduce (64 ch, stride 4; layer 2), conv2 (192 ch, stride 4;
    layer 3), inception_3b (320, 8), inception_4d (608, 16), inception_4e (1056, 32), and every
    other module.

    ``first_layer=3`` builds "layers 3 to 17" (the paper's second pose stage and refinement
    module): no conv1 / pool1 / conv2_reduce; the input, ``in_channels`` maps at stride 4 of the
    image, goes straight into conv2. ``width`` scales every channel count (1.0 = BN-Inception;
    smaller values give the light variants used for CPU experiments and tests).
    """

    def __init__(self, in_channels: int = 3, first_layer: int = 1, width: float = 1.0):
        super().__init__()
        if first_layer not in (1, 3):
            raise ValueError(f"first_layer must be 1 or 3, not {first_layer}")
        if not width > 0:
            raise ValueError(f"width must be > 0, not {width}")
        w = lambda c: _scaled(c, width)  # noqa: E731
        self.first_layer = first_layer
        self._channels = {}
        if first_layer == 1:
            self.conv1 = _cbr(in_channels, w(64), 7, 2)
            self.pool1 = nn.MaxPool2d(3, 2, 1)
            self.conv2_reduce = _cbr(w(64), w(64), 1)
            self._channels["conv2_reduce"] = in_channels = w(64)
        self.conv2 = _cbr(in_channels, w(192), 3)
        self.pool2 = nn.MaxPool2d(3, 2, 1)
        cin = self._channels["conv2"] = w(192)
        self.stages = nn.ModuleDict()
        for name, spec in _MODULES:
            m = Inception(cin, *(w(c) for c in spec[:-1]), spec[-1])
            self.stages[name] = m
            cin = m.out_channels
            self._channels[name] = cin

    def channels(self, name: str) -> int:
        return self._channels[name]

    def forward(self, x: torch.Tensor, taps: tuple[str, ...]) -> list[torch.Tensor]:
        found = {}
        if self.first_layer == 1:
            x = self.conv2_reduce(self.pool1(self.conv1(x)))
            found["conv2_reduce"] = x
        x = self.conv2(x)
        found["conv2"] = x
        x = self.pool2(x)
        for name, m in self.stages.items():
            if all(t in found for t in taps):
                break
            x = m(x)
            found[name] = x
        return [found[t] for t in taps]
