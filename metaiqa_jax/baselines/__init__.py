"""Quality scores that need no learning, as floors a learned model must beat."""

from metaiqa_jax.baselines.sharpness import laplacian_variance, sharpness_scores

__all__ = ['laplacian_variance', 'sharpness_scores']
