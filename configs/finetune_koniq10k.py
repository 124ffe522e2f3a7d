"""Fine-tuning a meta-trained model on KonIQ-10k, 10 random 80/20 splits.

Command:
  metaiqa-finetune --config=configs/finetune_koniq10k.py --workdir=runs/ft_koniq \
    --config.finetune.root=/data/koniq10k --config.model.init=runs/meta_tid_kadid

Data: KonIQ-10k in its native layout (the official `koniq10k_distributions_sets.csv`, MOS 0..100,
or `koniq10k_scores_and_distributions.csv`, MOS 1..5; images in `1024x768/`), each scale mapped
onto 0..1. Splits 70/10/20 (train/val/test), model selection on val; with the sets file,
`--config.finetune.split_file=official` uses its `set` column instead (7058/1000/2015).
Runtime: not run here (no KonIQ-10k on the development machine); 10 x 10 epochs x 7,060 images:
several GPU-hours.
Expected result (paper): test SROCC 0.887, PLCC 0.856.
"""

from metaiqa_jax.train import defaults


def get_config():
  config = defaults.base_config()
  config.finetune.source = 'koniq10k'
  config.finetune.epochs = 10
  return config
