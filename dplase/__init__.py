"""dplase: density-preserving latent space walks (DP-LaSE) in GANs, with baselines and metrics."""

__version__ = "0.1.0"
