"""One synthetic sequence: who is in it, how they move, and its frames with their truth."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from corrtrack.errors import CorrtrackError
from corrtrack.synth.backgrounds import Background
from corrtrack.synth.config import SynthConfig
from corrtrack.synth.motion import PERSON_HEIGHT_M, MotionSpec, PathBuilder, PersonPlan, person_plan, plan_people
from corrtrack.synth.occluders import Occluder, draw_occluder, plan_occluders
from corrtrack.synth.people import Cutout, recolour
from corrtrack.synth.render import Actor, PersonTruth, facing, render_frame, transform

PLAN_TRIES = 200


@dataclass
class Scene:
    name: str
    number: int  # PoseTrack sequence number (the leading digits of the name)
    cfg: SynthConfig
    background: Background
    actors: list[Actor]
    flips: np.ndarray  # (N, T_base) bool
    shake: np.ndarray  # (T_base, 2) px
    gain: np.ndarray  # (T_base,) brightness factor
    seed: dict  # how the random generator was seeded
    plan_tries: int
    occluders: list[Occluder] = field(default_factory=list)  # static poles and signs

    @property
    def base_frames(self) -> np.ndarray:
        """Base-rate frame index of every output frame."""
        return np.arange(self.cfg.num_frames) * self.cfg.frame_step

    def heights(self, k: int) -> list[float]:
        cam = self.cfg.camera
        return [float(cam.pixels_per_metre(a.plan.Z[k]) * PERSON_HEIGHT_M * a.plan.height_factor) for a in self.actors]


def _motion_spec(cfg: SynthConfig, people: int) -> MotionSpec:
    return MotionSpec(num_frames=cfg.num_frames * cfg.frame_step, fps=cfg.fps, people=people,
                      z_range=cfg.z_range, speed=cfg.speed, pause_prob=cfg.pause_prob,
                      pause_frames=cfg.pause_frames, occlusion_frames=cfg.occlusion_frames,
                      reentry_gap=cfg.reentry_gap, max_rotation=cfg.max_rotation)


def contact_fraction(plans: list[PersonPlan], cfg: SynthConfig) -> float:
    """Fraction of output frames in which two people's (approximate) boxes overlap in view."""
    cam = cfg.camera
    k = np.arange(cfg.num_frames) * cfg.frame_step
    boxes = []
    for p in plans:
        u, v = cam.project(p.X[k], p.Z[k])
        h = cam.pixels_per_metre(p.Z[k]) * PERSON_HEIGHT_M * p.height_factor
        boxes.append(np.stack([u - 0.22 * h, v - h, u + 0.22 * h, v], 1))
    b = np.stack(boxes, 1)  # (T, N, 4)
    in_view = (b[..., 2] > 0) & (b[..., 0] < cfg.width) & (b[..., 3] > 0) & (b[..., 1] < cfg.height)
    ix = np.minimum(b[:, :, None, 2], b[:, None, :, 2]) - np.maximum(b[:, :, None, 0], b[:, None, :, 0])
    iy = np.minimum(b[:, :, None, 3], b[:, None, :, 3]) - np.maximum(b[:, :, None, 1], b[:, None, :, 1])
    touch = (ix > 0) & (iy > 0) & in_view[:, :, None] & in_view[:, None, :]
    n = b.shape[1]
    touch[:, np.arange(n), np.arange(n)] = False
    return float(touch.any(axis=(1, 2)).mean())


def _occluders(cfg: SynthConfig, plans: list[PersonPlan], seed: int, stream: tuple[int, ...]) -> list[Occluder]:
    """The static occluders, from a random stream of their own.

    Drawing them from the people's generator would shift every later draw, so the sequences of presets
    without occluders would change; with a separate stream, asking for none draws nothing at all.
    """
    if cfg.occluders[1] == 0:
        return []
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*stream, 1)))
    frames = np.arange(cfg.num_frames) * cfg.frame_step
    return plan_occluders(rng, cfg.occluders, cfg.camera, cfg.z_range, plans, frames)


def _standing(cfg: SynthConfig, cutouts: list[Cutout], taken: list[Cutout], seed: int, stream: tuple[int, ...]
              ) -> list[tuple[Cutout, PersonPlan]]:
    """People who stand still for the whole sequence, from a random stream of their own (as the occluders).

    The first stands anywhere in the middle 70 % of the view at a depth of the walkers' range, so walkers
    pass in front of and behind; the others join the group, 0.5-1.2 m beside and 0.4 m before or after
    the one before them. Distinct people, none of the walkers.
    """
    if cfg.standing[1] == 0:
        return []
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*stream, 2)))
    k = int(rng.integers(cfg.standing[0], cfg.standing[1], endpoint=True))
    free = [c for c in cutouts if all(c is not t for t in taken)]
    if k > len(free):
        raise CorrtrackError(f"synth: {len(taken)} walkers and {k} standing people need {len(taken) + k} different "
                             f"people but the people source has only {len(cutouts)} usable ones")
    cam, spec = cfg.camera, _motion_spec(cfg, k)
    lo, hi = cfg.z_range
    Z = float(rng.uniform(lo + 0.15 * (hi - lo), lo + 0.6 * (hi - lo)))
    X = float(rng.uniform(-0.7, 0.7) * cam.half_width_m(Z))
    side = float(rng.choice([-1.0, 1.0]))
    out = []
    for i in rng.choice(len(free), k, replace=False):
        out.append((free[i], person_plan(rng, spec, PathBuilder(X, Z).pause(spec.num_frames, "standing"))))
        X += side * float(rng.uniform(0.5, 1.2))
        Z = float(np.clip(Z + rng.uniform(-0.4, 0.4), lo, hi))
    return out


