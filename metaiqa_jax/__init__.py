"""metaiqa-jax: MetaIQA (Zhu et al., CVPR 2020) in JAX/Flax.

Public API:
  load_model                     the shipped quality model (or a model directory) as a
                                 `QualityModel`: `.score(images)`, `.adapt((images, mos))`
  score                          predict quality for images or paths (the shipped model, or
                                 given variables)
  adapt                          few-shot adaptation to a new distortion or dataset
  create_model, init_variables   build the quality regressor and its random variables
  load_torch_weights             import torchvision / MetaIQA / pyiqa PyTorch files safely
"""

from metaiqa_jax.adaptation import adapt
from metaiqa_jax.models import create_model, init_variables, make_apply_fn
from metaiqa_jax.quality_model import QualityModel, load_model, score
from metaiqa_jax.weights import load_torch_weights

__version__ = '0.1.0'
