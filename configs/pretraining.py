"""The synthetic pretraining shared by the demo (configs/demo.py) and the transfer experiment
(configs/transfer_livec.py): how the meta-learned and the multitask initialisation are trained.

Chosen by measurement on the 2-core CPU (the sweep is in configs/demo.py): native-scale
fragments of the bank distorted at 512 px, a narrow ResNet-18 and many cheap steps. The demo
trades these 64 px inputs for 32 px ones and more steps to fit its 10 minutes; the transfer
experiment keeps them (its README table was measured with them). Not an experiment of its own:
`get_config('smoke')` is its toy size for tests (meaningless numbers).
"""

import ml_collections

from metaiqa_jax.train import defaults


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """The pretraining settings; `arg='smoke'`: the toy size."""
  smoke = arg == 'smoke'
  c = defaults.base_config()
  c.model.width = 0.125                 # 8-16-32-64 channels.
  c.model.num_classes = 64
  c.model.head_features = (64, 32)
  c.model.dropout_rate = 0.0
  c.data.sources = ('synthetic',)
  c.data.roots = ('',)
  c.data.image_size = 64
  c.data.resize_to = 0                  # native resolution: distortions keep their rated scale.
  c.data.fragments = 4                  # 4 x 4 mini-patches of 16 px from all over the image.
  c.data.eval_grid = 3
  c.data.synthetic_max_side = 512
  c.data.val_fraction = 0.1
  c.meta.inner_steps = 1
  c.meta.adapt = 'head'                 # ANIL: the inner loop adapts the head (configs/demo.py).
  c.meta.batch_norm = 'shared'          # per-type tasks must not normalise their type away.
  c.meta.task_map = 'vmap'              # the backbone is shared, so vmap adds no grouped convs.
  c.meta.inner_lr = 0.01
  c.meta.inner_lr_head = 0.01
  c.meta.support_size = 4
  c.meta.query_size = 4
  c.meta.tasks_per_batch = 8            # 64 images of 8 types per step, for both trainers.
  c.optim.lr = 3e-3
  c.optim.head_lr = 3e-3
  c.optim.schedule = 'cosine'
  c.optim.warmup_steps = 100
  c.num_steps = 700
  c.optim.decay_steps = c.num_steps - c.optim.warmup_steps
  c.log_every = 50
  c.eval_every = c.num_steps
  c.checkpoint_every = 500
  c.eval_tasks = 2
  if smoke:
    c.model.width = 0.0625
    c.model.num_classes = 10
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
