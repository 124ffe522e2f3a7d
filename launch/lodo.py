"""`python launch/lodo.py --config=configs/NAME.py --workdir=DIR [--distributed]` (see --help)."""
from metaiqa_jax.cli.programs import lodo

if __name__ == '__main__':
  lodo()
