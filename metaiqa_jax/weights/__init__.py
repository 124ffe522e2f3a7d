"""Safe import of PyTorch weights (torchvision, the authors' MetaIQA, pyiqa) without torch."""

from metaiqa_jax.weights.mapping import WeightsFormatError, load_torch_weights
from metaiqa_jax.weights.torch_pickle import (PickledObject, TorchFileError, UnsafePickleError,
                                              read_torch_file)
