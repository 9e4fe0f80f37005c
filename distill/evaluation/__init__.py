"""Sample-quality evaluation: two-sample distances and PNG plots."""

from distill.evaluation.distances import energy_distance, random_directions, sliced_wasserstein2, two_sample_report
from distill.evaluation.plots import image_grid, save_image_grid, save_scatter, to_uint8

__all__ = [
    "energy_distance",
    "image_grid",
    "random_directions",
    "save_image_grid",
    "save_scatter",
    "sliced_wasserstein2",
    "to_uint8",
    "two_sample_report",
]
