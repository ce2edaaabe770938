import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from corrtrack.errors import CorrtrackError
from corrtrack.io.video import VideoWriter, natural_key, open_source

# Flat colours (RGB) that survive JPEG/MPEG-4 compression recognisably.
COLORS = [(230, 30, 30), (30, 230, 30), (30, 30, 230), (230, 230, 30), (30, 230, 230), (230, 30, 230),
          (240, 240, 240), (20, 20, 20), (128, 64, 200), (200, 128, 64)]


def _make_avi(path: Path, n: int = 10, fps: float = 10.0, size=(64, 48)) -> Path:
    """MJPG AVI whose frame i is the flat colour COLORS[i % 10] (every frame is its own JPEG)."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), COLORS[i % len(COLORS)][::-1], np.uint8))  # BGR
    w.release()
    return path


def _color_index(image: np.ndarray) -> int:
    mean = image.reshape(-1, 3).mean(0)
    return int(np.argmin([np.abs(mean - c).sum() for c in COLORS]))


def test_video_frames_indices_times_and_rgb(tmp_path):
    path = _make_avi(tmp_path / "clip.avi")
    with open_source(path) as src:
        assert (src.kind, src.fps, src.num_frames, src.width, src.height) == ("video", 10.0, 10, 64, 48)
        assert src.name == "clip" and src.expected_frames == 10
        frames = list(src)
    assert [f.index for f in frames] == list(range(10))
    assert np.allclose([f.time for f in frames], np.arange(10) / 10.0)
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [_color_index(f.image) for f in frames] == list(range(10))  # RGB, not BGR
    assert frames[0].image[..., 0].mean() > 200 and frames[0].image[..., 2].mean() < 60


def test_video_range_selection(tmp_path):
    path = _make_avi(tmp_path / "clip.avi")
    src = open_source(path, start=2, end=9, step=3)
    frames = list(src)
    assert [f.index for f in frames] == [2, 5, 8] and src.expected_frames == 3
    assert [_color_index(f.image) for f in frames] == [2, 5, 8]
    assert np.allclose([f.time for f in frames], [0.2, 0.5, 0.8])
    # Iterating again decodes again from the start.
    assert [f.index for f in src] == [2, 5, 8]
    assert list(open_source(path, start=50)) == []
    with pytest.raises(ValueError):
        open_source(path, step=0)


def test_video_with_corrupt_middle_frame_skips_it(tmp_path, caplog):
    path = _make_avi(tmp_path / "clip.avi")
    data = bytearray(path.read_bytes())
    soi = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(soi) == 10
    data[soi[5]:soi[5] + 200] = bytes(200)  # wipe the start of frame 5's JPEG
    bad = tmp_path / "bad.avi"
    bad.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="corrtrack.io.video"):
        frames = list(open_source(bad))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert [_color_index(f.image) for f in frames] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert np.allclose([f.time for f in frames], [f.index / 10 for f in frames])
    assert any("frame 5" in r.getMessage() and "bad.avi" in r.getMessage() for r in caplog.records)


def test_folder_source_natural_order_and_conversions(tmp_path, caplog):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "f10.png"), np.full((20, 30, 3), (0, 0, 255), np.uint8))  # BGR red
    cv2.imwrite(str(folder / "f2.png"), np.full((20, 30), 77, np.uint8))  # grayscale
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 1] = 200  # green in BGRA
    rgba[..., 3] = 255
    cv2.imwrite(str(folder / "f1.png"), rgba)
    (folder / "f3.jpg").write_bytes(b"not really a jpeg")
    (folder / "notes.txt").write_text("ignored")
    with caplog.at_level(logging.WARNING, logger="corrtrack.io.video"):
        src = open_source(folder, fps=25)
        frames = list(src)
    assert (src.kind, src.num_frames, src.width, src.height, src.name) == ("folder", 4, 30, 20, "frames")
    assert [f.name for f in frames] == ["f1.png", "f2.png", "f10.png"]  # f3.jpg unreadable, skipped
    assert [f.index for f in frames] == [0, 1, 3]
    assert np.allclose([f.time for f in frames], [0, 0.04, 0.12])
    assert all(f.image.shape == (20, 30, 3) for f in frames)
    assert frames[0].image[0, 0].tolist() == [0, 200, 0]
    assert frames[1].image[0, 0].tolist() == [77, 77, 77]
    assert frames[2].image[0, 0].tolist() == [255, 0, 0]
    assert any("f3.jpg" in r.getMessage() for r in caplog.records)
    # Without a frame rate, folder frames have no time.
    assert next(iter(open_source(folder))).time is None
    assert sorted(["a10", "a9", "a100"], key=natural_key) == ["a9", "a10", "a100"]


def test_single_image_source(tmp_path):
    path = tmp_path / "gray.png"
    cv2.imwrite(str(path), np.arange(12 * 16, dtype=np.uint8).reshape(12, 16))
    src = open_source(path)
    (frame,) = list(src)
    assert (src.kind, src.num_frames, src.width, src.height) == ("image", 1, 16, 12)
    assert frame.index == 0 and frame.name == "gray.png" and frame.image.shape == (12, 16, 3)
    assert (frame.image[..., 0] == frame.image[..., 2]).all() and frame.image[1, 0, 0] == 16
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), np.full((4, 4), 40000, np.uint16))
    assert next(iter(open_source(deep))).image[0, 0].tolist() == [156, 156, 156]


@pytest.mark.parametrize("case", ["missing", "text_as_video", "garbage", "empty_video", "empty_folder",
                                  "corrupt_image", "truncated_mp4"])
def test_bad_sources_name_the_file(tmp_path, case):
    if case == "missing":
        path = tmp_path / "nothere.mp4"
    elif case == "text_as_video":
        path = tmp_path / "notes.mp4"
        path.write_text("hello, I am not a video\n" * 50)
    elif case == "garbage":
        path = tmp_path / "noise.avi"
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif case == "empty_video":
        path = _make_avi(tmp_path / "empty.avi", n=0)
    elif case == "empty_folder":
        path = tmp_path / "nothing"
        path.mkdir()
        (path / "readme.txt").write_text("x")
    elif case == "corrupt_image":
        path = tmp_path / "broken.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    else:
        full = tmp_path / "full.mp4"
        with VideoWriter(full, fps=10) as w:
            for i in range(5):
                w.write(np.full((32, 32, 3), i * 40, np.uint8))
        path = tmp_path / "cut.mp4"
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CorrtrackError) as err:
        open_source(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_close_releases_partial_iteration(tmp_path):
    path = _make_avi(tmp_path / "clip.avi")
    with open_source(path) as src:
        it = iter(src)
        assert next(it).index == 0
    with pytest.raises(StopIteration):
        next(it)


def test_writer_round_trip(tmp_path):
    out = tmp_path / "sub" / "out.mp4"
    with VideoWriter(out, fps=12.5) as w:
        for i in range(6):
            w.write(np.full((48, 64, 3), COLORS[i], np.uint8))
    assert w.frames_written == 6
    assert [p.name for p in out.parent.iterdir()] == ["out.mp4"]  # no temporary left over
    src = open_source(out)
    frames = list(src)
    assert (src.fps, src.width, src.height, len(frames)) == (12.5, 64, 48, 6)
    assert [_color_index(f.image) for f in frames] == list(range(6))
    assert np.allclose([f.time for f in frames], np.arange(6) / 12.5)


def test_writer_is_atomic(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, fps=10) as w:
            w.write(np.zeros((16, 16, 3), np.uint8))
            raise KeyboardInterrupt
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    with pytest.raises(CorrtrackError, match="no frames"):
        with VideoWriter(tmp_path / "none.mp4", fps=10):
            pass
    assert not (tmp_path / "none.mp4").exists()
    w = VideoWriter(tmp_path / "size.mp4", fps=10)
    w.write(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="16x16"):
        w.write(np.zeros((16, 20, 3), np.uint8))
    with pytest.raises(ValueError):
        w.write(np.zeros((16, 16), np.uint8))
    w.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
