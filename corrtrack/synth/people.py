"""Real people to put into synthetic scenes: cut-outs from COCO person-keypoint files.

A ``Cutout`` is one annotated person cut out of its image with its segmentation
mask (COCO polygons or RLE, decoded by pycocotools) and its keypoints, in the
coordinates of a tight crop around the mask.

Which joints count as annotated: COCO marks a joint 1 (labelled, hidden) or 2
(labelled, visible). A cut-out shows only the mask's pixels, so a joint is
kept only when it is labelled *and* its pixel lies on the mask; the hidden
joints of COCO (behind a ski pole, another person, the image border) fall off
the mask and are dropped. The raw labelled positions are still used for the
geometry that does not depend on visibility: the PoseTrack head points and
head box (see ``corrtrack.synth.render``), the person's scale and facing.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corrtrack.errors import CorrtrackError
from corrtrack.layouts import COCO17

# Standing height from the torso: shoulder-midpoint to hip-midpoint is about
# 0.3 of a person's height (anthropometric tables give 0.28–0.31). Using the
# torso rather than the mask keeps sitting or crouching people at a sane size.
TORSO_FRACTION = 0.30


@dataclass
class Cutout:
    """One person: RGB crop, mask and COCO-17 keypoints in crop coordinates.

    keypoints (17, 3): x, y, v with v = 1 for joints kept (labelled and on the
    mask), 0 otherwise. ``labelled`` (17, 3) holds every labelled position
    (COCO v > 0) whether on the mask or not.
    """

    rgb: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) bool
    keypoints: np.ndarray  # (17, 3)
    labelled: np.ndarray  # (17, 3)
    source: dict = field(default_factory=dict)  # file, image, annotation id, crop offset

    @property
    def height_px(self) -> float:
        """Estimated standing height in crop pixels (torso-based, else mask height)."""
        kp = self.labelled
        sh, hp = kp[[5, 6]], kp[[11, 12]]
        if (sh[:, 2] > 0).all() and (hp[:, 2] > 0).all():
            torso = np.hypot(*(sh[:, :2].mean(0) - hp[:, :2].mean(0)))
            if torso > 5:
                return float(torso / TORSO_FRACTION)
        ys = np.flatnonzero(self.mask.any(1))
        return float(ys[-1] - ys[0] + 1)

    @property
    def anchor(self) -> np.ndarray:
        """Where the person stands: bottom centre of the mask (crop coordinates)."""
        ys, xs = np.flatnonzero(self.mask.any(1)), np.flatnonzero(self.mask.any(0))
        return np.array([(xs[0] + xs[-1]) / 2.0, float(ys[-1])])

    @property
    def faces_right(self) -> bool:
        """Facing from the nose relative to the shoulders (default: right)."""
        kp = self.labelled
        if kp[0, 2] > 0 and (kp[[5, 6], 2] > 0).all():
            return bool(kp[0, 0] >= kp[[5, 6], 0].mean())
        return True

    def digest(self) -> str:
        """Content hash (pixels, mask, keypoints): identifies the cut-out in manifests."""
        h = hashlib.sha256()
        for a in (self.rgb, self.mask.astype(np.uint8), self.keypoints.astype(np.float64)):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class CutoutFilter:
    """Which annotated people are good enough to use."""

    min_height: float = 100.0  # estimated standing height in source pixels
    min_keypoints: int = 8  # joints kept (labelled and on the mask)
    min_mask_pixels: int = 1500
    need_head: bool = True  # nose and both shoulders labelled (the PoseTrack head points need them)


def _decode_mask(seg, h: int, w: int) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):  # polygons
        polys = [p for p in seg if isinstance(p, list) and len(p) >= 6]
        if not polys:
            return np.zeros((h, w), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    elif isinstance(seg, dict) and "counts" in seg:
        rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
    else:
        raise ValueError("segmentation is neither polygons nor RLE")
    with warnings.catch_warnings():  # pycocotools 2.0 vs numpy 2 "copy keyword" deprecation, harmless
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def _read_rgb(path: Path) -> np.ndarray | None:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_cutouts(coco_json: str | os.PathLike, image_dir: str | os.PathLike | None = None,
                 filt: CutoutFilter = CutoutFilter(), limit: int | None = None) -> list[Cutout]:
    """Cut usable people out of a COCO person-keypoints file with segmentation masks.

    Images are looked up in ``image_dir`` (default: the JSON's folder), by file
    name, then under ``images/``. Sorted by (image id, annotation id), so the
    result does not depend on file order. Raises ``CorrtrackError`` for a file
    that is not COCO keypoints with masks, or that yields no usable person.
    """
    path = Path(coco_json)
    if not path.is_file():
        raise CorrtrackError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorrtrackError(f"{path}: not a valid JSON file ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) \
            or not isinstance(data.get("images"), list):
        raise CorrtrackError(f"{path}: not a COCO annotation file (needs 'images' and 'annotations')")
    cats = [c for c in data.get("categories") or [] if isinstance(c, dict)]
    kp_cats = {c.get("id") for c in cats if list(c.get("keypoints") or []) == list(COCO17.joints)}
    anns = [a for a in data["annotations"] if isinstance(a, dict) and not a.get("iscrowd")
            and (not kp_cats or a.get("category_id") in kp_cats)]
    if not any(len(a.get("keypoints") or []) == 51 for a in anns):
        raise CorrtrackError(f"{path}: has no COCO-17 person keypoints (people need 17 keypoints to be cut out)")
    if not any(a.get("segmentation") for a in anns):
        raise CorrtrackError(f"{path}: has no segmentation masks (people are cut out along their masks)")

    image_dir = Path(image_dir) if image_dir is not None else path.parent
    images = {im["id"]: im for im in data["images"] if isinstance(im, dict) and "id" in im}
    anns.sort(key=lambda a: (a.get("image_id"), a.get("id", 0)))
    out: list[Cutout] = []
    loaded: dict = {}
    missing_images = 0
    for a in anns:
        if limit is not None and len(out) >= limit:
            break
        kp = np.asarray(a.get("keypoints") or [], np.float64)
        if kp.size != 51 or not a.get("segmentation") or a.get("num_keypoints", 1) < filt.min_keypoints:
            continue
        im = images.get(a.get("image_id"))
        if im is None:
            continue
        if im["id"] not in loaded:
            loaded[im["id"]] = _find_image(image_dir, im)
        rgb = loaded[im["id"]]
        if rgb is None:
            missing_images += 1
            continue
        h, w = rgb.shape[:2]
        try:
            mask = _decode_mask(a["segmentation"], h, w)
        except (ValueError, TypeError, KeyError) as e:
            raise CorrtrackError(f"{path}: annotation {a.get('id')}: bad segmentation ({e})") from None
        cut = _cut(rgb, mask, kp.reshape(17, 3), {"file": str(path), "image_id": im["id"],
                                                  "file_name": im.get("file_name"), "annotation_id": a.get("id")})
        if cut is not None and _usable(cut, filt):
            out.append(cut)
    if not out:
        extra = f" ({missing_images} people's images not found under {image_dir})" if missing_images else ""
        raise CorrtrackError(f"{path}: no usable person (need a mask, >= {filt.min_keypoints} keypoints on it "
                             f"and >= {filt.min_height:.0f} px height){extra}")
    return out


def _find_image(image_dir: Path, im: dict) -> np.ndarray | None:
    name = im.get("file_name") or ""
    for cand in (image_dir / name, image_dir / "images" / name, image_dir / Path(name).name):
        if cand.is_file():
            return _read_rgb(cand)
    return None


def _cut(rgb: np.ndarray, mask: np.ndarray, kp: np.ndarray, source: dict, pad: int = 2) -> Cutout | None:
    """Crop to the mask (plus ``pad`` px) and keep the joints that lie on it."""
    if not mask.any():
        return None
    h, w = mask.shape
    ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    x0, y0 = max(0, xs[0] - pad), max(0, ys[0] - pad)
    x1, y1 = min(w, xs[-1] + 1 + pad), min(h, ys[-1] + 1 + pad)
    crop_mask = mask[y0:y1, x0:x1].copy()
    crop_rgb = rgb[y0:y1, x0:x1].copy()
    crop_rgb[~crop_mask] = 0  # nothing of the old background survives in the cut-out
    labelled = kp.copy()
    labelled[labelled[:, 2] <= 0] = 0
    labelled[labelled[:, 2] > 0, :2] -= (x0, y0)
    labelled[labelled[:, 2] > 0, 2] = 1
    keep = labelled.copy()
    for j in np.flatnonzero(keep[:, 2] > 0):
        xi, yi = int(round(keep[j, 0])), int(round(keep[j, 1]))
        if not (0 <= xi < crop_mask.shape[1] and 0 <= yi < crop_mask.shape[0] and crop_mask[yi, xi]):
            keep[j] = 0
    return Cutout(crop_rgb, crop_mask, keep, labelled, dict(source, crop_xy=[int(x0), int(y0)]))


def _usable(c: Cutout, filt: CutoutFilter) -> bool:
    if int(c.mask.sum()) < filt.min_mask_pixels or (c.keypoints[:, 2] > 0).sum() < filt.min_keypoints:
        return False
    if filt.need_head and not (c.labelled[[0, 5, 6], 2] > 0).all():
        return False
    return c.height_px >= filt.min_height


def recolour(c: Cutout, hue_shift: int, min_saturation: int = 60) -> Cutout:
    """A look-alike: the same cut-out with the hue of its coloured pixels turned.

    Only pixels with saturation >= ``min_saturation`` (clothes, mostly; skin
    and grey stay) change. ``hue_shift`` is in OpenCV hue units (0..179).
    """
    import cv2

    hsv = cv2.cvtColor(c.rgb, cv2.COLOR_RGB2HSV)
    sel = (hsv[..., 1] >= min_saturation) & c.mask
    hsv[..., 0][sel] = ((hsv[..., 0][sel].astype(np.int32) + hue_shift) % 180).astype(np.uint8)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    rgb[~c.mask] = 0
    return Cutout(rgb, c.mask, c.keypoints, c.labelled, dict(c.source, hue_shift=int(hue_shift)))
