"""`python launch/finetune.py --config=configs/NAME.py --workdir=DIR [--distributed]` (see --help)."""
from metaiqa_jax.cli.programs import finetune

if __name__ == '__main__':
  finetune()
