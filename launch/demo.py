"""`python launch/demo.py --workdir=DIR [--smoke | --config=configs/demo.py]` (see --help)."""
from metaiqa_jax.cli.programs import demo

if __name__ == '__main__':
  demo()
