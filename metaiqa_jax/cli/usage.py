"""`--help` for the console scripts: a usage line, what the program does, an example command, and
its flags; exit status 0.

absl's own `--help` prints the `__main__` module's docstring and the flags defined in the script
that was run, then exits with status 1. Our scripts are thin console entry points whose flags
live in library modules (`metaiqa_jax.cli.*`), so without this only a usage line would be
printed (the flags only under `--helpfull`).
"""

import sys
from typing import Callable, Sequence

from absl import app, flags

HELP_ARGS = ('-h', '--help', '--helpshort', '-?')


def run(main: Callable, *, description: str, flag_names: Sequence[str]) -> None:
  """`app.run(main)`, with `--help` printing `description` and the flags `flag_names`.

  Args:
    main: the absl main, `argv -> exit status or None`.
    description: usage line, a paragraph on what the program does and an example command
      (plain text; a literal `%` must be written `%%`, as absl substitutes `%s` with the program
      name).
    flag_names: the flags `--help` lists (all of them: `--helpfull`).
  """
  sys.modules['__main__'].__doc__ = description
  for name in flag_names:
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
  arguments = sys.argv[1:sys.argv.index('--')] if '--' in sys.argv else sys.argv[1:]
  if any(arg in HELP_ARGS for arg in arguments):
    app.usage(shorthelp=True, writeto_stdout=True)
    print('Try --helpfull to get a list of all flags.')
    sys.exit(0)
  app.run(main)


def run_module(main: Callable, module_name: str) -> None:
  """`run` for a console script whose description is its module's docstring and whose flags are
  the ones its module defines (`metaiqa-score`, `metaiqa-adapt`)."""
  run(main, description=sys.modules[module_name].__doc__,
      flag_names=[flag.name for flag in flags.FLAGS.get_key_flags_for_module(module_name)])
