"""`python launch/evaluate.py --config=configs/NAME.py --workdir=DIR [--distributed]` (see --help)."""
from metaiqa_jax.cli.programs import evaluate

if __name__ == '__main__':
  evaluate()
