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
DIR/report.json by `python launch/readme_tables.py --transfer=DIR/report.json` (the last run,
AMD EPYC, 2 cores to itself: 37 min; test SROCC scratch 0.426, multitask 0.527, meta 0.462,
sharpness 0.502, all 95% intervals overlapping: targets not met; the two runs before, which
differed in float rounding and fine-tuning seeds, ranked the three initialisations differently:
within the run-to-run noise).
This is not the paper's protocol (no ImageNet weights, half the images at 256 px, CPU budget).

How the fine-tuning settings were checked (the multitask initialisation of that run, reused; its
5 splits; test SROCC mean ± 95% t-interval, of the epoch chosen on val as the program does, and
of the last epoch for comparison; AMD EPYC, 2 cores shared with other jobs; each row changes one
setting of those below):

  change                                    epoch chosen on val   last epoch
  none (the transfer run above)             0.527 ± 0.071         0.534 ± 0.030
  evaluation views 5 x 5, not 3 x 3         0.524 ± 0.079         0.538 ± 0.030
  lr 3e-4 (backbone and head)               0.494 ± 0.070         0.508 ± 0.060
  backbone lr 1e-4 (head 1e-3)              0.480 ± 0.073         0.486 ± 0.060
  lr 3e-3 (backbone and head)               0.523 ± 0.051         0.532 ± 0.043
  20 epochs                                 0.514 ± 0.108         0.546 ± 0.042
  inputs of 2 x 2 mini-patches of 32 px     0.510 ± 0.041         0.522 ± 0.036

No change moves the mean by more than its interval, so the settings stay; what limits the
pretrained initialisations is what they learned on the bank (meta-validation SROCC 0.12
multitask, 0.23 meta), not how they are fine-tuned. Learning the bank better does not help
either: multitask pretraining 4 times longer (8000 steps, 15 min) reached meta-validation SROCC
0.375 on the bank, but its fine-tuned test SROCC on the same splits was 0.507 ± 0.020 against
0.527 ± 0.071 (per split -0.02, -0.03, -0.06, -0.05, +0.06), so the 2000 steps stay: the
synthetic distortions' quality scale does not carry over to authentic ones at this model size. The last epoch scored slightly higher than
the chosen one in all 7 rows (in that run also for scratch, 0.468 against 0.426, not for meta,
0.455 against 0.462): choosing on 58 validation images adds noise. The program still chooses on
val, as the experiment states.
"""

import ml_collections

from metaiqa_jax.configs import pretraining


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """The LIVE Challenge transfer experiment. `arg='smoke'`: toy size for tests (meaningless
  numbers)."""
  smoke = arg == 'smoke'
  c = pretraining.get_config(arg)
  c.data.held_out_types = ()            # Pretrain on every type: the test set is elsewhere.
  if not smoke:                         # A longer pretraining than the demo's (40 min budget).
    c.num_steps = 2000
    c.optim.decay_steps = c.num_steps - c.optim.warmup_steps
    c.eval_every = c.num_steps
    c.checkpoint_every = 500
  c.finetune.source = 'livec'
  c.finetune.n_splits = 5
  c.finetune.test_fraction = 0.2
  c.finetune.val_fraction = 0.1
  c.finetune.epochs = 10
  c.finetune.crops_per_image = 4
  c.finetune.batch_size = 32
  c.finetune.lr = 1e-3
  c.finetune.head_lr = 1e-3
  c.finetune.schedule = 'cosine'
  c.finetune.eval_batch_size = 32
  if smoke:
    c.finetune.n_splits = 2
    c.finetune.epochs = 2
    c.finetune.crops_per_image = 1
    c.finetune.batch_size = 4
    c.finetune.eval_batch_size = 4
  return c
