"""Where each person is in each frame: a ground plane, a camera, and paths.

People walk on a flat ground seen by a fixed pinhole camera with a level
optical axis: a point on the ground at lateral position X and depth Z (metres)
appears at::

    u = W/2 + f * X / Z          v = horizon + f * cam_height / Z

and a person of height h metres standing there is ``f * h / Z`` pixels tall.
So people shrink and rise towards the horizon as they walk away, and the one
with the lower feet in the image is nearer (depth order = foot row).

A path is a list of waypoints (frame, X, Z) — walking between them at a
constant speed, pausing where two waypoints share a position — linearly
interpolated per frame and smoothed with a Gaussian of ``SMOOTH_SIGMA``
frames, so starts, stops and turns are gradual. The scenario functions
(``plan_walk``, ``plan_crossing``, ``plan_crowd``, ``plan_reentry``) draw such
paths from a random generator; everything is deterministic given its state.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from corrtrack.errors import CorrtrackError

SMOOTH_SIGMA = 3.0  # frames
PERSON_HEIGHT_M = 1.70


@dataclass(frozen=True)
class Camera:
    width: int = 768
    height: int = 576
    focal: float = 700.0  # pixels
    horizon: float = 0.20  # horizon row as a fraction of the height
    cam_height: float = 2.6  # metres above the ground

    @property
    def horizon_px(self) -> float:
        return self.horizon * self.height

    def project(self, X: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image position (u, v) of ground points."""
        return self.width / 2 + self.focal * X / Z, self.horizon_px + self.focal * self.cam_height / Z

    def pixels_per_metre(self, Z: np.ndarray) -> np.ndarray:
        return self.focal / np.asarray(Z, np.float64)

    def half_width_m(self, Z: float) -> float:
        """Half the ground width seen at depth Z (the frame's left/right edge)."""
        return Z * (self.width / 2) / self.focal

    def z_at_row(self, v: float) -> float:
        return self.focal * self.cam_height / (v - self.horizon_px)


@dataclass
class PersonPlan:
    """One person's motion over the (base-rate) frames of a sequence."""

    X: np.ndarray  # (T,) metres
    Z: np.ndarray  # (T,) metres
    height_factor: float  # this person's height / PERSON_HEIGHT_M
    rot_amp: float  # degrees
    rot_period: float  # frames
    rot_phase: float
    notes: list[dict] = field(default_factory=list)  # planned events (pauses, ...) for the manifest

    def rotation(self, t: np.ndarray) -> np.ndarray:
        return self.rot_amp * np.sin(2 * np.pi * np.asarray(t) / self.rot_period + self.rot_phase)


