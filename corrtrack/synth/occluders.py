"""Static occluders: poles and signs standing on the ground for a whole sequence.

On the real demo video (a street with a sign on a pole) the tracker fails
mostly where walkers pass behind the sign; these objects put that event into
synthetic sequences. An occluder stands at a fixed ground point (X, Z) and is
projected with the scene's camera exactly like a person, so its size follows
its depth. It is drawn in the same far-to-near order as the people (by foot
row): it hides whoever is farther and is hidden by whoever is nearer, and it
claims its pixels in the owner map, so joints under it are invisible and a
person entirely behind it is not annotated (see ``corrtrack.synth.render``).

Kinds, sizes in metres:

* ``pole``: 0.12-0.2 wide, 2.5-3.5 tall, grey metal;
* ``sign``: a board 0.8-1.6 wide and 0.6-1.2 tall, its bottom edge 0.3-1.2
  above the ground (a walker's legs and torso), on one pole;
* ``board``: the same board on two legs at its sides.

Placement: the depth is drawn from the nearer half of ``z_range`` most of the
time (a near object is large enough to hide people); X is where a person's
planned path passes behind it — the image column of that person at a random
frame in which it is farther than the occluder — so every occluder hides
somebody for a while. Spots where somebody would walk through the object, or
where it would stand in front of another occluder, are avoided when possible.
All draws come from a random generator of their own (see ``scene``), so asking
for no occluders leaves every other draw of a sequence unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from corrtrack.synth.motion import Camera, PersonPlan
from corrtrack.synth.render import Sprite

KINDS = ("pole", "sign", "board")
NEAR_SHARE = 0.8  # occluders placed in the nearer half of the depth range
DEPTH_GAP_M = 0.5  # a person this much farther than the occluder passes behind it
BODY_RADIUS_M = 0.35  # closer than this to an occluder's footprint, a person would walk through it
PLACE_TRIES = 30
BOARD_COLOURS = ((32, 86, 160), (24, 120, 60), (190, 40, 35), (230, 190, 40), (235, 235, 230), (120, 80, 50))


class Part(NamedTuple):
    """A rectangle of an occluder, metres from its foot point: lateral left/right, height bottom/top."""

    name: str  # pole | leg | board
    left: float
    right: float
    bottom: float
    top: float


@dataclass(frozen=True)
class Occluder:
    kind: str
    X: float  # ground position, metres
    Z: float
    parts: tuple[Part, ...]  # drawn in this order (the board last, over its poles)
    colour: tuple[int, int, int]  # RGB of the board; poles and legs are metal grey
    texture_seed: int  # its shading noise and printed marks

    @property
    def half_width(self) -> float:
        return _half_width(self.parts)

    def describe(self, cam: Camera) -> dict:
        """For the manifest: where it stands and its pixel boxes (xyxy, clipped to the frame, without shake)."""
        return {"kind": self.kind, "X": round(self.X, 3), "Z": round(self.Z, 3),
                "box": _pixel_box(cam, self, self.parts),
                "parts": [{"part": p.name, "box": _pixel_box(cam, self, (p,))} for p in self.parts]}


def _pixel_box(cam: Camera, occ: Occluder, parts: tuple[Part, ...]) -> list[float]:
    u, v = cam.project(occ.X, occ.Z)
    s = float(cam.pixels_per_metre(occ.Z))
    box = [u + min(p.left for p in parts) * s, v - max(p.top for p in parts) * s,
           u + max(p.right for p in parts) * s, v - min(p.bottom for p in parts) * s]
    return [round(float(np.clip(b, 0, lim)), 2) for b, lim in zip(box, (cam.width, cam.height) * 2)]


def _half_width(parts: tuple[Part, ...]) -> float:
    return max(max(-p.left, p.right) for p in parts)


# -- shape and place ------------------------------------------------------------------------------

def _shape(rng: np.random.Generator) -> tuple[str, tuple[Part, ...]]:
    kind = KINDS[int(rng.integers(len(KINDS)))]
    if kind == "pole":
        half, top = rng.uniform(0.12, 0.2) / 2, rng.uniform(2.5, 3.5)
        return kind, (Part("pole", -half, half, 0.0, top),)
    half_w, height, bottom = rng.uniform(0.8, 1.6) / 2, rng.uniform(0.6, 1.2), rng.uniform(0.3, 1.2)
    board = Part("board", -half_w, half_w, bottom, bottom + height)
    # Supports end a little inside the board, so that they look attached to it.
    up_to = bottom + 0.2 * height
    if kind == "sign":
        half = rng.uniform(0.06, 0.1) / 2
        return kind, (Part("pole", -half, half, 0.0, up_to), board)
    leg, inset = rng.uniform(0.05, 0.08), 0.1 * half_w
    return kind, (Part("leg", -half_w + inset, -half_w + inset + leg, 0.0, up_to),
                  Part("leg", half_w - inset - leg, half_w - inset, 0.0, up_to), board)


def _view_margin_px(cam: Camera, Z: float, half_width: float) -> float:
    """How far from the frame edges the occluder's centre column must be to stand wholly in view."""
    return half_width * float(cam.pixels_per_metre(Z)) + 5


