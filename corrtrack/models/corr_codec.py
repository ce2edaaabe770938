"""Coordinates and maps of the correspondence network, in one place.

Used by training (target encoding) and inference (decoding), so both agree on
every half-pixel. Conventions:

* Image coordinates: pixel-index coordinates (the centre of pixel ``i`` is at
  ``i``), as COCO / PoseTrack keypoints and the pose models use them.
* The **letterbox** scales a frame by ``scale`` (longer side -> ``size``) and
  pads right and bottom to the canvas (``size`` x ``size``, or each side
  rounded up to ``multiple`` when not square). Content stays top-left, so no
  offset is needed: canvas = (image + 0.5) * scale - 0.5.
* **Grid** coordinates index the cells of a stride-``s`` feature map: cell
  ``j`` covers canvas pixels ``[s*j, s*j + s)``, its centre is at ``j``.
  grid = (canvas + 0.5) / s - 0.5.

Target maps are Gaussians exp(-d^2 / 2 sigma^2) in grid cells at the true
position, and all-zero for a keypoint that is not in the frame (truncation,
paper eq. 3). Decoding takes the argmax of a map and refines it to sub-cell
precision with a parabola through the log of the 3 values on each axis, which
is exact for a Gaussian (and for a softmax: its log is the affinity, up to a
constant).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Letterbox:
    """How a ``width`` x ``height`` frame sits on a ``canvas_w`` x ``canvas_h`` canvas."""

    width: int
    height: int
    scale: float
    canvas_w: int
    canvas_h: int

    @classmethod
    def fit(cls, width: int, height: int, size: int, square: bool = True, multiple: int = 32) -> "Letterbox":
        scale = size / max(width, height)
        if square:
            cw = ch = size
        else:
            cw = int(math.ceil(round(width * scale) / multiple) * multiple)
            ch = int(math.ceil(round(height * scale) / multiple) * multiple)
        return cls(int(width), int(height), scale, cw, ch)

    @property
    def content_size(self) -> tuple[int, int]:
        """(w, h) of the scaled frame on the canvas."""
        return min(self.canvas_w, round(self.width * self.scale)), min(self.canvas_h, round(self.height * self.scale))

    def to_canvas(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, np.float64) + 0.5) * self.scale - 0.5

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, np.float64) + 0.5) / self.scale - 0.5

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The frame (H, W, C uint8) resized and padded with zeros onto the canvas."""
        import cv2

        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, letterbox expects {self.width}x{self.height}")
        cw, ch = self.content_size
        interp = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (cw, ch), interpolation=interp)
        out = np.zeros((self.canvas_h, self.canvas_w) + image.shape[2:], image.dtype)
        out[:ch, :cw] = resized
        return out


def canvas_to_grid(xy, stride: int):
    return (xy + 0.5) / stride - 0.5


def grid_to_canvas(uv, stride: int):
    return (uv + 0.5) * stride - 0.5


def image_to_grid(xy: np.ndarray, lb: Letterbox, stride: int) -> np.ndarray:
    return canvas_to_grid(lb.to_canvas(xy), stride)


def grid_to_image(uv: np.ndarray, lb: Letterbox, stride: int) -> np.ndarray:
    return lb.to_image(grid_to_canvas(np.asarray(uv, np.float64), stride))


