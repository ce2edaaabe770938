"""Heatmap + offset codec of the pose network (paper supplementary A.1), shared by
training (``encode``) and inference (``decode``).

Coordinates are crop pixel indices (pixel (i, j) has centre (j, i), the
convention of ``corrtrack.pipeline.pose``). Heatmap cell (i, j) at ``stride``
s covers crop pixels [j*s, (j+1)*s), so its centre is at pixel
``(j + 0.5) * s - 0.5``; a keypoint at pixel ``x`` sits at the continuous cell
coordinate ``g = (x + 0.5) / s - 0.5``.

Targets of one joint:
  * heatmap: a Gaussian of ``sigma`` cells around ``g`` (BCE with soft
    labels; the peak cell is the one nearest the joint, which is what the
    argmax decode needs). All zeros when the joint is labelled but outside the
    crop (truncation).
  * offsets: ``g - (j, i)`` in cells, per cell within ``offset_radius`` cells
    of the joint (the offset mask; L1 is applied only there). The paper's
    ``p = p_hat + delta``: ``p_hat`` the up-sampled argmax cell, ``delta``
    the offset read there.
  * weight: 1 for labelled joints, ``unlabelled_weight`` for joints without a
    label (0 = ignore them; 1 = "no joint here", used for teacher labels where
    a missing joint means the teacher was not confident).

Decode: per joint, the argmax cell of the heatmap logits, plus the offset
read at that cell, back to pixels; score = sigmoid of the max logit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PoseCodec:
    input_width: int = 288  # crop w x h (paper: 288 x 384)
    input_height: int = 384
    stride: int = 4
    sigma: float = 1.5  # heatmap Gaussian, in cells
    offset_radius: float = 2.5  # offsets are learnt (and read) within this many cells of a joint

    def __post_init__(self) -> None:
        if self.input_width % self.stride or self.input_height % self.stride:
            raise ValueError(f"crop {self.input_width}x{self.input_height} is not a multiple of stride {self.stride}")
        if not (self.sigma > 0 and self.offset_radius >= 1):
            raise ValueError("sigma must be > 0 and offset_radius >= 1 (the argmax cell must get an offset)")

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(w, h) of the heatmaps."""
        return self.input_width // self.stride, self.input_height // self.stride

    def to_cells(self, xy: torch.Tensor) -> torch.Tensor:
        return (xy + 0.5) / self.stride - 0.5

    def to_pixels(self, g: torch.Tensor) -> torch.Tensor:
        return (g + 0.5) * self.stride - 0.5

    def inside(self, xy: torch.Tensor) -> torch.Tensor:
        """Joints whose pixel lies in the crop (continuous extent [-0.5, size - 0.5))."""
        return ((xy[..., 0] >= -0.5) & (xy[..., 0] < self.input_width - 0.5)
                & (xy[..., 1] >= -0.5) & (xy[..., 1] < self.input_height - 0.5))

    def encode(self, keypoints, unlabelled_weight: float = 0.0) -> dict[str, torch.Tensor]:
        """(N, K, 3) crop keypoints (x, y, visibility; > 0 = labelled), numpy or tensor, any device ->

        ``heatmaps`` (N, K, h, w), ``offsets`` (N, 2K, h, w) (x maps, then y maps, in cells),
        ``offset_mask`` (N, K, h, w) bool, ``weights`` (N, K).
        """
        kp = torch.as_tensor(keypoints, dtype=torch.float32)
        n, k, _ = kp.shape
        w, h = self.heatmap_size
        labelled = kp[..., 2] > 0
        present = labelled & self.inside(kp[..., :2])
        g = self.to_cells(kp[..., :2])
        xs = torch.arange(w, dtype=torch.float32, device=kp.device)
        ys = torch.arange(h, dtype=torch.float32, device=kp.device)
        dx = g[..., 0, None, None] - xs  # (N, K, 1, w)
        dy = g[..., 1, None, None] - ys[:, None]  # (N, K, h, 1)
        d2 = dx * dx + dy * dy  # (N, K, h, w)
        p = present[..., None, None]
        heat = torch.exp(-d2 / (2 * self.sigma ** 2)) * p
        mask = (d2 <= self.offset_radius ** 2) & p
        offsets = torch.cat([dx.expand(n, k, h, w), dy.expand(n, k, h, w)], 1) * mask.repeat(1, 2, 1, 1)
        weights = torch.where(labelled, 1.0, float(unlabelled_weight))
        return {"heatmaps": heat, "offsets": offsets, "offset_mask": mask, "weights": weights}

    def decode(self, heat_logits: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """(N, K, h, w) heatmap logits, (N, 2K, h, w) offsets -> (N, K, 3) crop x, y, score."""
        n, k, h, w = heat_logits.shape
        flat = heat_logits.reshape(n, k, h * w)
        best, idx = flat.max(-1)
        off = offsets.reshape(n, 2, k, h * w)
        ox = off[:, 0].gather(-1, idx[..., None])[..., 0]
        oy = off[:, 1].gather(-1, idx[..., None])[..., 0]
        gx = (idx % w).to(offsets.dtype) + ox
        gy = torch.div(idx, w, rounding_mode="floor").to(offsets.dtype) + oy
        return torch.stack([self.to_pixels(gx), self.to_pixels(gy), torch.sigmoid(best.to(offsets.dtype))], -1)

    def decode_numpy(self, heat_logits: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        return self.decode(torch.as_tensor(heat_logits), torch.as_tensor(offsets)).numpy()


def logit(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Inverse sigmoid (turns target maps into logits, e.g. to test a decode)."""
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)
