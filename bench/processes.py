"""Meta-training and fine-tuning steps as 1 process (1 or 2 devices) vs 2 processes (1 each).

Not a test. Each layout runs the real programs (`launch/meta_train.py`, `launch/finetune.py`,
the 2-process ones through `launch/local_cluster.sh`, CPU collectives over gloo) on the demo's
model and inputs (ResNet-18 width 0.125, 32 px inputs of 2 x 2 mini-patches, ANIL meta-steps of
8 tasks x (4 + 4) images with BatchNorm statistics shared over the meta-batch; fine-tuning
batches of 32), and takes the median time per step from the wall times of process 0's log lines
(meta-training logs every step; fine-tuning every epoch, so its figure includes the epoch's
validation scoring), after the first few lines so that compilation is left out. Layouts are
interleaved A/B/C, A/B/C, ... over `--rounds`.

The meta-training data is a synthetic bank at `--max-side` px (a smaller bank than the demo's
512 px one: it is made by every process, and only step times are measured); fine-tuning uses a
LIVE Challenge-layout folder of `--images` generated textures.

Usage (from the repository root):
  python bench/processes.py                    # 2 rounds, 40 meta-steps, 3 fine-tuning epochs
Writes bench/results/processes.json.
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAUNCH = ROOT / 'launch'
sys.path.insert(0, str(ROOT / 'tests'))

LAYOUTS = (('1 process, 1 device', 1, 1), ('1 process, 2 devices', 1, 2),
           ('2 processes, 1 device each', 2, 1))


def _command(processes: int, script: str, flags: list) -> list:
  if processes == 1:
    return [sys.executable, str(LAUNCH / script), *flags]
  return ['bash', str(LAUNCH / 'local_cluster.sh'), str(processes), str(LAUNCH / script), *flags]


def _step_seconds(metrics_file: pathlib.Path, skip: int) -> list:
  """Seconds between consecutive 'train' log lines of process 0, after the first `skip`."""
  entries = [json.loads(line) for line in metrics_file.read_text().splitlines()]
  train = [(e['step'], e['wall_time']) for e in entries if e['split'] == 'train']
  train = train[skip:]
  return [(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(train, train[1:])]


def run_layout(program: str, processes: int, devices: int, workdir: pathlib.Path,
               args) -> list:
  """Per-step seconds of one run of `program` ('meta' or 'finetune') in one layout."""
  common = [f'--workdir={workdir}', '--config=configs/demo.py', '--compilation_cache=off',
            '--config.checkpoint_every=100000', '--config.eval_every=100000']
  if program == 'meta':
    script, metrics_file, skip = 'meta_train.py', workdir / 'metrics.jsonl', 3
    flags = common + [f'--config.num_steps={args.steps}', '--config.log_every=1',
                      f'--config.data.synthetic_max_side={args.max_side}']
  else:
    script, metrics_file, skip = 'finetune.py', workdir / 'split_0' / 'metrics.jsonl', 1
    flags = common + ['--config.finetune.source=livec', f'--config.finetune.root={args.livec}',
                      '--config.finetune.splits=(0,)', f'--config.finetune.epochs={args.epochs}',
                      '--config.finetune.batch_size=32']
  env = dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  result = subprocess.run(_command(processes, script, flags), env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  if result.returncode:
    raise RuntimeError(f'{program} ({processes} x {devices}) failed:\n{result.stderr[-3000:]}')
  return _step_seconds(metrics_file, skip)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--steps', type=int, default=40, help='meta-steps per run')
  parser.add_argument('--max-side', type=int, default=128, help='synthetic bank size, px')
  parser.add_argument('--epochs', type=int, default=3, help='fine-tuning epochs per run')
  parser.add_argument('--images', type=int, default=400, help='fine-tuning images')
  parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'processes.json'))
  args = parser.parse_args()
  import test_transfer  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory(prefix='metaiqa-bench-processes-') as tmp:
    tmp = pathlib.Path(tmp)
    args.livec = test_transfer.write_livec_root(tmp / 'livec', n=args.images, side=256)
    seconds = {(p, name): [] for p in ('meta', 'finetune') for name, _, _ in LAYOUTS}
    for r in range(args.rounds):
      for program in ('meta', 'finetune'):
        for name, processes, devices in LAYOUTS:
          started = time.time()
          steps = run_layout(program, processes, devices,
                             tmp / f'{program}-{processes}x{devices}-{r}', args)
          seconds[(program, name)].append(float(np.median(steps)))
          print(f'round {r + 1} {program:8s} {name:28s} {seconds[(program, name)][-1]:.3f} '
                f's/step (run {time.time() - started:.0f} s)', flush=True)
  rows = []
  for (program, name), values in seconds.items():
    base = np.asarray(seconds[(program, LAYOUTS[0][0])])
    rows.append({'program': program, 'layout': name, 'median_s_per_step': float(np.median(values)),
                 'runs': values, 'ratio_to_1_device': float(np.median(base / np.asarray(values)))})
  print('\n| program | layout | s/step (median of runs) | runs | speed-up vs 1 device |\n'
        '|---|---|---|---|---|')
  for row in rows:
    runs = ' / '.join(f'{v:.3f}' for v in row['runs'])
    print(f'| {row["program"]} | {row["layout"]} | {row["median_s_per_step"]:.3f} | {runs} | '
          f'{row["ratio_to_1_device"]:.2f}x |')
  print(f'\nload average at the end: {os.getloadavg()}')
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump({'rows': rows, 'machine': platform.platform(), 'cpus': os.cpu_count(),
               'load_average': os.getloadavg(), 'args': vars(args)}, f, indent=1)


if __name__ == '__main__':
  main()
