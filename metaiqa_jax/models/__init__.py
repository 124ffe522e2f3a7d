"""Flax models: the torchvision-exact ResNet backbone and the MetaIQA quality regressor."""

from metaiqa_jax.models.metaiqa import (ApplyFn, MetaIQA, MetaIQAHead, ModelConfig, PReLU,
                                        create_model, infer_model_config, init_variables,
                                        make_apply_fn, model_config)
from metaiqa_jax.models.resnet import BatchNorm, ResNet, STAGE_SIZES, stage_channels
