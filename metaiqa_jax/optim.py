"""The optimiser of every trainer: Adam with one learning rate for the backbone, one for the head.

Meta-training's outer loop, the multitask baseline, fine-tuning and `adapt` all use
`make_optimizer`, so their states (`meta.MetaTrainState`) are saved, restored and resumed the
same way.
"""

from typing import Mapping

import jax
import optax


def make_optimizer(*, lr: float = 1e-4, head_lr: float | None = None,
                   schedule: optax.Schedule | None = None, weight_decay: float = 0.0,
                   clip_norm: float | None = None,
                   train_backbone: bool = True) -> optax.GradientTransformation:
  """Adam (AdamW when `weight_decay` > 0) with per-group learning rates.

  Args:
    lr: learning rate of everything except `params['head']` (the backbone).
    head_lr: learning rate of `params['head']`; None = `lr`. Trees without a 'head' entry (an
      MLP, say) are one group at `lr`.
    schedule: optional `step -> factor` multiplying both rates, e.g. the paper's x0.9 every 2
      epochs: `optax.exponential_decay(1.0, 2 * steps_per_epoch, 0.9, staircase=True)`.
    weight_decay: decoupled weight decay (AdamW).
    clip_norm: clip the global gradient norm to this before Adam.
    train_backbone: False: the backbone's updates are zero and it keeps no Adam state (what
      Adam would do with its gradients when they are all zero, as under a frozen backbone,
      without the cost of two moment trees the size of the backbone).
  """
  def rate(base):
    return base if schedule is None else (lambda count: base * schedule(count))

  def adam(base):
    if weight_decay:
      return optax.adamw(rate(base), weight_decay=weight_decay)
    return optax.adam(rate(base))

  def labels(params):
    return {k: jax.tree.map(lambda _: 'head' if k == 'head' else 'backbone', v)
            for k, v in params.items()} if isinstance(params, Mapping) else (
                jax.tree.map(lambda _: 'backbone', params))

  head_lr = lr if head_lr is None else head_lr
  backbone = adam(lr) if train_backbone else optax.set_to_zero()
  tx = optax.multi_transform({'backbone': backbone, 'head': adam(head_lr)}, labels)
  return tx if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), tx)