def build_scene(cfg: SynthConfig, cutouts: list[Cutout], background: Background, seed: int, stream: tuple[int, ...],
                name: str, number: int) -> Scene:
    """Choose people and paths for one sequence, deterministically from (seed, stream)."""
    ss = np.random.SeedSequence(seed, spawn_key=stream)
    rng = np.random.default_rng(ss)
    n = int(rng.integers(cfg.people[0], cfg.people[1], endpoint=True))
    distinct = n - cfg.lookalikes
    if distinct > len(cutouts):
        raise CorrtrackError(f"synth: a sequence needs {distinct} different people but the people source has only "
                             f"{len(cutouts)} usable ones; use fewer --people, more --lookalikes or a larger COCO file")
    chosen = [cutouts[i] for i in rng.choice(len(cutouts), distinct, replace=False)]
    looks = []
    for _ in range(cfg.lookalikes):
        j = int(rng.integers(distinct))
        looks.append((j, recolour(chosen[j], int(rng.integers(25, 65)) * int(rng.choice([-1, 1])))))
    cams = cfg.camera
    spec = _motion_spec(cfg, n)
    for tries in range(1, PLAN_TRIES + 1):
        plans = plan_people(cfg.scenario, rng, spec, cams)
        if cfg.max_contact is None or contact_fraction(plans, cfg) <= cfg.max_contact:
            break
    else:
        raise CorrtrackError(f"synth: could not place {n} people in a {cfg.width}x{cfg.height} {cfg.scenario} scene "
                             f"with at most {cfg.max_contact:.0%} of frames in contact ({PLAN_TRIES} tries); "
                             "use fewer --people or a wider --depth range")
    # Look-alikes take the last ids; shuffle who is who so ids say nothing about appearance.
    people = chosen + [c for _, c in looks]
    origin = list(range(distinct)) + [j for j, _ in looks]
    order = rng.permutation(n)
    actors = []
    for tid, slot in enumerate(order):
        look = None if slot < distinct else int(np.flatnonzero(order == origin[slot])[0])
        actors.append(Actor(tid, people[slot], plans[tid], lookalike_of=look))
    for cutout, plan in _standing(cfg, cutouts, chosen, seed, stream):
        actors.append(Actor(len(actors), cutout, plan))
    T = spec.num_frames
    flips = np.stack([facing(a, cams) for a in actors])
    shake = np.zeros((T, 2))
    if cfg.shake > 0:
        from scipy.ndimage import gaussian_filter1d

        noise = gaussian_filter1d(rng.normal(size=(T, 2)), 1.5, axis=0)
        shake = noise / max(1e-9, noise.std()) * cfg.shake / 2
    gain = np.ones(T)
    if cfg.brightness > 0:
        period = rng.uniform(60, 160)
        gain = 1 + cfg.brightness * np.sin(2 * np.pi * np.arange(T) / period + rng.uniform(0, 2 * np.pi))
    seed_info = {"seed": int(seed), "spawn_key": [int(s) for s in stream]}
    occluders = _occluders(cfg, [a.plan for a in actors], seed, stream)
    return Scene(name, number, cfg, background, actors, flips, shake, gain, seed_info, tries, occluders)


def render_scene(scene: Scene) -> Iterator[tuple[int, np.ndarray, list[PersonTruth]]]:
    """Stream (frame index, RGB image, truth per actor) for every output frame."""
    import cv2

    cfg, cam = scene.cfg, scene.cfg.camera
    bg = scene.background.image
    step = cfg.frame_step
    sprites = [draw_occluder(o, cam) for o in scene.occluders]
    for j, k in enumerate(scene.base_frames):
        sh = scene.shake[k]
        base = bg
        if cfg.shake > 0:
            base = cv2.warpAffine(bg, np.array([[1, 0, sh[0]], [0, 1, sh[1]]], np.float64), (cfg.width, cfg.height),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        Ms = [transform(a, cam, k, bool(scene.flips[i, k]), (sh[0], sh[1])) for i, a in enumerate(scene.actors)]
        vel = None
        if cfg.blur > 0:
            kp = max(0, k - step)
            vel = []
            for a in scene.actors:
                u0, v0 = cam.project(a.plan.X[kp], a.plan.Z[kp])
                u1, v1 = cam.project(a.plan.X[k], a.plan.Z[k])
                vel.append((float(u1 - u0), float(v1 - v0)))
        statics = [(sp, sp.transform((sh[0], sh[1]))) for sp in sprites]
        image, truths = render_frame(base, scene.actors, Ms, scene.heights(k), list(scene.flips[:, k]), vel, cfg.blur,
                                     statics)
        if cfg.brightness > 0:
            image = cv2.convertScaleAbs(image, alpha=float(scene.gain[k]))
        if cfg.jpeg_quality > 0:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
            image = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        yield j, image, truths
