"""PNG output for evaluation: 2-D scatter plots and image grids."""

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image


def save_scatter(path: str,
                 points_by_label: dict[str, np.ndarray],
                 title: str | None = None,
                 limits: tuple[float, float] | None = None) -> None:
  """Save one PNG with the 2-D point clouds (n_i, 2) overlaid, one legend entry per label.

    limits = (lo, hi) sets both axes; the aspect ratio is always equal.
    """
  fig = Figure(figsize=(5, 5))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for label, points in points_by_label.items():
    points = np.asarray(points)
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4, linewidths=0, label=label)
  if limits is not None:
    ax.set_xlim(limits)
    ax.set_ylim(limits)
  ax.set_aspect("equal")
  if title is not None:
    ax.set_title(title)
  legend = ax.legend(loc="upper right", markerscale=4)
  for handle in legend.legend_handles:
    handle.set_alpha(1.0)
  fig.savefig(path, dpi=120, bbox_inches="tight")


def image_grid(images_uint8: np.ndarray, pad: int = 2, pad_value: int = 255) -> np.ndarray:
  """Tile (N, H, W, C) uint8 images (C = 1 or 3) into a near-square grid.

    cols = ceil(sqrt(N)), rows = ceil(N / cols), filled row by row; `pad` pixels of
    `pad_value` separate the tiles and frame the grid, so the result has shape
    (rows * H + (rows + 1) * pad, cols * W + (cols + 1) * pad, C), dtype uint8.
    """
  images = np.asarray(images_uint8)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
    raise ValueError(f"need uint8 images of shape (N, H, W, 1 or 3), got {images.dtype} {images.shape}")
  n, h, w, c = images.shape
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, dtype=np.uint8)
  for k, image in enumerate(images):
    top = pad + (k // cols) * (h + pad)
    left = pad + (k % cols) * (w + pad)
    canvas[top:top + h, left:left + w] = image
  return canvas


def save_image_grid(path: str, images_uint8: np.ndarray) -> None:
  """Save `image_grid(images_uint8)` as a PNG: mode 'L' for C = 1, 'RGB' for C = 3."""
  grid = image_grid(images_uint8)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)


def save_curve(path: str, xs, ys_by_label: dict[str, list], xlabel: str, ylabel: str, log_x: bool = False) -> None:
  """Save a line plot (markers at the points) of each labelled series against `xs`."""
  fig = Figure(figsize=(5, 3.5))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for label, ys in ys_by_label.items():
    ax.plot(xs, ys, marker="o", label=label)
  if log_x:
    ax.set_xscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  if len(ys_by_label) > 1:
    ax.legend()
  fig.savefig(path, dpi=120, bbox_inches="tight")
