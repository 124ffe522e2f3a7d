"""`python launch/transfer.py --workdir=DIR --config.finetune.root=ROOT [--smoke]` (see --help)."""
from metaiqa_jax.cli.programs import transfer

if __name__ == '__main__':
  transfer()
