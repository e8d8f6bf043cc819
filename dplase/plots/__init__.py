"""Figures: image grids (samples, traversals) and, later, metric plots."""

from dplase.plots.grids import grid_array, save_image_grid

__all__ = ["grid_array", "save_image_grid"]
