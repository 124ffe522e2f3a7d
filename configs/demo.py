"""The embedded default: meta-learned vs multitask vs random initialisation on unseen distortions.

Command (what the README's quick start runs):
  metaiqa-demo --workdir=/tmp/metaiqa-demo
  (equivalently: metaiqa-demo --config=configs/demo.py --workdir=/tmp/metaiqa-demo)

Data: none to download. The synthetic bank of 25 KADID-10k distortion types x 5 levels applied
to the 11 photos bundled in scikit-image / scikit-learn / matplotlib wheels (shrunk to 96 px),
labelled with the KADID-10k human mean for each (type, level). 5 types (lens blur, Lab
saturation, JPEG, white noise, pixelate) and 3 photos are held out; ResNet-18 at width 0.25,
64 px inputs, 300 meta-steps (4 tasks x 8+8 images, second-order MAML, K = 1) vs the same 300
steps of multitask regression vs no training, each adapted with 5 SGD steps on k images.
Runtime and result: see README "What the demo shows" (measured on the 2-core CPU machine).
"""

from metaiqa_jax.train import demo


def get_config():
  return demo.demo_config()
