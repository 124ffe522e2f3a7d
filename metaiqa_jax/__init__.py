"""metaiqa-jax: MetaIQA (Zhu et al., CVPR 2020) in JAX/Flax.

Public API:
  create_model, init_variables   build the quality regressor and its random variables
  load_torch_weights             import torchvision / MetaIQA / pyiqa PyTorch files safely
  score                          predict quality for images or paths
  adapt                          few-shot adaptation to a new distortion or dataset
"""

from metaiqa_jax.adaptation import adapt
from metaiqa_jax.models import create_model, init_variables, make_apply_fn
from metaiqa_jax.scoring import score
from metaiqa_jax.weights import load_torch_weights

__version__ = '0.1.0'