def _behind_someone(rng: np.random.Generator, cam: Camera, plans: list[PersonPlan], frames: np.ndarray, Z: float,
                    half_width: float) -> float | None:
    """X at which a random person, at a random frame where it is farther, stands behind the occluder."""
    margin = _view_margin_px(cam, Z, half_width)
    x = np.concatenate([p.X[frames] for p in plans])
    z = np.concatenate([p.Z[frames] for p in plans])
    u, _ = cam.project(x, z)
    picks = np.flatnonzero((z > Z + DEPTH_GAP_M) & (u > margin) & (u < cam.width - margin))
    if not len(picks):
        return None
    i = picks[int(rng.integers(len(picks)))]
    return float(x[i] * Z / z[i])  # the same image column at the occluder's depth


def _clashes(cam: Camera, plans: list[PersonPlan], frames: np.ndarray, placed: list[Occluder], X: float, Z: float,
             half_width: float) -> tuple[int, int]:
    """(occluders it would overlap in the image, person-frames walking through it): lower is better."""
    u = float(cam.project(X, Z)[0])
    reach = half_width * float(cam.pixels_per_metre(Z))
    overlaps = sum(abs(u - float(cam.project(o.X, o.Z)[0])) < reach + o.half_width * float(cam.pixels_per_metre(o.Z))
                   for o in placed)
    through = sum(int(((np.abs(p.X[frames] - X) < half_width + BODY_RADIUS_M)
                       & (np.abs(p.Z[frames] - Z) < BODY_RADIUS_M)).sum()) for p in plans)
    return overlaps, through


def _place(rng: np.random.Generator, cam: Camera, z_range: tuple[float, float], plans: list[PersonPlan],
           frames: np.ndarray, placed: list[Occluder], half_width: float) -> tuple[float, float]:
    """The best of a few random spots: one that hides somebody first, then the fewest clashes."""
    z0, z1 = z_range
    best, best_rank = None, None
    for _ in range(PLACE_TRIES):
        Z = float(rng.uniform(z0, (z0 + z1) / 2) if rng.random() < NEAR_SHARE else rng.uniform(z0, z1))
        X = _behind_someone(rng, cam, plans, frames, Z, half_width)
        hides = X is not None
        if not hides:  # nobody is ever farther in view: anywhere in view
            margin = _view_margin_px(cam, Z, half_width)
            X = float((rng.uniform(margin, cam.width - margin) - cam.width / 2) * Z / cam.focal)
        rank = (not hides, *_clashes(cam, plans, frames, placed, X, Z, half_width))
        if best_rank is None or rank < best_rank:
            best, best_rank = (X, Z), rank
        if rank == (False, 0, 0):
            break
    return best


def plan_occluders(rng: np.random.Generator, count: tuple[int, int], cam: Camera, z_range: tuple[float, float],
                   plans: list[PersonPlan], frames: np.ndarray) -> list[Occluder]:
    """``count`` (inclusive range) occluders placed where the people's paths (at base ``frames``) pass behind."""
    occluders: list[Occluder] = []
    for _ in range(int(rng.integers(count[0], count[1], endpoint=True))):
        kind, parts = _shape(rng)
        X, Z = _place(rng, cam, z_range, plans, frames, occluders, _half_width(parts))
        colour = BOARD_COLOURS[int(rng.integers(len(BOARD_COLOURS)))]
        occluders.append(Occluder(kind, X, Z, parts, colour, int(rng.integers(2**31))))
    return occluders


