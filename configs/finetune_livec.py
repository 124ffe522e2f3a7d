"""Fine-tuning a meta-trained model on LIVE Challenge, 10 random 80/20 splits.

Command:
  metaiqa-finetune --config=configs/finetune_livec.py --workdir=runs/ft_livec \
    --config.finetune.root=/data/ChallengeDB_release \
    --config.model.init=runs/meta_tid_kadid

Data: LIVE Challenge in its native layout (`Images/`, `Data/AllImages_release.mat`,
`Data/AllMOS_release.mat`; the 7 training images dropped -> 1162), MOS/100. Each split: 70% train,
10% val (model selection: the epoch with the best val SROCC), 20% test (reported only).
`model.init` is a meta-training workdir (its best checkpoint) or a PyTorch file.
Runtime: not run here (no LIVE Challenge images on the development machine); about
10 x 20 epochs x 813 images: roughly an hour on one modern GPU.
Expected result (paper, as quoted in later tables): test SROCC 0.835, PLCC 0.802 (10 splits).
"""

from metaiqa_jax.train import defaults


def get_config():
  config = defaults.base_config()
  config.finetune.source = 'livec'
  return config
