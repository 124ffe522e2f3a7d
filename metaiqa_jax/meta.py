"""Model-agnostic bi-level optimisation: MAML, first-order MAML and Reptile as pure functions.

The meta-learner never sees a Module, only
`apply_fn(variables, x, train, rngs=None) -> (y, {'batch_stats': ...})` with
`variables = {'params': ..., 'batch_stats': ...}` (`batch_stats` may be `{}`).

A meta-batch is `tasks = {'support': (x, y), 'query': (x, y)}`, x `(tasks, n, H, W, C)` (or any
per-example shape) and y `(tasks, n)`, numpy or jax arrays.

Per task, the inner loop takes K gradient steps on the support loss (`jax.grad`; the K steps
written out one after another, or a `lax.scan` of rematerialised steps with `remat=True`), the
adapted weights are scored on the query set, and the outer gradient is averaged
over tasks:

* `maml`: exact gradient of the query loss w.r.t. the initial parameters, through the inner loop
  (second order).
* `fomaml`: the same with the inner gradients treated as constants (`stop_gradient`), so the
  outer gradient is the query gradient at the adapted weights.
* `reptile`: no query gradient; the "gradient" is `params - adapted` (Nichol et al. 2018), which
  an outer SGD step with learning rate eps turns into `params + eps * (adapted - params)`. With
  `inner_optimizer='adam'` this is the authors' released first-order loop, without its bugs (the
  Adam state starts fresh for every task and the meta-update is one per meta-batch).

BatchNorm: every inner step and the query pass run in training mode, so they normalise with the
statistics of their own batch (as the authors' code and MAML do). The running statistics are
threaded through the K support steps and the query pass (K + 1 momentum updates, like PyTorch),
returned per task and averaged over tasks; they never influence the losses.

Inner learning rates (`inner_lr`) may be a scalar, a mapping from top-level parameter groups to
scalars (`{'backbone': 1e-4, 'head': 1e-2}`, the authors' values) or any other prefix of the
parameter tree, down to one array per parameter of the parameter's own shape: that last form is
Meta-SGD (Li et al. 2017), whose per-element learning rates are meta-learned with the weights
(`init_meta_state(..., meta_sgd=True)`).

Task mapping (`task_map`): after the inner loop every task has its own weights, so `vmap` over
tasks turns every convolution into a grouped one, which XLA's CPU backend runs very slowly.
`'map'` runs the tasks one after another in one XLA loop (`lax.scan` with a running sum, so only
one task's activations are alive), `'unroll'` writes them out one after another in the program.
All three compute the same mean. Defaults (`default_task_map`): 'unroll' on CPU (fastest steps
at full width; BENCHMARKS.md, "Task mapping"), 'vmap' on GPU/TPU. 'map' is the choice when
compile time or memory matter more than step time. Neither the inner steps (without remat) nor
'unroll' use an XLA loop because XLA's CPU convolutions, differentiated inside a loop body, run
25-60x slower than outside one (BENCHMARKS.md, section 2).
"""

import dataclasses
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import optax

from metaiqa_jax import parallel

Pytree = Any
ApplyFn = Callable[..., tuple[jax.Array, dict]]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
# 'all', 'head' (params['head'] only) or predicate(path: tuple[str, ...]) -> bool.
AdaptSpec = str | Callable[[tuple[str, ...]], bool]

