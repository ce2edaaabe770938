"""Drawing poses, boxes and track ids on frames."""
from corrtrack.viz.draw import color_for_id, draw_poses

__all__ = ["color_for_id", "draw_poses"]