def inside_image(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Whether pixel-index coordinates fall on the frame (pixel centres 0..w-1 +- 0.5)."""
    xy = np.asarray(xy)
    return (xy[..., 0] >= -0.5) & (xy[..., 0] < width - 0.5) & (xy[..., 1] >= -0.5) & (xy[..., 1] < height - 0.5)


def encode_targets(grid_xy: torch.Tensor, present: torch.Tensor, height: int, width: int,
                   sigma: float = 1.0) -> torch.Tensor:
    """Gaussian target maps (..., height, width) at ``grid_xy`` (..., 2); zero where not ``present``."""
    ys = torch.arange(height, dtype=grid_xy.dtype, device=grid_xy.device)
    xs = torch.arange(width, dtype=grid_xy.dtype, device=grid_xy.device)
    dx2 = (xs - grid_xy[..., 0:1]) ** 2  # (..., W)
    dy2 = (ys - grid_xy[..., 1:2]) ** 2  # (..., H)
    maps = torch.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2 * sigma * sigma))
    return maps * present[..., None, None].to(maps.dtype)


def decode_maps(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(..., H, W) maps -> (..., 3): grid x, grid y (sub-cell) and the map's maximum."""
    *lead, h, w = maps.shape
    flat = maps.reshape(-1, h * w).float()
    idx = _row_argmax(flat)
    val = flat.gather(1, idx[:, None])[:, 0]
    iy, ix = idx // w, idx % w

    def offset(i, n, step):
        # Parabola through the log of the values at i-1, i, i+1 (no shift on the border).
        ok = (i > 0) & (i < n - 1)
        c = idx.clamp(step, h * w - 1 - step)
        lo, mid, hi = (torch.log(flat.gather(1, (c + d)[:, None])[:, 0].clamp_min(eps)) for d in (-step, 0, step))
        den = lo - 2 * mid + hi
        off = 0.5 * (lo - hi) / den.clamp(max=-1e-9)
        return torch.where(ok & (den < -1e-9), off.clamp(-0.5, 0.5), torch.zeros_like(off))

    dx, dy = offset(ix, w, 1), offset(iy, h, w)
    return torch.stack([ix.float() + dx, iy.float() + dy, val], dim=1).reshape(*lead, 3)


def _row_argmax(flat: torch.Tensor) -> torch.Tensor:
    """(M, L) -> (M,) index of each row's first maximum. On a CPU through numpy: torch's
    arg-reductions along a row run ~6x slower (1.5 vs 0.23 ms for 102 maps of 96 x 128, one thread;
    worse with two), and this decodes every map of every propagated person twice."""
    if not flat.shape[0]:
        return flat.new_zeros(0, dtype=torch.long)
    if flat.device.type == "cpu":
        return torch.from_numpy(flat.detach().numpy().argmax(1))
    return flat.argmax(1)


def sample_maps(maps: torch.Tensor, grid_xy: torch.Tensor) -> torch.Tensor:
    """Bilinear values of maps (N, K, H, W) at points grid_xy (N, M, K, 2) -> (N, M, K).

    Map k is read at each of the M points' joint k; outside the map the value is 0.
    """
    n, k, h, w = maps.shape
    m = grid_xy.shape[1]
    g = grid_xy.to(maps.dtype).permute(0, 2, 1, 3).reshape(n * k, m, 1, 2)  # (N*K, M, 1, 2)
    norm = torch.stack([g[..., 0] / max(w - 1, 1) * 2 - 1, g[..., 1] / max(h - 1, 1) * 2 - 1], dim=-1)
    vals = F.grid_sample(maps.reshape(n * k, 1, h, w), norm, mode="bilinear", padding_mode="zeros",
                         align_corners=True)  # (N*K, 1, M, 1)
    return vals.reshape(n, k, m).permute(0, 2, 1)


BODY_MOTIONS = ("shift", "affine")


def body_consensus(maps: torch.Tensor, grid_a: torch.Tensor, valid: torch.Tensor,
                   motion: str = "shift") -> tuple[torch.Tensor, torch.Tensor]:
    """Where each person's joints went as a whole: (centre (N, K, 2), size (N,)), in cells.

    maps (N, K, H, W) of N persons in the second frame, ``grid_a`` (N, K, 2) their joints in the
    first, ``valid`` (N, K) which joints were propagated. A person's displacement is the median over
    its valid joints of (map argmax - source place) (the mean of the two middle values for an even
    count, as numpy's); joint k's centre is its source place + that displacement. ``size`` is the
    longer side of the box around the valid source joints, at least one cell. A person without a
    valid joint gets its source places and size 1.

    ``motion="affine"``: joint k's centre is instead an affine map of its source place, fitted by
    least squares from the valid joints' source places to their argmaxes - the joints that agree
    with the best pairwise similarity first (``_similarity_inliers``), then refitted once without
    the joints farther than 2.5 x the median residual (at least 2 cells); the median shift where
    fewer than 4 joints remain. A shift cannot follow a person who turns, tilts or is mirrored (the
    training warps rotate up to 30 degrees and flip), an affine map can.
    """
    if motion not in BODY_MOTIONS:
        raise ValueError(f"motion must be one of {BODY_MOTIONS}, got {motion!r}")
    n, k = maps.shape[:2]
    valid = valid.bool()
    grid_a = grid_a.to(torch.float32)
    shift = decode_maps(maps)[..., :2].to(grid_a.device) - grid_a  # (N, K, 2)
    count = valid.sum(1)  # (N,)
    ranked = torch.where(valid[..., None], shift, torch.full_like(shift, float("inf"))).sort(dim=1).values
    lo = ((count - 1).clamp_min(0) // 2)[:, None, None].expand(n, 1, 2)
    hi = (count // 2).clamp(max=k - 1)[:, None, None].expand(n, 1, 2)
    median = 0.5 * (ranked.gather(1, lo) + ranked.gather(1, hi))  # (N, 1, 2)
    median = torch.where((count > 0)[:, None, None], median, torch.zeros_like(median))
    inf = torch.full_like(grid_a, float("inf"))
    top = torch.where(valid[..., None], grid_a, -inf).amax(1)
    bottom = torch.where(valid[..., None], grid_a, inf).amin(1)
    size = torch.where(count > 0, (top - bottom).amax(-1), torch.ones_like(top[:, 0])).clamp_min(1.0)
    centre = grid_a + median
    if motion == "affine" and n:
        centre = _affine_consensus(grid_a, shift + grid_a, valid, centre)
    return centre, size


def _affine_consensus(src: torch.Tensor, dst: torch.Tensor, valid: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    g, peak = src.double(), dst.double()
    x = torch.cat([g, torch.ones_like(g[..., :1])], -1)  # (N, K, 3)
    w = _similarity_inliers(g, peak, valid).double()
    for _ in range(2):
        sol = torch.linalg.lstsq(x * w[..., None], peak * w[..., None], driver="gelsd").solution  # (N, 3, 2)
        pred = x @ sol
        res = (pred - peak).norm(dim=-1)
        med = torch.where(valid, res, torch.full_like(res, float("nan"))).nanmedian(1).values
        w = _within(res, med, valid).double()
    ok = w.sum(1) >= 4
    return torch.where(ok[:, None, None], pred.to(fallback.dtype), fallback)


def _similarity_inliers(src: torch.Tensor, dst: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N, K) joints within 2.5 x the least median residual (at least 2 cells) of the best
    similarity (rotation, scale, shift, mirrored or not) through any two valid joints.

    Least median of squares (Rousseeuw 1984) over every pair of joints: a least-squares start is
    pulled by the joints whose peaks sit on a crossing person, the median is not while they are
    fewer than half (the median shift's robustness, for a body that turns or is mirrored).
    """
    n, k = valid.shape
    i, j = torch.triu_indices(k, k, 1, device=src.device)
    z = torch.complex(src[..., 0], src[..., 1])  # (N, K)
    t = torch.complex(dst[..., 0], dst[..., 1])
    ds, dt = z[:, j] - z[:, i], t[:, j] - t[:, i]  # (N, P)
    ok = valid[:, i] & valid[:, j] & (ds.abs() >= 1.0)
    safe = torch.where(ok, ds, torch.ones_like(ds))
    resid = []
    for mirror in (False, True):
        zs, ss = (z.conj(), safe.conj()) if mirror else (z, safe)
        a = dt / ss  # (N, P): rotation and scale
        b = t[:, i] - a * zs[:, i]
        pred = a[..., None] * zs[:, None, :] + b[..., None]  # (N, P, K)
        resid.append((pred - t[:, None, :]).abs())
    res = torch.cat(resid, 1)  # (N, 2P, K)
    med = torch.where(valid[:, None, :], res, torch.full_like(res, float("nan"))).nanmedian(2).values
    med = torch.where(torch.cat([ok, ok], 1), med, torch.full_like(med, float("inf")))
    rows, best = torch.arange(n, device=src.device), med.argmin(1)  # (N,)
    m = med[rows, best]
    return torch.where(torch.isfinite(m)[:, None], _within(res[rows, best], m, valid), valid)


def _within(res: torch.Tensor, med: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N, K) valid joints whose residual is within 2.5 x their person's median (at least 2 cells)."""
    return valid & (res <= (2.5 * med).clamp_min(2.0)[:, None])


def consensus_axes(centre: torch.Tensor, size: torch.Tensor, height: int,
                   width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two axes of ``consensus_sqdist``: (dx^2 (N, K, width), dy^2 (N, K, height)), in units of
    the person's ``size`` (N,); a cell's squared distance is dy^2[y] + dx^2[x]."""
    ys = torch.arange(height, dtype=centre.dtype, device=centre.device)
    xs = torch.arange(width, dtype=centre.dtype, device=centre.device)
    inv = 1.0 / (size * size)[:, None, None]
    return (xs - centre[..., 0:1]) ** 2 * inv, (ys - centre[..., 1:2]) ** 2 * inv


def consensus_sqdist(centre: torch.Tensor, size: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, K, height, width): squared distance of every cell to ``centre`` (N, K, 2), in units of
    the person's ``size`` (N,) (``body_consensus``)."""
    dx2, dy2 = consensus_axes(centre, size, height, width)
    return dy2[..., :, None] + dx2[..., None, :]
