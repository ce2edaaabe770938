"""The paper's top-down pose network (section 6.1, supplementary A.1 and Figure 7).

Two stages, each a batch-normalised GoogleNet (BN-Inception, ``bninception.py``):

* stage 1: layers 1-17 (conv1 ... inception 4e, stride 32) on the crop, then a
  deconvolution block (three 4x4 stride-2 transposed convolutions with BN +
  ReLU, as in Xiao et al.'s simple baseline) back to stride 4, and two 1x1
  heads: K heatmap logits and 2K offset maps (x maps then y maps, in cells).
* stage 2: layers 3-17, i.e. the same network without conv1 / pool1 / the
  1x1 conv2 reduce, starting at the 3x3 conv2 that works at stride 4. Its
  input ("the backbone features, pose heatmaps and joint offset maps from the
  first stage") is the concatenation, at stride 4, of stage 1's layer-2
  output (what layer 3 normally reads), stage 1's deconvolved features, its
  heatmaps (sigmoid) and its offsets, brought to layer 2's width by a 1x1
  conv + BN + ReLU. It has its own deconvolution block and heads.

Both stages are supervised (BCE on heatmaps, L1 on offsets; ``train/pose.py``);
inference decodes the second stage with ``PoseCodec`` (heatmap argmax + its
offset). Input: RGB crops of 288 x 384 (w x h), heatmaps 72 x 96.

``width`` scales every channel count of both backbones and deconvolution
blocks: 1.0 is the paper's model (24.4 M parameters; the paper reports 39.5 M
for its variant, whose deconvolution block is not specified; ~400 ms per
person on 2 CPU threads), 0.25 a 1.5 M-parameter variant for CPU experiments
(with a smaller crop, e.g. 96 x 128: ~6 ms per person in batches) and 0.125
(0.4 M) for tests. No ImageNet weights exist here for BN-Inception, so a
model starts from random initialisation (or ``--init`` from another PoseNet).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from corrtrack.errors import CorrtrackError
from corrtrack.models.checkpoint import read_model_file, restore, save_model
from corrtrack.layouts import KeypointLayout, get_layout
from corrtrack.models.bninception import BNInception, _scaled
from corrtrack.models.pose_codec import PoseCodec

FORMAT = "corrtrack-posenet"
STRIDE = 4
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PoseNetConfig:
    layout: str = "coco17"  # joints predicted (coco17 or posetrack18)
    input_width: int = 288
    input_height: int = 384
    width: float = 1.0  # channel multiplier (1.0 = BN-Inception)
    deconv_channels: int = 256  # before ``width``
    sigma: float = 1.5  # codec: target Gaussian, in heatmap cells
    offset_radius: float = 2.5  # codec: offsets learnt within this many cells of a joint

    def __post_init__(self) -> None:
        try:
            get_layout(self.layout)
        except ValueError as e:
            raise CorrtrackError(f"layout: {e}") from None
        if self.input_width % 32 or self.input_height % 32 or self.input_width < 32 or self.input_height < 32:
            raise CorrtrackError(f"input: {self.input_width}x{self.input_height} must be multiples of 32 "
                                 "(the backbone's stride)")
        if not self.width > 0:
            raise CorrtrackError(f"width: must be > 0, got {self.width}")

    @property
    def joints(self) -> KeypointLayout:
        return get_layout(self.layout)

    @property
    def codec(self) -> PoseCodec:
        return PoseCodec(self.input_width, self.input_height, STRIDE, self.sigma, self.offset_radius)


def _cbr(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DeconvHead(nn.Module):
    """Stride-32 features -> (stride-4 features, K heatmap logits, 2K offsets)."""

    def __init__(self, cin: int, ch: int, joints: int):
        super().__init__()
        layers = []
        for i in range(3):
            layers += [nn.ConvTranspose2d(cin if i == 0 else ch, ch, 4, 2, 1, bias=False), nn.BatchNorm2d(ch),
                       nn.ReLU(inplace=True)]
        self.deconv = nn.Sequential(*layers)
        self.heatmap = nn.Conv2d(ch, joints, 1)
        self.offset = nn.Conv2d(ch, 2 * joints, 1)
        # Start with low heatmaps (almost every target pixel is ~0) and zero offsets.
        nn.init.constant_(self.heatmap.bias, -4.0)
        nn.init.normal_(self.heatmap.weight, std=0.001)
        nn.init.zeros_(self.offset.bias)
        nn.init.normal_(self.offset.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.deconv(x)
        return f, self.heatmap(f), self.offset(f)


class PoseNet(nn.Module):
    """``forward(x)`` (B, 3, H, W) RGB in 0..1 -> [(heat logits, offsets) of stage 1, of stage 2]."""

    def __init__(self, config: PoseNetConfig = PoseNetConfig()):
        super().__init__()
        self.config = cfg = config
        k = cfg.joints.num_joints
        ch = _scaled(cfg.deconv_channels, cfg.width)
        self.stage1 = BNInception(3, 1, cfg.width)
        self.head1 = DeconvHead(self.stage1.channels("inception_4e"), ch, k)
        c2 = self.stage1.channels("conv2_reduce")
        self.bridge = _cbr(c2 + ch + 3 * k, c2)
        self.stage2 = BNInception(c2, 3, cfg.width)
        self.head2 = DeconvHead(self.stage2.channels("inception_4e"), ch, k)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.meta: dict = {}

    @property
    def codec(self) -> PoseCodec:
        return self.config.codec

    @property
    def layout(self) -> KeypointLayout:
        return self.config.joints

    @property
    def input_size(self) -> tuple[int, int]:
        """(w, h) of the crops."""
        return self.config.input_width, self.config.input_height

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        low, deep = self.stage1(x, ("conv2_reduce", "inception_4e"))
        f1, h1, o1 = self.head1(deep)
        z = self.bridge(torch.cat([low, f1, torch.sigmoid(h1), o1], 1))
        _, h2, o2 = self.head2(self.stage2(z, ("inception_4e",))[0])
        return [(h1, o1), (h2, o2)]

    def predict(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, h, w, 3) RGB crops, 0..255, any dtype (MoveNet's input convention) -> (N, K, 3)
        (y, x, score), y and x in 0..1 of the crop (MoveNet's output convention)."""
        w, h = self.input_size
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (h, w, 3):
            raise ValueError(f"PoseNet takes (N, {h}, {w}, 3) crops, got {tuple(crops.shape)}")
        x = crops.to(self.mean.device).permute(0, 3, 1, 2).float() / 255.0  # never in place: may be the caller's
        heat, off = self(x)[-1]
        kp = self.codec.decode(heat.float(), off.float())
        return torch.stack([(kp[..., 1] + 0.5) / h, (kp[..., 0] + 0.5) / w, kp[..., 2]], -1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- files -------------------------------------------------------------------
    def save(self, path: str | Path, meta: dict | None = None, half: bool = True) -> None:
        """A self-describing file: config + (fp16) state dict + free-form meta."""
        save_model(self, path, FORMAT, meta, half)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "PoseNet":
        """A model written by ``save`` (``corrtrack train pose`` writes OUT/posenet.pt), in eval mode."""
        obj = read_model_file(path, FORMAT, "PoseNet model", " (train one with `corrtrack train pose`)")
        try:
            net = cls(PoseNetConfig(**obj["config"]))
        except TypeError as e:
            raise CorrtrackError(f"{path}: unknown PoseNet configuration ({e})") from None
        return restore(net, obj, path, map_location)


def transfer_weights(dst: PoseNet, src_state: dict[str, torch.Tensor], src_layout: str | KeypointLayout) -> list[str]:
    """Initialise ``dst`` from another PoseNet's state dict (e.g. COCO -> PoseTrack fine-tuning).

    Tensors of equal shape are copied. The per-joint rows of the heads (and of the
    stage-2 bridge's input channels) are copied joint by joint for joints the two
    layouts share by name; other joints (PoseTrack's head_bottom / head_top) keep
    their fresh initialisation. Returns the names of tensors left untouched.
    """
    src_layout, dst_layout = get_layout(src_layout), dst.layout
    pairs = [(dst_layout.index(n), src_layout.index(n)) for n in dst_layout.joints if n in src_layout.joints]
    ks, kd = src_layout.num_joints, dst_layout.num_joints
    state = dst.state_dict()
    untouched = []
    with torch.no_grad():
        for name, t in state.items():
            s = src_state.get(name)
            if s is None:
                untouched.append(name)
                continue
            s = s.to(t.dtype)
            if _per_joint(name):  # rows: K heatmaps, or 2K offsets (x maps then y maps)
                for g in range(2 if ".offset." in name else 1):
                    for d, si in pairs:
                        t[g * kd + d] = s[g * ks + si]
            elif name == "bridge.0.weight":  # input channels: layer-2 feats, deconv feats, K heat, 2K offsets
                base = t.shape[1] - 3 * kd
                t[:, :base] = s[:, :base]
                for g in range(3):
                    for d, si in pairs:
                        t[:, base + g * kd + d] = s[:, base + g * ks + si]
            elif s.shape == t.shape:
                t.copy_(s)
            else:
                untouched.append(name)
    dst.load_state_dict(state)
    return untouched


def _per_joint(name: str) -> bool:
    return any(name.startswith(f"{h}.{p}.") for h in ("head1", "head2") for p in ("heatmap", "offset"))
