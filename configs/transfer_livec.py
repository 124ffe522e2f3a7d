"""Transfer to authentic distortions: synthetic pretraining vs scratch on LIVE Challenge.

Command (the dev half shipped to this project's machines; any LIVE Challenge root works):
  metaiqa-transfer --workdir=/tmp/metaiqa-transfer \
    --config.finetune.root=../shared/data/livec_dev/ChallengeDB_release
  (equivalently: --config=configs/transfer_livec.py; override any key, e.g.
  --config.transfer.meta_workdir=RUN to reuse a finished meta-training run)

What it does: pretrains the meta-learned and the multitask initialisation on the whole synthetic
bank (25 types x 5 levels x 35 bundled photos at 512 px, 2000 steps each, with the shared
pretraining settings: 64 px inputs of 4 x 4 native-scale mini-patches; the demo uses 32 px ones),
then fine-tunes scratch / multitask / meta on the same 5 seeded 80/20 splits (the epoch chosen on
10% of train, never on test), scores the sharpness baseline (variance of the Laplacian) on the
same test parts, and fine-tunes each init once more on all images into DIR/final/<init>/.
Runtime and result: README, section "LIVE Challenge (dev half, 256 px)", regenerated from
DIR/report.json by `python launch/readme_tables.py --transfer=DIR/report.json` (the last run:
39 min with the cores shared; test SROCC scratch 0.510, multitask 0.472, meta 0.527, sharpness
0.502: targets not met; the run before, which differed only in float rounding, ranked the
three initialisations the other way round: within the run-to-run noise).
This is not the paper's protocol (no ImageNet weights, half the images at 256 px, CPU budget).
"""

from metaiqa_jax.train import transfer


def get_config():
  return transfer.transfer_config()
