"""Scores images with a MetaIQA model: `python launch/score.py --weights W PATH...` (see --help)."""
from metaiqa_jax.cli.score import run

if __name__ == '__main__':
  run()
