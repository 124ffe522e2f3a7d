"""The authors' released first-order loop, bug-free: Reptile with Adam inner steps.

Command:
  metaiqa-meta-train --config=configs/reptile_released.py --workdir=runs/reptile \
    --config.data.roots='("/data/tid2013", "/data/kadid10k")' \
    --config.model.init=/weights/resnet18-f37072fd.pth

What the authors' released training code ran: per task, Adam steps on the support batch with
learning rates 1e-4 (backbone) / 1e-2 (head), then a first-order update of the shared weights.
Here: `algorithm='reptile'`, `inner_optimizer='adam'` with a fresh Adam state per task (the
released code leaked it across tasks), one meta-update per meta-batch of tasks (it counted one
per batch), the same loop for TID2013 and KADID-10k (its two branches differed), and the saved
checkpoint is the meta-model (it saved the last adapted working model). Seeds are fixed.
Data, runtime: as configs/meta_tid_kadid.py (first order: about half the time per step).
Expected result: meta-validation SROCC a little below second-order MAML's.
"""

from metaiqa_jax.train import defaults


def get_config():
  config = defaults.base_config()
  config.meta.algorithm = 'reptile'
  config.meta.inner_optimizer = 'adam'
  config.meta.inner_steps = 5
  config.optim.schedule = 'step'
  return config