# -- appearance -------------------------------------------------------------------------------------

def _metal(xs: np.ndarray, left: float, right: float, grey: float) -> np.ndarray:
    """A round pole's colour across its width: a highlight left of the middle, darker edges."""
    t = (xs - left) / max(right - left, 1e-9)
    shade = 0.55 + 0.6 * np.exp(-(((t - 0.35) / 0.3) ** 2))
    return np.array([0.96, 1.0, 1.05]) * grey * shade[..., None]


def _print_marks(rng: np.random.Generator, board: np.ndarray, colour: np.ndarray) -> None:
    """A printed-sign look: a frame in a darker shade and a few lines of 'text' in a contrasting colour."""
    h, w = board.shape[:2]
    edge = max(1, round(0.06 * min(h, w)))
    board[:edge] = board[-edge:] = board[:, :edge] = board[:, -edge:] = colour * 0.55
    ink = np.array([20.0, 20.0, 25.0]) if colour.mean() > 150 else np.array([240.0, 240.0, 235.0])
    lines = int(rng.integers(2, 5))
    pitch = (h - 4 * edge) / lines
    line_h = max(1, int(min(0.5 * pitch, 0.08 * h)))
    for i in range(lines):
        y = int(2 * edge + i * pitch + (pitch - line_h) / 2)
        length = max(1, int(rng.uniform(0.4, 0.85) * (w - 4 * edge)))
        board[y:y + line_h, 2 * edge:2 * edge + length] = ink


def _part_pixels(p: Part, anchor: tuple[float, float], s: float, size: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns of the crop a part covers: the pixels whose centres (integer coordinates) lie in it."""
    (ax, ay), (w, h) = anchor, size
    cols = np.flatnonzero((np.arange(w) >= ax + p.left * s) & (np.arange(w) < ax + p.right * s))
    rows = np.flatnonzero((np.arange(h) >= ay - p.top * s) & (np.arange(h) < ay - p.bottom * s))
    if not len(cols):  # a far pole thinner than a pixel stays one pixel wide
        cols = [int(np.clip(round(ax + (p.left + p.right) / 2 * s), 0, w - 1))]
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _outline(rgb: np.ndarray, mask: np.ndarray) -> None:
    """Darken the mask's border pixels, as a solid object's silhouette looks against the scene."""
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    rgb[mask & ~inner] *= 0.45


def draw_occluder(occ: Occluder, cam: Camera) -> Sprite:
    """Its picture at its depth: solid, mildly shaded and noisy, with a darker outline."""
    rng = np.random.default_rng(occ.texture_seed)
    s = float(cam.pixels_per_metre(occ.Z))
    pad = 2
    left, top = min(p.left for p in occ.parts) * s, max(p.top for p in occ.parts) * s
    w = int(np.ceil(max(p.right for p in occ.parts) * s - left)) + 2 * pad
    h = int(np.ceil(top)) + 2 * pad
    anchor = (pad - left, pad + top)  # crop position of the foot point
    rgb, mask = np.zeros((h, w, 3)), np.zeros((h, w), bool)
    grey = rng.uniform(105, 165)  # one metal for all poles and legs of the object
    for p in occ.parts:
        rows, cols = _part_pixels(p, anchor, s, (w, h))
        if p.name == "board":
            colour = np.array(occ.colour, np.float64)
            board = colour * np.linspace(1.05, 0.85, rows.stop - rows.start)[:, None, None]
            board = np.repeat(board, cols.stop - cols.start, axis=1)
            _print_marks(rng, board, colour)
            rgb[rows, cols] = board
        else:
            rgb[rows, cols] = _metal(np.arange(cols.start, cols.stop) - anchor[0], p.left * s, p.right * s, grey)
        mask[rows, cols] = True
    rgb += rng.normal(0, 4, rgb.shape)
    _outline(rgb, mask)
    rgb = np.where(mask[..., None], np.clip(np.round(rgb), 0, 255), 0).astype(np.uint8)
    rgba = np.dstack([rgb, np.where(mask, 255, 0).astype(np.uint8)])
    u, v = cam.project(occ.X, occ.Z)
    return Sprite(rgba, np.array(anchor), (float(u), float(v)))
