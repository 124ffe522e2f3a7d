"""`python launch/meta_train.py --config=configs/NAME.py --workdir=DIR [--distributed]` (see --help)."""
from metaiqa_jax.cli.programs import meta_train

if __name__ == '__main__':
  meta_train()