class PathBuilder:
    """Waypoints of one person: start somewhere, walk to points, pause."""

    def __init__(self, X: float, Z: float, t: float = 0.0):
        self.points = [(float(t), float(X), float(Z))]
        self.breaks: list[int] = []  # indices into points where a jump (off-screen) starts a new piece
        self.notes: list[dict] = []

    @property
    def t(self) -> float:
        return self.points[-1][0]

    @property
    def pos(self) -> tuple[float, float]:
        return self.points[-1][1], self.points[-1][2]

    def walk_to(self, X: float, Z: float, speed: float, fps: float) -> "PathBuilder":
        x0, z0 = self.pos
        dist = float(np.hypot(X - x0, Z - z0))
        self.points.append((self.t + max(1.0, dist / speed * fps), float(X), float(Z)))
        return self

    def pause(self, frames: float, why: str = "pause") -> "PathBuilder":
        if frames > 0:
            self.notes.append({"event": why, "planned_frame": int(round(self.t)), "frames": int(round(frames))})
            self.points.append((self.t + frames, *self.pos))
        return self

    def jump(self, X: float, Z: float) -> "PathBuilder":
        """Reappear elsewhere in the next frame (only sensible while out of view)."""
        self.breaks.append(len(self.points))
        self.points.append((self.t + 1, float(X), float(Z)))
        return self

    def sample(self, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame X, Z (held before the first and after the last waypoint), smoothed.

        Each piece between jumps is smoothed on its own, so a jump stays a jump.
        """
        from scipy.ndimage import gaussian_filter1d

        t = np.arange(num_frames, dtype=np.float64)
        X, Z = np.empty(num_frames), np.empty(num_frames)
        bounds = [0, *self.breaks, len(self.points)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            pts = np.array(self.points[a:b])
            lo = 0 if a == 0 else int(np.ceil(pts[0, 0]))
            hi = num_frames if b == len(self.points) else int(np.ceil(self.points[b][0]))
            lo, hi = min(lo, num_frames), min(max(hi, lo), num_frames)
            if hi <= lo:
                continue
            X[lo:hi] = gaussian_filter1d(np.interp(t[lo:hi], pts[:, 0], pts[:, 1]), SMOOTH_SIGMA, mode="nearest")
            Z[lo:hi] = gaussian_filter1d(np.interp(t[lo:hi], pts[:, 0], pts[:, 2]), SMOOTH_SIGMA, mode="nearest")
        return X, Z


@dataclass(frozen=True)
class MotionSpec:
    """What the scenario functions need (a subset of SynthConfig)."""

    num_frames: int  # base-rate frames
    fps: float  # base rate
    people: int
    z_range: tuple[float, float]
    speed: tuple[float, float]  # m/s
    pause_prob: float
    pause_frames: tuple[int, int]
    occlusion_frames: tuple[int, int]
    reentry_gap: tuple[int, int]
    max_rotation: float  # degrees


def person_plan(rng: np.random.Generator, spec: MotionSpec, b: PathBuilder) -> PersonPlan:
    X, Z = b.sample(spec.num_frames)
    return PersonPlan(X, Z, height_factor=float(rng.uniform(0.93, 1.07)),
                      rot_amp=float(rng.uniform(0, spec.max_rotation)), rot_period=float(rng.uniform(40, 120)),
                      rot_phase=float(rng.uniform(0, 2 * np.pi)), notes=b.notes)


def _speed(rng, spec: MotionSpec) -> float:
    return float(rng.uniform(*spec.speed))


def _edge_x(cam: Camera, Z: float, side: int, margin: float = 0.6) -> float:
    """X just outside the left (-1) or right (+1) frame edge at depth Z."""
    return side * (cam.half_width_m(Z) + margin)


def _walk_across(rng, spec: MotionSpec, cam: Camera, b: PathBuilder, side_to: int, Z: float) -> None:
    """Walk towards one frame edge and out of it, maybe with a pause on the way."""
    speed = _speed(rng, spec)
    target = _edge_x(cam, Z, side_to)
    if rng.random() < spec.pause_prob:
        x0 = b.pos[0]
        mid = x0 + (target - x0) * rng.uniform(0.3, 0.7)
        b.walk_to(mid, Z + rng.uniform(-0.3, 0.3), speed, spec.fps)
        b.pause(rng.integers(*spec.pause_frames, endpoint=True))
    b.walk_to(target, Z + rng.uniform(-0.3, 0.3), speed, spec.fps)


def plan_walk(rng: np.random.Generator, spec: MotionSpec, cam: Camera) -> list[PersonPlan]:
    """Few people walking the same way at similar speeds, spread over the view: little contact.

    Each has its own depth lane and keeps it; whoever walks out of one side
    comes back in at the other after a few frames (with the same id), so
    the flow goes on for the whole sequence. Pauses are short.
    """
    zs = np.linspace(*spec.z_range, spec.people + 1)
    lanes = rng.permutation(spec.people)
    direction = int(rng.choice([-1, 1]))
    base = _speed(rng, spec)
    plans = []
    for i in range(spec.people):
        Z = float(rng.uniform(zs[lanes[i]], zs[lanes[i] + 1]))
        hw = cam.half_width_m(Z)
        x0 = (-1 + 2 * (i + rng.uniform(0.2, 0.8)) / spec.people) * hw
        b = PathBuilder(float(x0), Z)
        speed = base * rng.uniform(0.9, 1.1)
        while b.t < spec.num_frames:
            if rng.random() < spec.pause_prob:
                x = b.pos[0] + (direction * cam.half_width_m(Z) - b.pos[0]) * rng.uniform(0.2, 0.6)
                b.walk_to(x, Z, speed, spec.fps)
                b.pause(rng.integers(spec.pause_frames[0], (spec.pause_frames[0] + spec.pause_frames[1]) // 2 + 1))
            b.walk_to(_edge_x(cam, Z, direction), Z, speed, spec.fps)
            b.pause(rng.integers(5, 15), "outside")
            b.jump(_edge_x(cam, Z, -direction), Z)
        plans.append(person_plan(rng, spec, b))
    return plans


def plan_crossing(rng: np.random.Generator, spec: MotionSpec, cam: Camera) -> list[PersonPlan]:
    """Pairs of people who walk towards each other and cross at nearly the same depth.

    At the crossing both may stop for ``occlusion_frames`` frames, the one
    behind hidden by the one in front (a long occlusion). An odd person out
    walks across on its own.
    """
    plans = []
    T = spec.num_frames
    n_pairs = spec.people // 2
    for p in range(n_pairs):
        tc = float(rng.uniform(0.25, 0.65) * T) if n_pairs == 1 else float((p + rng.uniform(0.3, 0.7)) / n_pairs * T)
        Zc = float(rng.uniform(*spec.z_range))
        Xc = float(rng.uniform(-0.5, 0.5) * cam.half_width_m(Zc))
        dz = float(rng.uniform(0.6, 2.0)) * rng.choice([-1, 1])
        hold = int(rng.integers(*spec.occlusion_frames, endpoint=True)) if spec.occlusion_frames[1] > 0 else 0
        for k, (side, z) in enumerate(((-1, Zc), (1, Zc + dz))):
            speed = _speed(rng, spec)
            t_meet = tc + rng.uniform(-3, 3)
            x_start = Xc + side * speed * t_meet / spec.fps
            b = PathBuilder(x_start, z + rng.uniform(-0.2, 0.2))
            b.walk_to(Xc, z, speed, spec.fps)
            # arrive at the meeting point at t_meet whatever the start clipping did
            b.points[-1] = (t_meet, *b.points[-1][1:])
            if hold:
                b.pause(hold, "occlusion_hold")
            b.walk_to(_edge_x(cam, z, -side), z + rng.uniform(-0.3, 0.3), speed, spec.fps)
            while b.t < T:  # come back for another crossing later
                b.pause(rng.integers(5, 20), "turn")
                b.walk_to(_edge_x(cam, z, -np.sign(b.pos[0]) or 1), z, _speed(rng, spec), spec.fps)
            plans.append(person_plan(rng, spec, b))
    if spec.people % 2:
        Z = float(rng.uniform(*spec.z_range))
        side = int(rng.choice([-1, 1]))
        b = PathBuilder(_edge_x(cam, Z, side), Z)
        while b.t < T:
            side = -side
            _walk_across(rng, spec, cam, b, side, Z)
        plans.append(person_plan(rng, spec, b))
    return plans


def plan_crowd(rng: np.random.Generator, spec: MotionSpec, cam: Camera) -> list[PersonPlan]:
    """Many people wandering between random points of the visible ground, with pauses."""
    plans = []
    z0, z1 = spec.z_range
    for _ in range(spec.people):
        Z = float(rng.uniform(z0, z1))
        b = PathBuilder(float(rng.uniform(-0.9, 0.9) * cam.half_width_m(Z)), Z)
        while b.t < spec.num_frames:
            Zn = float(np.clip(b.pos[1] + rng.normal(0, (z1 - z0) / 3), z0, z1))
            Xn = float(rng.uniform(-1.1, 1.1) * cam.half_width_m(Zn))
            b.walk_to(Xn, Zn, _speed(rng, spec), spec.fps)
            if rng.random() < spec.pause_prob:
                b.pause(rng.integers(*spec.pause_frames, endpoint=True))
        plans.append(person_plan(rng, spec, b))
    return plans


def plan_reentry(rng: np.random.Generator, spec: MotionSpec, cam: Camera) -> list[PersonPlan]:
    """People walk out of the view, stay out for ``reentry_gap`` frames and come back.

    Each visit: walk in to a point of the view, maybe pause, leave by the
    nearer edge. A person returns by the edge it left (turning round outside)
    or by the other one, at a possibly different depth. Half the people start
    in view, the others walk in during the first quarter.
    """
    plans = []
    T = spec.num_frames
    for i in range(spec.people):
        Z = float(rng.uniform(*spec.z_range))
        side = int(rng.choice([-1, 1]))
        if i % 2 == 0:
            b = PathBuilder(float(side * rng.uniform(0.1, 0.8) * cam.half_width_m(Z)), Z)
        else:
            b = PathBuilder(_edge_x(cam, Z, side, margin=0.8), Z)
            b.pause(rng.integers(0, T // 4 + 1), "outside")
            b.walk_to(side * rng.uniform(-0.5, 0.7) * cam.half_width_m(Z), Z, _speed(rng, spec), spec.fps)
        while b.t < T:
            x, z = b.pos
            side = 1 if x > 0 else -1
            b.walk_to(_edge_x(cam, z, side, margin=0.8), z + rng.uniform(-0.3, 0.3), _speed(rng, spec), spec.fps)
            b.pause(rng.integers(*spec.reentry_gap, endpoint=True), "outside")
            if rng.random() < 0.5:  # come back by the other edge, at another depth
                side = -side
                z = float(rng.uniform(*spec.z_range))
                b.jump(_edge_x(cam, z, side, margin=0.8), z)
            z = b.pos[1]
            b.walk_to(side * rng.uniform(-0.5, 0.7) * cam.half_width_m(z), z, _speed(rng, spec), spec.fps)
            if rng.random() < spec.pause_prob:
                b.pause(rng.integers(*spec.pause_frames, endpoint=True))
        plans.append(person_plan(rng, spec, b))
    return plans


SCENARIOS = {"walk": plan_walk, "crossing": plan_crossing, "crowd": plan_crowd, "reentry": plan_reentry}


def plan_people(scenario: str, rng: np.random.Generator, spec: MotionSpec, cam: Camera) -> list[PersonPlan]:
    try:
        fn = SCENARIOS[scenario]
    except KeyError:
        raise CorrtrackError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}") from None
    return fn(rng, spec, cam)
