"""Sample-quality evaluation: two-sample distances and PNG plots here; FID and its relatives in fid.py (features.py,
frechet.py, precision_recall.py, kid.py, classifier.py, inception_weights.py)."""

from distill.evaluation.distances import (energy_distance, projected_energy_distance, random_directions,
                                         sliced_wasserstein2, two_sample_report)
from distill.evaluation.plots import image_grid, save_curve, save_image_grid, save_scatter

__all__ = [
    "energy_distance",
    "image_grid",
    "projected_energy_distance",
    "random_directions",
    "save_curve",
    "save_image_grid",
    "save_scatter",
    "sliced_wasserstein2",
    "two_sample_report",
]
