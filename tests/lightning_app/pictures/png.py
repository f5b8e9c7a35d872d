"""Reading back the PNG files the picture callbacks write."""

from pathlib import Path

import numpy as np


def read_png(path: Path) -> np.ndarray:
    """``(H, W, channels)`` floats in [0, 1]."""
    from matplotlib.image import imread

    return imread(path)


def assert_picture(path: Path, width: int, height: int) -> np.ndarray:
    """The PNG at ``path`` is ``width`` x ``height`` pixels (give or take the one that inches x dpi rounds off)
    and shows something: many colours, not one."""
    pixels = read_png(path)
    found = pixels.shape[1], pixels.shape[0]
    assert abs(found[0] - width) <= 1 and abs(found[1] - height) <= 1, f"{path}: {found}, expected {width}x{height}"
    colours = np.unique(pixels[..., :3].reshape(-1, 3).round(2), axis=0)
    assert len(colours) > 20 and pixels[..., :3].std() > 0.05, f"{path} is blank"
    return pixels
