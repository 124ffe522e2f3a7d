"""Leave-one-distortion-out on TID2013: meta-train on 23 types, adapt to and test the 24th.

Command:
  metaiqa-lodo --config=configs/lodo_tid2013.py --workdir=runs/lodo_tid \
    --config.data.roots='("/data/tid2013",)' --config.model.init=/weights/resnet18-f37072fd.pth
  (add --config.lodo.held_out='(8,)' for one type, e.g. Gaussian blur)

Data: TID2013 in its native layout. For each held-out type: a meta-training run in
`workdir/type_<t>/`, then zero-shot and k-shot (k in 5, 10, 20) SROCC on the held-out type's
images of references disjoint from the support images.
Runtime: not run here (no TID2013 on the development machine); 24 meta-training runs.
Expected result (the paper's claim, qualitatively): held-out SROCC of the meta-learned model above
that of an ImageNet-initialised model trained on the same 23 types, on most types.
"""

from metaiqa_jax.train import defaults


def get_config():
  config = defaults.base_config()
  config.data.sources = ('tid2013',)
  config.data.roots = ('',)
  config.num_steps = 5000
  return config