ALGORITHMS = ('maml', 'fomaml', 'reptile')
TASK_MAPS = ('vmap', 'map', 'unroll')
BATCH_NORMS = ('task', 'shared')
INNER_OPTIMIZERS = ('sgd', 'adam')
# Adam inside a differentiated inner loop: d sqrt(v)/dv is infinite at v = 0 (a parameter whose
# gradient is exactly zero), so second-order runs add eps_root under the square root.
INNER_ADAM_EPS_ROOT = 1e-8


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean squared error, a float scalar; the MetaIQA loss."""
  return jnp.mean(jnp.square(pred - target))


def default_task_map(platform: str | None = None) -> str:
  """'unroll' on CPU, 'vmap' elsewhere (measurements in the module docstring)."""
  platform = jax.default_backend() if platform is None else platform
  return 'unroll' if platform == 'cpu' else 'vmap'


def _path_names(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def adapt_mask(params: Pytree, adapt: AdaptSpec) -> Pytree:
  """A tree of bools shaped like `params`: which leaves the inner loop updates.

  Args:
    params: the parameter tree.
    adapt: 'all'; 'head' (everything under `params['head']`); or a predicate on the leaf's path
      of names, e.g. `lambda path: path[0] == 'head' or 'bn' in path[-2]`.

  Raises:
    ValueError: unknown spec, 'head' on a tree without a 'head' entry, or nothing selected.
  """
  if adapt == 'all':
    predicate = lambda path: True
  elif adapt == 'head':
    if not isinstance(params, Mapping) or 'head' not in params:
      raise ValueError("adapt='head' needs params with a 'head' entry; got top-level keys "
                       f'{list(params) if isinstance(params, Mapping) else type(params)}')
    predicate = lambda path: path[0] == 'head'
  elif callable(adapt):
    predicate = adapt
  else:
    raise ValueError(f"adapt must be 'all', 'head' or a predicate(path) -> bool; got {adapt!r}")
  mask = jax.tree_util.tree_map_with_path(lambda p, _: bool(predicate(_path_names(p))), params)
  if not any(jax.tree.leaves(mask)):
    raise ValueError(f'adapt={adapt!r} selects no parameter to adapt')
  return mask


def broadcast_inner_lr(inner_lr: Any, params: Pytree) -> Pytree:
  """Expands `inner_lr` (a scalar or any prefix tree of `params`) to one entry per leaf.

  Raises:
    ValueError: the structure is not a prefix of the parameter tree (names both).
  """
  try:
    return jax.tree.map(lambda lr, sub: jax.tree.map(lambda _: lr, sub), inner_lr, params)
  except (ValueError, TypeError) as e:
    top = list(params) if isinstance(params, Mapping) else type(params).__name__
    raise ValueError(f'inner_lr must be a scalar or a prefix of the parameter tree (top-level '
                     f'keys {top}); got {jax.tree.structure(inner_lr)}: {e}') from e


@dataclasses.dataclass(frozen=True)
class InnerLoop:
  """How one task's support set adapts the weights: built once from the inner-loop settings of
  `inner_adapt` / `meta_grad` / `make_meta_step` (arguments of the same names there).

  Attributes:
    steps: K >= 1 gradient steps (written out one after another; one `lax.scan` with `remat`).
    adapt: which parameters change: 'all' | 'head' | predicate(path) -> bool.
    first_order: stop gradients through the inner gradients.
    loss_fn: `loss_fn(pred (n,), y (n,)) -> scalar`.
    remat: rematerialise each step (`jax.checkpoint`).
    optimizer: 'sgd' | 'adam' (fresh state per task).
    batch_norm: 'task' (training mode: the support set's own statistics, running ones updated)
      | 'shared' (evaluation mode with the given statistics, left unchanged).
  """
  steps: int
  adapt: AdaptSpec = 'all'
  first_order: bool = False
  loss_fn: LossFn = mse
  remat: bool = False
  optimizer: str = 'sgd'
  batch_norm: str = 'task'

  def __post_init__(self):
    if self.batch_norm not in BATCH_NORMS:
      raise ValueError(f'batch_norm must be one of {BATCH_NORMS}; got {self.batch_norm!r}')
    if self.steps < 1:
      raise ValueError(f'inner steps must be >= 1, got {self.steps}')
    if self.optimizer not in INNER_OPTIMIZERS:
      raise ValueError(f'inner_optimizer must be one of {INNER_OPTIMIZERS}; '
                       f'got {self.optimizer!r}')

  def run(self, apply_fn, params, batch_stats, inner_lr, support, rng):
    """K support steps from `params`. Returns (adapted params, batch_stats, support losses (K,)
    before each step); `rng` a dropout key (step i uses `fold_in(rng, i)`) or None."""
    train = self.batch_norm == 'task'
    x, y = support
    leaves, treedef = jax.tree.flatten(params)
    mask = treedef.flatten_up_to(adapt_mask(params, self.adapt))
    lrs = treedef.flatten_up_to(broadcast_inner_lr(inner_lr, params))
    adapted0 = [leaf for leaf, m in zip(leaves, mask) if m]
    frozen = [leaf for leaf, m in zip(leaves, mask) if not m]
    adapted_lrs = [lr for lr, m in zip(lrs, mask) if m]

    def merge(adapted):
      adapted_it, frozen_it = iter(adapted), iter(frozen)
      return treedef.unflatten([next(adapted_it) if m else next(frozen_it) for m in mask])

    def support_loss(adapted, stats, key):
      rngs = None if key is None else {'dropout': key}
      pred, state = apply_fn({'params': merge(adapted), 'batch_stats': stats}, x, train, rngs)
      return self.loss_fn(pred, y), state['batch_stats']

    if self.optimizer == 'adam':
      direction_fn = optax.scale_by_adam(
          eps_root=0.0 if self.first_order else INNER_ADAM_EPS_ROOT)
    else:
      direction_fn = optax.identity()

    def step(carry, i):
      adapted, stats, opt_state = carry
      key = None if rng is None else jax.random.fold_in(rng, i)
      (loss, stats), grads = jax.value_and_grad(support_loss, has_aux=True)(adapted, stats, key)
      if self.first_order:
        grads = jax.lax.stop_gradient(grads)
      direction, opt_state = direction_fn.update(grads, opt_state)
      adapted = [p - lr * d for p, lr, d in zip(adapted, adapted_lrs, direction)]
      return (adapted, stats, opt_state), loss

    carry = (adapted0, batch_stats, direction_fn.init(adapted0))
    if self.remat:
      # One XLA loop over rematerialised steps: one step's activations alive at a time.
      (adapted, batch_stats, _), losses = jax.lax.scan(jax.checkpoint(step), carry,
                                                       jnp.arange(self.steps))
      return merge(adapted), batch_stats, losses
    # Otherwise the steps are written out: XLA's CPU convolutions differentiated inside a loop
    # body run 25-60x slower than outside one (BENCHMARKS.md, section 2); compile time grows
    # with K.
    losses = []
    for i in range(self.steps):
      carry, loss = step(carry, i)
      losses.append(loss)
    adapted, batch_stats, _ = carry
    return merge(adapted), batch_stats, jnp.stack(losses)


def inner_adapt(apply_fn: ApplyFn, variables: Mapping[str, Pytree], support: tuple, *,
                steps: int, inner_lr: Any, first_order: bool = False, adapt: AdaptSpec = 'all',
                rng: jax.Array | None = None, loss_fn: LossFn = mse, remat: bool = False,
                inner_optimizer: str = 'sgd', batch_norm: str = 'task') -> dict:
  """Adapts `variables` to one task's support set with K gradient steps.

  Args:
    apply_fn: `apply_fn(variables, x, train, rngs) -> (y, {'batch_stats': ...})`.
    variables: `{'params', 'batch_stats'}` (float pytrees; `batch_stats` may be `{}`).
    support: `(x (n, ...), y (n,))` of one task.
    steps: K >= 1 inner steps (a Python int; the steps are traced one after another, or as
      one `lax.scan` with `remat`).
    inner_lr: scalar, `{'backbone': lr, 'head': lr}` or any prefix tree of the params (Meta-SGD:
      one array per parameter).
    first_order: stop gradients through the inner gradients (no effect on the values here).
    adapt: which parameters change: 'all' | 'head' | predicate(path) -> bool.
    rng: dropout key; step i uses `fold_in(rng, i)`. None for models without dropout.
    loss_fn: `loss_fn(pred (n,), y (n,)) -> scalar`.
    remat: rematerialise each inner step (`jax.checkpoint`), so differentiating through the loop
      stores one carry per step instead of every activation.
    inner_optimizer: 'sgd' (`p - lr * g`) or 'adam' (`p - lr * adam_direction(g)`, fresh state).
    batch_norm: 'task': BatchNorm normalises with the support set's statistics (training mode);
      'shared': with the running statistics in `variables` (evaluation mode), as a model
      meta-trained with `batch_norm='shared'` was (see `meta_grad`).

  Returns:
    `{'params': adapted, 'batch_stats': running statistics after the K steps}`.
  """
  loop = InnerLoop(steps, adapt, first_order, loss_fn, remat, inner_optimizer, batch_norm)
  params, stats, _ = loop.run(apply_fn, variables['params'], variables.get('batch_stats', {}),
                              inner_lr, support, rng)
  return {'params': params, 'batch_stats': stats}


def _check_tasks(tasks) -> int:
  """Validates the meta-batch layout and returns the number of tasks."""
  if not isinstance(tasks, Mapping) or set(tasks) != {'support', 'query'}:
    raise ValueError("tasks must be {'support': (x, y), 'query': (x, y)}; got "
                     f'{list(tasks) if isinstance(tasks, Mapping) else type(tasks).__name__}')
  counts = {}
  for split in ('support', 'query'):
    pair = tasks[split]
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
      raise ValueError(f"tasks['{split}'] must be a pair (x, y); got {type(pair).__name__}")
    x, y = pair
    if jnp.ndim(x) < 2 or jnp.ndim(y) != 2 or jnp.shape(x)[:2] != jnp.shape(y):
      raise ValueError(f"tasks['{split}']: x must be (tasks, n, ...) and y (tasks, n); got x "
                       f'{jnp.shape(x)}, y {jnp.shape(y)}')
    counts[split] = jnp.shape(y)[0]
  if counts['support'] != counts['query']:
    raise ValueError(f'support has {counts["support"]} tasks but query has {counts["query"]}')
  return counts['support']


def _mean_over_tasks(fn, per_task, task_map, num_tasks):
  """Mean over the leading (task) axis of `per_task` of the pytree `fn(task_slice)`."""
  if task_map == 'vmap':
    return jax.tree.map(lambda a: jnp.mean(a, axis=0), jax.vmap(fn)(per_task))
  if task_map == 'map':
    first = jax.eval_shape(fn, jax.tree.map(lambda a: a[0], per_task))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), first)

    def accumulate(total, task):
      return jax.tree.map(jnp.add, total, fn(task)), None

    total, _ = jax.lax.scan(accumulate, zeros, per_task)
  elif task_map == 'unroll':
    outs = [fn(jax.tree.map(lambda a: a[i], per_task)) for i in range(num_tasks)]
    total = jax.tree.map(lambda *xs: sum(xs[1:], xs[0]), *outs)
  else:
    raise ValueError(f'task_map must be one of {TASK_MAPS} or None; got {task_map!r}')
  return jax.tree.map(lambda a: a / num_tasks, total)


def _pooled_images(tasks) -> jax.Array:
  """Every support and query image of a meta-batch, tasks pooled: (tasks * (S + Q), ...)."""
  return jnp.concatenate([jnp.reshape(tasks[part][0], (-1,) + jnp.shape(tasks[part][0])[2:])
                          for part in ('support', 'query')])


def _task_features(features_fn, variables, tasks):
  """`tasks` with every image replaced by `features_fn(variables, images) -> (N, D)`, run once
  over the pooled meta-batch (`_pooled_images`): `(tasks, S, D)` support, `(tasks, Q, D)` query."""
  (xs, ys), (xq, yq) = tasks['support'], tasks['query']
  features = features_fn(variables, _pooled_images(tasks))
  support = xs.shape[0] * xs.shape[1]
  return {'support': (features[:support].reshape(xs.shape[:2] + features.shape[1:]), ys),
          'query': (features[support:].reshape(xq.shape[:2] + features.shape[1:]), yq)}


def _batch_statistics(apply_fn, variables, images, rng):
  """BatchNorm statistics of `images` in the model's own running-statistics format, and the
  running statistics a training-mode pass over them would leave.

  Read off training-mode passes of `apply_fn` whatever its BatchNorm momentum m. A frozen layer
  (evaluation mode even in a training pass, m = 0) is one that a pass over one image leaves
  exactly as it was; it keeps its running statistics in every pass below (so what it computes,
  and everything after it, stays what the model computes) and they are its batch statistics.
  For the others, from zero running statistics a pass leaves m * b (b the batch statistic),
  and a pass over the same one image from running statistics S leaves (1 - m) S + m b, so the
  difference of the two is (1 - m) S. S is taken far above |m b| (1 + 1000 |m b|), so the
  difference is exact to float32 rounding however large the statistics are (with S = 1, a
  feature variance of 1e7 left nothing of (1 - m) after cancellation). Returns `(batch,
  updated)`, differentiable in `variables`.
  """
  rngs = None if rng is None else {'dropout': rng}
  stats = variables['batch_stats']

  def one_image_pass(running):
    return jax.lax.stop_gradient(
        apply_fn(variables | {'batch_stats': running}, images[:1], True, rngs)[1]['batch_stats'])

  frozen = jax.tree.map(lambda after, before: jnp.all(after == before), one_image_pass(stats),
                        stats)

  def trainable(fill):
    """Running statistics `fill` for the layers that train, the real ones for frozen layers."""
    return jax.tree.map(lambda f, s_, fr: jnp.where(fr, s_, f), fill, stats, frozen)

  zeros = trainable(jax.tree.map(jnp.zeros_like, stats))
  from_zeros = one_image_pass(zeros)
  big = trainable(jax.tree.map(lambda z: 1.0 + 1e3 * jnp.abs(z), from_zeros))
  from_big = one_image_pass(big)
  momentum = jax.tree.map(lambda z, b, s_, fr: jnp.where(fr, 0.0, 1.0 - (b - z) / s_),
                          from_zeros, from_big, big, frozen)
  scaled = apply_fn(variables | {'batch_stats': zeros}, images, True, rngs)[1]['batch_stats']
  batch = jax.tree.map(lambda s_, m, old, fr: jnp.where(fr, old, s_ / jnp.where(fr, 1.0, m)),
                       scaled, momentum, stats, frozen)
  updated = jax.tree.map(lambda old, b, m: (1 - m) * old + m * jax.lax.stop_gradient(b),
                         stats, batch, momentum)
  return batch, updated


def _meta_grad_keys(apply_fn, variables, tasks, task_keys, inner_lr, *, loop: InnerLoop,
                    algorithm, task_map, learn_inner_lr):
  """`meta_grad` with one dropout key per task (`task_keys` (tasks, ...) or None); `loop` says
  how each task adapts (its `first_order` must be `algorithm != 'maml'`)."""
  if algorithm not in ALGORITHMS:
    raise ValueError(f'algorithm must be one of {ALGORITHMS}; got {algorithm!r}')
  if learn_inner_lr and algorithm == 'reptile':
    raise ValueError('learned inner learning rates (Meta-SGD) need a query gradient: use '
                     "algorithm='maml' or 'fomaml', not 'reptile'")
  num_tasks = _check_tasks(tasks)
  task_map = default_task_map() if task_map is None else task_map
  params, batch_stats = variables['params'], variables.get('batch_stats', {})
  if loop.batch_norm == 'shared':
    if algorithm == 'reptile':
      raise ValueError("batch_norm='shared' needs a query gradient: use algorithm='maml' or "
                       "'fomaml', not 'reptile'")
    return _shared_meta_grad(apply_fn, variables, tasks, task_keys, inner_lr, loop=loop,
                             task_map=task_map, learn_inner_lr=learn_inner_lr)

  def one_task(task):
    (xs, ys), (xq, yq), key = task['support'], task['query'], task['key']
    support_key = None if key is None else jax.random.fold_in(key, 0)
    query_rngs = None if key is None else {'dropout': jax.random.fold_in(key, 1)}

    def query_loss(params, lr):
      adapted, stats, inner_losses = loop.run(apply_fn, params, batch_stats, lr, (xs, ys),
                                              support_key)
      pred, state = apply_fn({'params': adapted, 'batch_stats': stats}, xq, True, query_rngs)
      return loop.loss_fn(pred, yq), (adapted, state['batch_stats'], inner_losses)

    out = {}
    if algorithm == 'reptile':
      loss, (adapted, stats, inner_losses) = query_loss(params, inner_lr)
      out['grads'] = jax.tree.map(jnp.subtract, params, adapted)
    else:
      argnums = (0, 1) if learn_inner_lr else 0
      (loss, (_, stats, inner_losses)), grads = jax.value_and_grad(
          query_loss, argnums=argnums, has_aux=True)(params, inner_lr)
      if learn_inner_lr:
        out['grads'], out['inner_lr_grads'] = grads
      else:
        out['grads'] = grads
    out.update(loss=loss, batch_stats=stats, inner_losses=inner_losses)
    return out

  per_task = {'support': tuple(tasks['support']), 'query': tuple(tasks['query']),
              'key': task_keys}
  mean = _mean_over_tasks(one_task, per_task, task_map, num_tasks)
  aux = {'batch_stats': mean['batch_stats'], 'inner_losses': mean['inner_losses'],
         'support_loss': mean['inner_losses'][0]}
  if learn_inner_lr:
    aux['inner_lr_grads'] = mean['inner_lr_grads']
  return mean['loss'], mean['grads'], aux


def _shared_meta_grad(apply_fn, variables, tasks, task_keys, inner_lr, *, loop: InnerLoop,
                      task_map, learn_inner_lr):
  """`meta_grad` with batch_norm='shared' (maml or fomaml).

  The statistics of the pooled meta-batch are computed inside the differentiated function, so
  the mean query loss is differentiated once, through them (as plain BatchNorm over the pooled
  batch would be); each task's passes run BatchNorm in evaluation mode with those statistics.
  """
  num_tasks = _check_tasks(tasks)
  images = _pooled_images(tasks)
  stats_key = None if task_keys is None else jax.random.fold_in(task_keys[0], 2)

  def mean_query_loss(params, lr):
    batch, updated = _batch_statistics(apply_fn, variables | {'params': params}, images,
                                       stats_key)

    def one_task(task):
      (xs, ys), (xq, yq), key = task['support'], task['query'], task['key']
      support_key = None if key is None else jax.random.fold_in(key, 0)
      adapted, _, inner_losses = loop.run(apply_fn, params, batch, lr, (xs, ys), support_key)
      pred, _ = apply_fn({'params': adapted, 'batch_stats': batch}, xq, False)
      return {'loss': loop.loss_fn(pred, yq), 'inner_losses': inner_losses}

    per_task = {'support': tuple(tasks['support']), 'query': tuple(tasks['query']),
                'key': task_keys}
    mean = _mean_over_tasks(one_task, per_task, task_map, num_tasks)
    return mean['loss'], (mean['inner_losses'], updated)

  argnums = (0, 1) if learn_inner_lr else 0
  (loss, (inner_losses, updated)), grads = jax.value_and_grad(
      mean_query_loss, argnums=argnums, has_aux=True)(variables['params'], inner_lr)
  aux = {'batch_stats': jax.lax.stop_gradient(updated), 'inner_losses': inner_losses,
         'support_loss': inner_losses[0]}
  if learn_inner_lr:
    grads, aux['inner_lr_grads'] = grads
  return loss, grads, aux


def meta_grad(apply_fn: ApplyFn, variables: Mapping[str, Pytree], tasks: Mapping[str, tuple], *,
              inner_steps: int, inner_lr: Any, algorithm: str = 'maml',
              task_map: str | None = None, rng: jax.Array | None = None,
              adapt: AdaptSpec = 'all', loss_fn: LossFn = mse, remat: bool = False,
              inner_optimizer: str = 'sgd', learn_inner_lr: bool = False,
              batch_norm: str = 'task'):
  """Meta-gradient of the mean query loss after inner adaptation, averaged over tasks.

  Args:
    apply_fn, variables: the model (see the module docstring).
    tasks: `{'support': (x, y), 'query': (x, y)}` with a leading task axis.
    inner_steps, inner_lr, adapt, loss_fn, remat, inner_optimizer: as in `inner_adapt`.
    algorithm: 'maml' | 'fomaml' | 'reptile' (module docstring).
    task_map: 'vmap' | 'map' | 'unroll'; None = `default_task_map()`.
    rng: dropout key, split into one key per task (task i: support step s uses
      `fold_in(fold_in(key_i, 0), s)`, the query pass `fold_in(key_i, 1)`). None: no dropout.
    learn_inner_lr: also differentiate w.r.t. `inner_lr` (Meta-SGD).
    batch_norm: 'task' (MAML as published): every support and query pass normalises with its
      own batch statistics, so a task whose images all share one distortion type is normalised
      by that type's statistics and what the type changes in common (its absolute quality
      level) is removed before the head sees it. 'shared' (maml or fomaml): every pass
      normalises with the statistics of the whole meta-batch (all tasks' support and query
      images pooled, differentiated through as plain BatchNorm over that batch would be), so all
      tasks are normalised alike, as at test time; running statistics are updated from them
      and dropout is off.

  Returns:
    `(loss, grads, aux)`: `loss` the mean query loss after adaptation (float scalar), `grads`
    shaped like `variables['params']` (for reptile `params - adapted`), `aux` a dict with
    `batch_stats` (running statistics after each task's support steps and query pass, mean over
    tasks), `inner_losses` (K,) mean support loss before each inner step, `support_loss` (its
    first entry, before adaptation) and, with `learn_inner_lr`, `inner_lr_grads` shaped like
    `inner_lr`.
  """
  num_tasks = _check_tasks(tasks)
  task_keys = None if rng is None else jax.random.split(rng, num_tasks)
  loop = InnerLoop(inner_steps, adapt, algorithm != 'maml', loss_fn, remat, inner_optimizer,
                   batch_norm)
  return _meta_grad_keys(apply_fn, variables, tasks, task_keys, inner_lr, loop=loop,
                         algorithm=algorithm, task_map=task_map, learn_inner_lr=learn_inner_lr)


class MetaTrainState(flax.struct.PyTreeNode):
  """Outer-loop state.

  Attributes:
    step: int32 scalar, meta-updates done.
    params, batch_stats: the meta-learned initialisation and its BatchNorm running statistics.
    opt_state: the outer optimiser's state for `params`; with Meta-SGD, the pair
      `(state for params, state for inner_lr)` (the same optimiser updates both).
    inner_lr: None, or Meta-SGD's learned per-element inner learning rates (params-shaped).
  """
  step: jax.Array
  params: Pytree
  batch_stats: Pytree
  opt_state: Any
  inner_lr: Pytree | None = None

  @property
  def variables(self) -> dict[str, Pytree]:
    """`{'params', 'batch_stats'}`: what the model is applied with, scored and saved as."""
    return {'params': self.params, 'batch_stats': self.batch_stats}


def init_meta_state(variables: Mapping[str, Pytree], tx: optax.GradientTransformation, *,
                    meta_sgd: bool = False, inner_lr: Any = None) -> MetaTrainState:
  """A fresh `MetaTrainState`.

  Args:
    variables: `{'params', 'batch_stats'}`.
    tx: the outer optimiser (`optim.make_optimizer`).
    meta_sgd: learn per-element inner learning rates, initialised from `inner_lr` (a scalar or a
      prefix tree of the params, e.g. `{'backbone': 1e-4, 'head': 1e-2}`).
    inner_lr: required with `meta_sgd`; unused otherwise (pass it to `make_meta_step`).
  """
  params = variables['params']
  if meta_sgd:
    if inner_lr is None:
      raise ValueError('meta_sgd=True needs the initial inner_lr')
    lrs = jax.tree.map(lambda lr, p: jnp.full(jnp.shape(p), lr, jnp.result_type(p)),
                       broadcast_inner_lr(inner_lr, params), params)
    opt_state = (tx.init(params), tx.init(lrs))
  else:
    lrs, opt_state = None, tx.init(params)
  return MetaTrainState(step=jnp.zeros((), jnp.int32), params=params,
                        batch_stats=variables.get('batch_stats', {}), opt_state=opt_state,
                        inner_lr=lrs)


def make_meta_step(apply_fn: ApplyFn, tx: optax.GradientTransformation, *, inner_steps: int,
                   inner_lr: Any = None, algorithm: str = 'maml', task_map: str | None = None,
                   adapt: AdaptSpec = 'all', loss_fn: LossFn = mse, remat: bool = False,
                   inner_optimizer: str = 'sgd', mesh: jax.sharding.Mesh | None = None,
                   donate: bool = True, batch_norm: str = 'task',
                   features_fn: Callable | None = None) -> Callable:
  """One compiled meta-update, the task axis sharded over the devices of `mesh`.

  Args:
    apply_fn, inner_steps, algorithm, adapt, loss_fn, remat, inner_optimizer, batch_norm: as in
      `meta_grad` ('shared' statistics are those of each device's share of the tasks, then
      averaged over devices).
    tx: the outer optimiser the state was made with.
    inner_lr: scalar or prefix tree; ignored (may be None) when the state carries Meta-SGD rates.
    task_map: per-device task mapping; None = `default_task_map` of the mesh's platform.
    mesh: 1-D mesh (`parallel.make_mesh()`, all devices, when None). Each device runs
      tasks / devices tasks; gradients, losses and running statistics are averaged over devices.
    donate: donate the input state's buffers to the output state.
    features_fn: None, or `(variables, images (N, S, S, 3)) -> (N, D)`, a backbone whose output
      is a fixed function of the image (`models.backbones.output_is_fixed`; e.g.
      `models.metaiqa.jitted_backbone`): each device then runs it once over its tasks' support
      and query images, and `apply_fn` (`make_apply_fn(model, on_features=True)`) adapts and
      differentiates the head on those features. The same step as on the images, without
      the backbone passes the inner loop, the query passes and the shared statistics repeat.

  Returns:
    `step(state, tasks, rng) -> (state, metrics)`. `tasks` as in `meta_grad` with a task count
    divisible by the device count (checked before compiling); `rng` a PRNG key. `metrics` holds
    float32 scalars `loss` (mean query loss after adaptation), `support_loss` (before
    adaptation) and `grad_norm` (global norm of the averaged meta-gradient). Shapes and dtypes
    fixed, it compiles once. `step.lower(state, tasks, rng)` returns the lowered program
    (`.compile().memory_analysis()`, `.cost_analysis()`).
  """
  mesh = parallel.make_mesh() if mesh is None else mesh
  parallel.mesh_axis(mesh)
  if task_map is None:
    task_map = default_task_map(mesh.devices.flat[0].platform)
  loop = InnerLoop(inner_steps, adapt, algorithm != 'maml', loss_fn, remat, inner_optimizer,
                   batch_norm)

  def device_mean(replicated, per_task):
    params, batch_stats, lr = replicated
    learn = lr is not None
    variables = {'params': params, 'batch_stats': batch_stats}
    tasks = per_task['tasks']
    if features_fn is not None:  # Outside the differentiated functions: a fixed input.
      tasks = _task_features(features_fn, variables, tasks)
    return _meta_grad_keys(apply_fn, variables, tasks, per_task['keys'], lr if learn else inner_lr,
                           loop=loop, algorithm=algorithm, task_map=task_map,
                           learn_inner_lr=learn)

  sharded_mean = parallel.mean_over_task_shards(device_mean, mesh)

  def step(state, tasks, rng):
    if state.inner_lr is None and inner_lr is None:
      raise ValueError('make_meta_step needs inner_lr (or a Meta-SGD state with learned rates)')
    num_tasks = jnp.shape(tasks['support'][1])[0]
    keys = jax.random.split(rng, num_tasks)
    per_task = {'tasks': {'support': tuple(tasks['support']), 'query': tuple(tasks['query'])},
                'keys': keys}
    loss, grads, aux = sharded_mean((state.params, state.batch_stats, state.inner_lr), per_task)
    if state.inner_lr is None:
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      inner_lrs = None
    else:
      updates, params_opt = tx.update(grads, state.opt_state[0], state.params)
      lr_updates, lr_opt = tx.update(aux['inner_lr_grads'], state.opt_state[1], state.inner_lr)
      opt_state = (params_opt, lr_opt)
      inner_lrs = optax.apply_updates(state.inner_lr, lr_updates)
    new_state = state.replace(step=state.step + 1,
                              params=optax.apply_updates(state.params, updates),
                              batch_stats=aux['batch_stats'], opt_state=opt_state,
                              inner_lr=inner_lrs)
    metrics = {'loss': loss, 'support_loss': aux['support_loss'],
               'grad_norm': optax.tree.norm(grads)}
    return new_state, jax.tree.map(lambda m: m.astype(jnp.float32), metrics)

  jitted = jax.jit(step, donate_argnums=(0,) if donate else ())

  def place(state, tasks, rng):
    parallel.check_even_split(_check_tasks(tasks), mesh)
    # Inputs placed as the outputs come back (no-op from the second step on), so the first and
    # later steps hit the same compiled program.
    state, rng = parallel.replicate((state, rng), mesh)
    return state, parallel.put_sharded(tasks, mesh), rng

  def meta_step(state: MetaTrainState, tasks: Mapping[str, tuple], rng: jax.Array):
    return jitted(*place(state, tasks, rng))

  # `meta_step.lower(state, tasks, rng)`: the `jax.stages.Lowered` program of a step, for
  # ahead-of-time compilation and XLA's cost and memory analyses (bench/meta_step.py).
  meta_step.lower = lambda state, tasks, rng: jitted.lower(*place(state, tasks, rng))
  return meta_step
