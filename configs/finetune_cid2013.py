"""Fine-tuning a meta-trained model on CID2013 through the generic `name,mos[,std]` CSV.

Command:
  metaiqa-finetune --config=configs/finetune_cid2013.py --workdir=runs/ft_cid \
    --config.finetune.root=/data/CID2013 --config.model.init=runs/meta_tid_kadid

Data: CID2013 images under `root` and `root/cid2013.csv` with columns `name,mos[,std]` (the pyiqa
`meta_info` convention; MOS 0..100 -> /100). Splits 70/10/20, model selection on val.
Runtime: not run here (no CID2013 on the development machine); 474 images: minutes on a GPU.
Expected result: no reference figure is claimed here (we could not check the paper's CID2013
numbers); compare against a fine-tuned ImageNet-initialised model under the same splits.
"""

from metaiqa_jax.train import defaults


def get_config():
  config = defaults.base_config()
  config.finetune.source = 'cid2013'
  return config
