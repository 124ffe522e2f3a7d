"""`metaiqa-export`: write a MetaIQA model's weights as a PyTorch state dict file.

  metaiqa-export --weights WEIGHTS --format pyiqa|official|torchvision --output FILE [--overwrite]

Converts trained weights (WEIGHTS: a training run's checkpoint directory, or a PyTorch file:
torchvision ResNet, the authors' MetaIQA .pt, pyiqa MetaIQA .pth; anything metaiqa-score
--weights takes) into a file that torch.load reads, in the key layout of another implementation.
torch is not needed; the file holds tensors only (no code), and FILE is written atomically and
never replaced without --overwrite.

  pyiqa        pyiqa's MetaIQA: resnet_layer.*, head.*, mean, std (flat; load it with
               pyiqa.archs.metaiqa_arch.MetaIQA(pretrained_model_path=FILE))
  official     the authors' Net (zhuhancheng/MetaIQA): resnet_layer.*, net.*; load it with
               model.load_state_dict(torch.load(FILE))
  torchvision  torchvision.models.resnet18/34/50 state dict, fc included; the MetaIQA head is
               left out (a warning says so)

Exit status: 0 written; 2 a user error (one line: missing or bad flag, FILE exists, unreadable
or unfitting WEIGHTS); 74 FILE could not be written.

Example:
  metaiqa-export --weights runs/ft_livec/split_0 --format pyiqa --output metaiqa_livec.pth
"""

import os
import sys

from absl import flags, logging

from metaiqa_jax.cli import usage

_FLAG_NAMES = ('weights', 'format', 'output', 'overwrite')


def _define_flags():
  """Defines the flags; called when the program runs, not on import.

  `metaiqa-score` defines flags of the same names: importing both modules keeps its definitions,
  and running this program replaces them (`allow_override`), e.g. in a process that imported
  both.
  """
  flags.DEFINE_string('weights', None, 'Checkpoint directory or PyTorch .pt/.pth file.',
                      allow_override=True)
  flags.DEFINE_string('format', None, 'Key layout: pyiqa | official | torchvision.',
                      allow_override=True)
  flags.DEFINE_string('output', None, 'The .pth file to write.', allow_override=True)
  flags.DEFINE_bool('overwrite', False, 'Replace --output if it exists.', allow_override=True)


def _report(message: str):
  print(f'metaiqa-export: {message}', file=sys.stderr, flush=True)


def _load_variables(weights: str) -> dict:
  """MetaIQA variables from a checkpoint directory or a PyTorch file (as `metaiqa-score`)."""
  if os.path.isdir(weights):
    from metaiqa_jax import checkpoints  # pylint: disable=import-outside-toplevel
    _, variables = checkpoints.restore_variables(weights)
    return variables
  from metaiqa_jax.weights import load_torch_weights  # pylint: disable=import-outside-toplevel
  return load_torch_weights(weights)


def _usage_error(argv) -> str | None:
  """What is wrong with the arguments (checked before any weights are read), or None."""
  values = {name: flags.FLAGS[name].value for name in _FLAG_NAMES}
  missing = [f'--{name}' for name in ('weights', 'format', 'output') if values[name] is None]
  if len(argv) > 1:
    return f'unexpected arguments {argv[1:]} (all inputs are flags; see --help)'
  if missing:
    return f'{", ".join(missing)} must be given (see --help)'
  from metaiqa_jax.weights.export import FORMATS  # pylint: disable=import-outside-toplevel
  if values['format'] not in FORMATS:
    return f'--format {values["format"]!r}: expected one of {", ".join(FORMATS)}'
  output = values['output']
  if os.path.lexists(output) and not values['overwrite']:
    return f'{output} exists; pass --overwrite to replace it'
  if os.path.isdir(output):
    return f'--output {output} is a directory; give a file name'
  folder = os.path.dirname(os.path.abspath(output))
  if not os.path.isdir(folder):
    return f'the folder of --output, {folder}, does not exist'
  return None


def main(argv) -> int:
  error = _usage_error(argv)
  if error:
    _report(f'error: {error}')
    return 2
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Not JAX's INFO lines about absent TPUs.
  from metaiqa_jax.models import infer_model_config  # pylint: disable=import-outside-toplevel
  from metaiqa_jax.weights import export  # pylint: disable=import-outside-toplevel
  weights, layout, output = (flags.FLAGS[n].value for n in ('weights', 'format', 'output'))
  try:
    variables = _load_variables(weights)
  except (ValueError, OSError) as e:
    _report(f'error: cannot load weights: {e}')
    return 2
  try:
    state = export.export_torch_weights(variables, output, layout,
                                        overwrite=flags.FLAGS.overwrite)
  except (ValueError, FileExistsError) as e:
    _report(f'error: {e}')
    return 2
  except OSError as e:
    _report(f'error: cannot write {output}: {e}')
    return os.EX_IOERR
  config = infer_model_config(variables)
  _report(f'wrote {output}: {layout} layout, {len(state)} tensors, {config.arch} width '
          f'{config.width:g}, head {config.head_features} (from {weights})')
  return 0


def run():
  """Console-script entry point (`metaiqa-export`)."""
  _define_flags()
  usage.run(main, description=__doc__, flag_names=_FLAG_NAMES)


if __name__ == '__main__':
  run()
