"""Leave-one-distortion-out on KADID-10k: meta-train on 24 types, adapt to and test the 25th.

Command:
  metaiqa-lodo --config=configs/lodo_kadid10k.py --workdir=runs/lodo_kadid \
    --config.data.roots='("/data/kadid10k",)' --config.model.init=/weights/resnet18-f37072fd.pth

Data: KADID-10k in its native layout (`dmos.csv`, `images/`). For each held-out type: a
meta-training run in `workdir/type_<t>/`, then zero-shot and k-shot SROCC on the held-out type.
Runtime: not run here (no KADID-10k on the development machine); 25 meta-training runs.
Expected result (the paper's claim, qualitatively): the meta-learned model adapts to most held-out
types with SROCC above a multitask-trained baseline.
"""

from metaiqa_jax.train import defaults


def get_config():
  config = defaults.base_config()
  config.data.sources = ('kadid10k',)
  config.data.roots = ('',)
  config.num_steps = 5000
  return config
