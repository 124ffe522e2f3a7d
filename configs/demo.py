"""The embedded default: meta-learned vs multitask vs random initialisation on unseen distortions.

Command (what the README's quick start runs):
  metaiqa-demo --workdir=/tmp/metaiqa-demo
  (equivalently: metaiqa-demo --config=configs/demo.py --workdir=/tmp/metaiqa-demo)

Data: none to download. The synthetic bank of 25 KADID-10k distortion types x 5 levels applied
at 512 px to the 35 bundled photos (24 Kodak photos shipped in the package + 11 from the
scikit-image / scikit-learn / matplotlib wheels), labelled with the KADID-10k human mean for each
(type, level). 5 types (lens blur, Lab saturation, JPEG, white noise, pixelate) and 5 photos are
held out. Runtime and result: README, section "What the demo shows" (regenerated from
report.json by `python launch/readme_tables.py --demo=WORKDIR/report.json`).

The model and pretraining are the transfer experiment's (configs/pretraining.py): the MetaIQA
head on the feature statistics of the frozen ImageNet EfficientNet-Lite0, trained on the bank at
native scale, here on 128 px crops (not 224) and 250 steps per trainer so that both trainers,
the sanity rows and the k-shot rows fit in 10 minutes on 2 cores. Adaptation: 1 SGD step on the
head at the meta-training inner rate (the procedure meta-training optimised).

Before the ImageNet backbone, the demo trained a ResNet-18 of width 0.125 from random weights on
32 px fragments (2 x 2 mini-patches of 16 px), 4000 steps per trainer: sanity SROCC 0.344 meta /
0.434 multitask (AMD EPYC, 9 min 13 s), with a sweep of inputs, rates and steps that never
reached 0.6 (git history of this file).
"""

import ml_collections

from metaiqa_jax.configs import pretraining


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """The demo's settings: the shared pretraining (configs/pretraining.py) plus what is held out
  and how adaptation is scored. `arg='smoke'`: the same pipeline at toy size for CI (2 held-out
  types, a few training steps, tiny model); its numbers mean nothing."""
  smoke = arg == 'smoke'
  c = pretraining.get_config(arg)
  if not smoke:
    # The transfer's pretraining on 128 px crops (not 224): a third of the cost per step, so
    # that both trainers, the sanity rows and the k-shot rows fit the 10 minutes.
    c.data.image_size = 128
    c.num_steps = 250
    c.optim.decay_steps = c.num_steps - c.optim.warmup_steps
    c.eval_every = c.num_steps
    c.checkpoint_every = 125
  c.lodo.shots = (0, 5, 20)
  c.lodo.adapt_steps = (1,)             # = meta.inner_steps: the procedure meta-training optimised.
  c.lodo.adapt_lr = c.meta.inner_lr_head
  c.demo.held_out_types = (2, 8, 10, 11, 21)
  c.demo.held_out_photos = 5
  c.demo.seeds = 4
  if smoke:
    c.lodo.shots = (0, 3)
    c.demo.held_out_types = (10, 11)
    c.demo.held_out_photos = 3
    c.demo.seeds = 2
  return c
