"""Knobs of the generator and the standard presets.

A preset is a named ``SynthConfig`` plus how many sequences it makes; the CLI
replaces single fields for its flags. ``all`` is the project's tracking
benchmark: every preset's sequences together.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from corrtrack.errors import CorrtrackError
from corrtrack.synth.motion import SCENARIOS, Camera


PERSONAL_SPACE_M2 = 1.0  # ground a walking person needs (a dense crowd has ~1 person per m2)
MAX_OCCLUDERS = 10  # more would wall the view off
MAX_STANDING = 8


@dataclass(frozen=True)
class SynthConfig:
    scenario: str = "walk"  # walk | crossing | crowd | reentry (see corrtrack.synth.motion)
    num_sequences: int = 8
    num_frames: int = 150  # frames written per sequence
    width: int = 768
    height: int = 576
    fps: float = 25.0  # motion is planned at this rate
    frame_step: int = 1  # keep every k-th frame: a lower frame rate, k times larger motion per frame
    people: tuple[int, int] = (2, 4)  # people (track ids) per sequence, inclusive range
    lookalikes: int = 0  # people who are a recoloured copy of another person of the sequence
    z_range: tuple[float, float] = (4.5, 13.0)  # depths people walk at, metres
    speed: tuple[float, float] = (0.9, 1.6)  # walking speed, m/s
    pause_prob: float = 0.3  # chance of a pause per walked segment
    pause_frames: tuple[int, int] = (10, 40)
    occlusion_frames: tuple[int, int] = (0, 0)  # crossing: both stop where they meet for this long
    reentry_gap: tuple[int, int] = (15, 45)  # reentry: frames spent out of view
    occluders: tuple[int, int] = (0, 0)  # static occluders (poles, signs) per sequence, inclusive range
    # People who stand still for the whole sequence, on top of ``people`` (a group chatting at a sign:
    # walkers pass in front of and behind them), inclusive range
    standing: tuple[int, int] = (0, 0)
    max_rotation: float = 4.0  # degrees of slow sway
    max_contact: float | None = None  # at most this fraction of frames with two people overlapping
    min_height: float = 50.0  # px: people shorter than this are ignore regions, not annotated
    brightness: float = 0.0  # amplitude of a slow global brightness change (0.2 = +-20 %)
    blur: float = 0.0  # motion blur: exposure as a fraction of the frame interval (0.5 = half)
    jpeg_quality: int = 0  # re-encode every frame as JPEG of this quality (0 = off)
    shake: float = 0.0  # camera shake amplitude in pixels
    focal: float = 700.0
    horizon: float = 0.20
    cam_height: float = 2.6

    @property
    def camera(self) -> Camera:
        return Camera(self.width, self.height, self.focal, self.horizon, self.cam_height)

    @property
    def output_fps(self) -> float:
        return self.fps / self.frame_step

    def validate(self) -> None:
        """CorrtrackError with one line for knobs that cannot work."""
        def bad(msg: str) -> CorrtrackError:
            return CorrtrackError(f"synth: {msg}")

        if self.scenario not in SCENARIOS:
            raise bad(f"unknown scenario {self.scenario!r}; known: {', '.join(SCENARIOS)}")
        if not 1 <= self.num_sequences <= 999:
            raise bad(f"--sequences must be 1..999, got {self.num_sequences}")
        if not 2 <= self.num_frames <= 9999:  # PoseTrack frame numbers have 4 digits
            raise bad(f"--length must be 2..9999 frames, got {self.num_frames}")
        if self.width < 64 or self.height < 64 or self.width % 2 or self.height % 2:
            raise bad(f"frame size must be even and at least 64x64, got {self.width}x{self.height}")
        lo, hi = self.people
        if lo < 1 or hi < lo:
            raise bad(f"--people must be N or LO-HI with 1 <= LO <= HI, got {lo}-{hi}")
        if self.scenario == "crossing" and hi < 2:
            raise bad("the crossing scenario needs at least 2 people")
        if not 0 <= self.occluders[0] <= self.occluders[1] <= MAX_OCCLUDERS:
            raise bad(f"--occluders must be N or LO-HI with 0 <= LO <= HI <= {MAX_OCCLUDERS}, "
                      f"got {self.occluders[0]}-{self.occluders[1]}")
        if not 0 <= self.standing[0] <= self.standing[1] <= MAX_STANDING:
            raise bad(f"--standing must be N or LO-HI with 0 <= LO <= HI <= {MAX_STANDING}, "
                      f"got {self.standing[0]}-{self.standing[1]}")
        if self.lookalikes < 0 or self.lookalikes >= lo:
            raise bad(f"--lookalikes must be 0..{lo - 1} (fewer than the people of a sequence), got {self.lookalikes}")
        for name in ("z_range", "speed", "pause_frames", "occlusion_frames", "reentry_gap"):
            a, b = getattr(self, name)
            if a < 0 or b < a:
                raise bad(f"{name} must be a range LO <= HI of non-negative numbers, got {a}-{b}")
        if self.z_range[0] <= 0.5:
            raise bad(f"z_range starts too near the camera ({self.z_range[0]} m)")
        ground = self.width / self.focal * (self.z_range[1] ** 2 - self.z_range[0] ** 2) / 2
        if hi + self.standing[1] > ground / PERSONAL_SPACE_M2:
            raise bad(f"--people {hi} (and --standing {self.standing[1]}): more people than fit; the view shows {ground:.0f} m2 of ground between "
                      f"{self.z_range[0]:g} and {self.z_range[1]:g} m and each person needs {PERSONAL_SPACE_M2:g} m2")
        near_height = self.focal * 1.7 / self.z_range[0]
        if near_height > 2 * self.height:
            raise bad(f"people at {self.z_range[0]} m would be {near_height:.0f} px tall, "
                      f"more than fits in a {self.height} px frame")
        if self.frame_step < 1 or self.fps <= 0:
            raise bad("--frame-step must be >= 1 and --fps > 0")
        if not 0 <= self.jpeg_quality <= 100 or self.blur < 0 or self.shake < 0 or not 0 <= self.brightness < 1:
            raise bad("effects out of range: --jpeg-quality 0..100, --blur >= 0, --shake >= 0, --brightness 0..1")
        if not 0 < self.horizon < 1:
            raise bad(f"horizon must be a fraction of the height in (0, 1), got {self.horizon}")

    def knobs(self) -> dict:
        knobs = dataclasses.asdict(self)
        for name in ("occluders", "standing"):  # added later: manifests of sequences without them keep their bytes
            if knobs[name] == (0, 0):
                del knobs[name]
        return knobs


@dataclass(frozen=True)
class Preset:
    name: str
    code: int  # first digits of the PoseTrack sequence numbers
    config: SynthConfig
    about: str


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("walk", 1, SynthConfig(scenario="walk", people=(2, 4), max_contact=0.1, pause_prob=0.15),
           "few people on separate paths, little contact"),
    Preset("crossing", 2, SynthConfig(scenario="crossing", people=(4, 6), occlusion_frames=(10, 30),
                                      z_range=(5.0, 10.0), pause_prob=0.2),
           "pairs crossing at nearly the same depth, stopping while one hides the other"),
    Preset("crowd", 3, SynthConfig(scenario="crowd", people=(8, 12), lookalikes=2, z_range=(5.0, 28.0),
                                   pause_prob=0.4),
           "8-12 people wandering, two of them look-alikes (recoloured copies)"),
    Preset("reentry", 4, SynthConfig(scenario="reentry", num_frames=200, people=(2, 4), reentry_gap=(10, 40),
                                     z_range=(4.5, 9.0)),
           "people leave the view and come back with the same id"),
    # Sports-like motion, the case the paper's gain over OKS comes from (section 6.2): people running
    # 2-4.5 m/s between random points, every 2nd frame kept (12.5 fps: 15-35 px per frame at 6-12 m),
    # a hand-held camera's shake and motion blur. The other presets are walking people and a still camera.
    Preset("fast", 5, SynthConfig(scenario="crowd", people=(4, 6), speed=(2.0, 4.5), frame_step=2,
                                  z_range=(5.0, 14.0), pause_prob=0.2, pause_frames=(5, 15), shake=10.0, blur=0.5),
           "4-6 people running, every 2nd frame, camera shake and motion blur"),
    # The demo video's main failure: walkers passing behind a sign on a pole. 'walk' paths cross the whole
    # view, so each person passes every occluder nearer than its lane, and the nearest lanes pass in front.
    Preset("occluders", 6, SynthConfig(scenario="walk", people=(2, 4), max_contact=0.1, pause_prob=0.15,
                                       occluders=(2, 3)),
           "people walk behind poles and signs (static occluders)"),
    # The demo video's other scene: people standing together by the sign while others walk past, behind them
    # and in front. Not in 'all' (its figures were published before it existed); `--suite standing`.
    Preset("standing", 7, SynthConfig(scenario="walk", people=(2, 4), standing=(2, 3), pause_prob=0.15),
           "people walk past others who stand still (in front of them and behind)"),
)}
# 'all' is the benchmark whose numbers are published; a new preset joins it only on purpose (its
# figures are rerun then).
SUITES: dict[str, tuple[str, ...]] = {**{n: (n,) for n in PRESETS},
                                      "all": ("walk", "crossing", "crowd", "reentry", "fast", "occluders")}


def preset_names() -> list[str]:
    return list(SUITES)
