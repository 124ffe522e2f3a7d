"""The paper's meta-training: ResNet-18 + MetaIQA head on TID2013 + KADID-10k distortion tasks.

Command:
  metaiqa-meta-train --config=configs/meta_tid_kadid.py --workdir=runs/meta_tid_kadid \
    --config.data.roots='("/data/tid2013", "/data/kadid10k")' \
    --config.model.init=/weights/resnet18-f37072fd.pth

Data: TID2013 (24 types x 125 images) and KADID-10k (25 types x 405 images) in their native
layouts (README "Datasets"); ImageNet ResNet-18 weights from torchvision as the starting point
(`model.init`), as the paper. Task ids: TID2013 types 1..24, KADID-10k types 101..125.
Hyperparameters from the authors' released code where the paper is silent: inner SGD learning
rates 1e-4 (backbone) / 1e-2 (head), outer Adam 1e-4 / 1e-2 decayed x0.9 every 2 "epochs"
(1000 meta-steps here), support 75 / query 50 images per task, second-order MAML, K = 1.
Runtime: not run here (no GPU and no TID2013/KADID-10k on the development machine). Estimate
from bench/meta_step.py: a 224 px second-order ResNet-18 step with 2 tasks x 8+8 images takes
26 s on the 2-core CPU, so this config needs an accelerator (8 tasks x 125 images per step).
Expected result: meta-validation SROCC on held-out TID2013/KADID references rising to >= 0.85;
the checkpoint then fine-tunes to the paper's LIVE Challenge SROCC 0.835 / PLCC 0.802
(configs/finetune_livec.py).
"""

from metaiqa_jax.train import defaults


def get_config():
  return defaults.base_config()
