"""The embedded default: meta-learned vs multitask vs random initialisation on unseen distortions.

Command (what the README's quick start runs):
  metaiqa-demo --workdir=/tmp/metaiqa-demo
  (equivalently: metaiqa-demo --config=configs/demo.py --workdir=/tmp/metaiqa-demo)

Data: none to download. The synthetic bank of 25 KADID-10k distortion types x 5 levels applied
at 512 px to the 35 bundled photos (24 Kodak photos shipped in the package + 11 from the
scikit-image / scikit-learn / matplotlib wheels), labelled with the KADID-10k human mean for each
(type, level). 5 types (lens blur, Lab saturation, JPEG, white noise, pixelate) and 5 photos are
held out. Runtime and result: README, section "What the demo shows" (regenerated from
report.json by `python launch/readme_tables.py --demo=WORKDIR/report.json`).

How the settings were chosen (2-core CPU; multitask regression on 29 photos x 20 types, sanity
= pooled SROCC on 6 held-out photos under the 20 training types, mean over 9 views; ResNet-18
width 0.125, 64 px inputs, Adam with cosine decay, batch 64 unless said):

  input (bank at 512 px, no resize)     steps x batch   lr      train s   sanity SROCC
  crop 64                               1000 x 64       1e-3    110       0.24
  crop 64                               1000 x 64       3e-3     98       0.32
  crop 64                               1000 x 64       1e-2    111       0.12
  crop 64, width 0.25                   1000 x 64       3e-3    150       0.33
  crop 96                               1000 x 64       3e-3    240       0.40
  crop 64                               3000 x 64       3e-3    324       0.43
  crop 64 from textured places only     1000 x 64       3e-3     93       0.34
  fragments 2 x 2 (32 px mini-patches)  1000 x 64       3e-3    100       0.36
  fragments 2 x 2                       2000 x 32       2e-3     96       0.38
  fragments 4 x 4 (16 px)               1000 x 64       3e-3     99       0.40
  fragments 8 x 8 (8 px)                1000 x 64       3e-3    106       0.40
  fragments 4 x 4 of a 48 px input      1000 x 64       3e-3     91       0.39
  fragments 4 x 4, lr warm-up 100       1000 x 64       5e-3    (shared)  0.41
  fragments 4 x 4, loss on 4-view mean  1000 x 64       3e-3    (shared)  0.14
  fragments 4 x 4                       5000 x 64       3e-3    ~520      0.38 / 0.36 / 0.54 /
                                                                          0.57 / 0.58 at 1k-5k

Evaluation views: 4 (2 x 2) 0.545, 9 (3 x 3) 0.575, 25 no better (5000-step model). Through the
programs' task batches (the demo's code path, 1000 steps): multitask 4 tasks x 16 images 0.25
(1800 steps), 8 x (4 + 4) 0.415, 16 x (2 + 2) 0.41, so a batch must mix >= 8 types (BatchNorm);
meta-training with per-task BatchNorm statistics -0.006 (1800 steps), statistics shared over the
meta-batch but taken from the running averages 0.07, the exact pooled statistics
(`meta.batch_norm='shared'`) 0.30; adapting the head (ANIL) rather than all weights: 300 steps
of 4 x (4 + 4) with start-up 94 s vs 177 s. A sanity SROCC of 0.6 needs about 5000 multitask
steps (about 9 min per model here), which the demo's 10 minutes for two models do not hold.

The demo itself (`metaiqa-demo`, 2 cores, nothing else running), by training steps per model:

  steps   wall          sanity meta / multitask   held-out types, k=0: meta / multitask
  900     11 min 16 s   0.276 / 0.282             0.469 / 0.335
  700     8 min 49 s    0.135 / 0.327             0.096 / 0.508

700 steps is what fits the 10-minute budget. Which initialisation is ahead flips between the two
lengths: the comparison is not settled at this budget.
"""

from metaiqa_jax.train import demo


def get_config():
  return demo.demo_config()
