"""Flax models: backbones (torchvision-exact ResNet, ImageNet EfficientNet-Lite), their registry,
and the MetaIQA quality regressor."""

from metaiqa_jax.models.backbones import BACKBONES, HEAD_INPUTS
from metaiqa_jax.models.imagenet import imagenet_logits
from metaiqa_jax.models.layers import BatchNorm
from metaiqa_jax.models.metaiqa import (ApplyFn, MetaIQA, MetaIQAHead, ModelConfig, PReLU,
                                        create_model, infer_model_config, init_variables,
                                        make_apply_fn, model_config)
from metaiqa_jax.models.resnet import ResNet, STAGE_SIZES, stage_channels
