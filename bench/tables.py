"""BENCHMARKS.md's tables, rewritten from the result files the benchmarks wrote.

  python bench/tables.py                 # rewrites the generated tables of BENCHMARKS.md
  python bench/tables.py --print         # prints them instead

Each table sits between `<!-- BEGIN name -->` / `<!-- END name -->` lines of BENCHMARKS.md and
is made here from `bench/results/*.json` (the figures are never edited by hand). A table whose
result files are missing is left as it is.
"""

import argparse
import json
import pathlib
import re
import sys

import common

ROOT = pathlib.Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
from metaiqa_jax.models.layers import choose_conv_impl  # noqa: E402  (the rule being checked)
from metaiqa_jax.train.reporting import replace_generated_section  # noqa: E402

GRAD_ORDER = {'forward': 0, 'forward+backward': 1, 'second order': 2}


def _rows(name):
  path = common.RESULTS / f'{name}.json'
  return json.loads(path.read_text()) if path.exists() else None


def _load(rows) -> str:
  machine = next(r for r in rows if r['metric'] == 'machine')
  return json.loads(machine['shape'])['loadavg_at_end']


def _ratio(row) -> str:
  if not row or row.get('ratio') is None:
    return '-'
  spread = row.get('ratio_range')
  return (f"**{row['ratio']:.2f}x** ({spread[0]:.2f}-{spread[1]:.2f})" if spread
          else f"{row['ratio']:.2f}x")


def _find(rows, metric, shape_part=''):
  return next((r for r in rows if r['metric'] == metric and shape_part in r['shape']), None)


def _fmt(value, digits=3) -> str:
  return '-' if value is None else f'{value:.{digits}g}'


def table_224px() -> str | None:
  """Scoring, the fine-tuning step and the meta-steps at 224 px against PyTorch."""
  score, train, meta = _rows('score'), _rows('train_step'), _rows('meta_step_224px')
  if not (score and train and meta):
    return None
  lines = ['| workload (ResNet-18 w1, 224 px) | ours | torch NCHW | ratio (rounds) | '
           'torch channels_last | ratio (rounds) | our first call s |',
           '|---|---:|---:|---|---:|---|---:|']

  def add(label, rows, metric, first_metric, shape_part, unit):
    nchw = _find(rows, metric, shape_part)
    cl = _find(rows, metric + ' vs channels_last', shape_part)
    first = _find(rows, first_metric, shape_part)
    lines.append(f"| {label} | {_fmt(nchw['ours'])} {unit} | {_fmt(nchw['peer'])} | "
                 f"{_ratio(nchw)} | {_fmt(cl and cl['peer'])} | {_ratio(cl)} | "
                 f"{_fmt(first and first['ours'])} |")

  for batch in (32, 1):
    add(f'scoring, batch {batch}', score, 'scoring conv_impl=default float32 images/s',
        'scoring conv_impl=default float32 first call (compile)', f'batch {batch}', 'img/s')
  add('fine-tuning step, batch 16', train, 'training step conv_impl=default images/s',
      'training step conv_impl=default first step (compile)', 'batch 16', 'img/s')
  for algorithm, label in (('maml', 'second-order MAML'), ('fomaml', 'FOMAML'),
                           ('reptile', "Reptile / authors' loop (Adam inner)")):
    row = _find(meta, f'{algorithm} tasks/s (interleaved)')
    first = _find(meta, f'{algorithm} first step (compile)')
    lines.append(f"| {label} meta-step, 2 tasks x (8+8), K=1 | {_fmt(row['ours'])} tasks/s | "
                 f"{_fmt(row['peer'])} | {_ratio(row)} | - | - | {_fmt(first['ours'])} |")
  loads = ', '.join(f'{name} {_load(rows)}' for name, rows in
                    (('score', score), ('train_step', train), ('meta_step_224px', meta)))
  return '\n'.join(lines) + f'\n\nLoad average at the end of each script: {loads}.\n'


def table_meta_64px() -> str | None:
  """Meta-steps at 64 px against the PyTorch peers (interleaved)."""
  meta = _rows('meta_step')
  if not meta:
    return None
  lines = ['| algorithm (ResNet-18 w1, 64 px, 2 tasks x (8+8), K=1) | ours tasks/s | '
           'torch tasks/s | ratio (rounds) | our first step s |', '|---|---:|---:|---|---:|']
  for algorithm in ('maml', 'fomaml', 'reptile'):
    row = _find(meta, f'{algorithm} tasks/s (interleaved)')
    first = _find(meta, f'{algorithm} first step (compile)')
    if row:
      lines.append(f"| {algorithm} | {_fmt(row['ours'])} | {_fmt(row['peer'])} | {_ratio(row)} "
                   f"| {_fmt(first and first['ours'])} |")
  return '\n'.join(lines) + f'\n\nLoad average at the end: {_load(meta)}.\n'


def _conv_layers(rows):
  """{pass: [(name, kernel, stride, output pixels, count, matmul s, xla s)]} of a convs file."""
  layers = {}
  for r in rows:
    m = re.match(r'conv (\d+)x\d+/(\d+) \d+->\d+ @(\d+)px (.+)$', r['metric'])
    if not m:
      continue
    kernel, stride, size = (int(v) for v in m.groups()[:3])
    out = (size + 2 * (kernel // 2) - kernel) // stride + 1
    count = int(re.search(r'occurs (\d+)x', r['shape']).group(1))
    name = r['metric'][len('conv '):-len(m.group(4)) - 1]
    layers.setdefault(m.group(4), []).append(
        (name, kernel, stride, out * out, count, r['ours'], r['peer']))
  return layers


def table_convs() -> str | None:
  """Whole-network sums per pass: XLA, matmul, the rule, the best form layer by layer."""
  files = [(size, _rows(name)) for size, name in ((64, 'convs'), (224, 'convs_224px'))]
  if not all(rows for _, rows in files):
    return None
  lines = ['| input, batch 8 | use | all XLA s | all matmul s | rule (`auto`) s | best per '
           'layer s |', '|---|---|---:|---:|---:|---:|']
  for size, rows in files:
    for pass_name, layers in _conv_layers(rows).items():
      total = lambda pick: sum(count * pick(k, s, px, mm, xla)
                               for _, k, s, px, count, mm, xla in layers)
      xla = total(lambda k, s, px, mm, xla: xla)
      matmul = total(lambda k, s, px, mm, xla: mm)
      best = total(lambda k, s, px, mm, xla: min(mm, xla))
      if pass_name in GRAD_ORDER:
        rule = _fmt(total(lambda k, s, px, mm, xla: mm if choose_conv_impl(
            k, s, px, GRAD_ORDER[pass_name]) == 'matmul' else xla), 4)
      else:  # In a loop body (not a choice of the rule: the inner loop avoids it).
        rule = '-'
      lines.append(f'| {size} px | {pass_name} | {xla:.4f} | {matmul:.4f} | {rule} | '
                   f'{best:.4f} |')
  loads = ', '.join(f'{size} px {_load(rows)}' for size, rows in files)
  return '\n'.join(lines) + f'\n\nLoad average at the end: {loads}.\n'


def table_convs_224px_layers() -> str | None:
  """Per layer at 224 px: XLA / matmul time per use (> 1: the matmul form is faster)."""
  rows = _rows('convs_224px')
  if not rows:
    return None
  layers = _conv_layers(rows)
  lines = ['| conv (224 px input, batch 8) | output | x | forward xla/matmul | forward+backward '
           '| second order | rule picks (fwd / train / 2nd) |', '|---|---|---:|---:|---:|---:|---|']
  for i, (name, k, s, px, count, _, _) in enumerate(layers['forward']):
    ratios = [f'{layers[p][i][6] / layers[p][i][5]:.2f}' for p in GRAD_ORDER]
    picks = ' / '.join(choose_conv_impl(k, s, px, order) for order in GRAD_ORDER.values())
    side = int(round(px ** 0.5))
    lines.append(f'| {name} | {side}x{side} | {count} | ' + ' | '.join(ratios) + f' | {picks} |')
  return '\n'.join(lines) + '\n'


def table_memory() -> str | None:
  """Second-order compile time and memory (each configuration in its own process)."""
  compile_rows, remat = _rows('compile'), _rows('remat')
  if not (compile_rows and remat):
    return None
  lines = ['| configuration (2 tasks x (8+8), 64 px, maml) | tasks/s | XLA buffers MB | '
           'peak RSS MB | first step s |', '|---|---:|---:|---:|---:|']
  for rows in (compile_rows, remat):
    for r in rows:
      if r['metric'] != 'maml tasks/s':
        continue
      shape = r['shape']
      get = lambda metric: _find(rows, metric, shape)
      label = re.sub(r' remat=(\w+) task_map=\w+ conv_impl=\w+', r' remat \1', shape)
      lines.append(f"| {label} | {_fmt(r['ours'])} | "
                   f"{_fmt(get('maml XLA buffers (args+out+temp)')['ours'], 4)} | "
                   f"{_fmt(get('maml peak RSS')['ours'], 4)} | "
                   f"{_fmt(get('maml first step (compile)')['ours'])} |")
  loads = f'compile.json {_load(compile_rows)}, remat.json {_load(remat)}'
  return '\n'.join(lines) + f'\n\nLoad average at the end: {loads}.\n'


def table_commands() -> str | None:
  """metaiqa-score (against its torch + PIL peer) and metaiqa-adapt end to end."""
  rows = _rows('commands')
  if not rows:
    return None
  machine = json.loads(next(r for r in rows if r['metric'] == 'machine')['shape'])
  lines = ['| command (fresh process, start-up included) | ours | torch + PIL loop | ratio '
           '(rounds) | unit | runs |', '|---|---:|---:|---|---|---|']
  lines += [f"| {r['metric']} | {_fmt(r['ours'], 4)} | {_fmt(r['peer'], 4)} | {_ratio(r)} | "
            f"{r['unit']} | {r['shape']} |" for r in rows if r['metric'] != 'machine']
  return '\n'.join(lines + ['', f"{machine.get('cpu')}, {machine.get('nproc')} cores, load "
                                 f"{machine.get('loadavg_at_end')} at the end."])


LITE0_WORKLOADS = (('scoring, batch 1', 'img/s'), ('scoring, batch 32', 'img/s'),
                   ('fine-tuning step, batch 16', 'img/s'),
                   ('meta-step, 8 tasks x (4+4)', 'tasks/s'),
                   ('meta-step, 8 tasks x (4+4), on images', 'tasks/s'))


def table_lite0() -> str | None:
  """EfficientNet-Lite0 + stats head at 224 px against PyTorch (bench/efficientnet.py)."""
  rows = _rows('efficientnet')
  if not rows:
    return None
  lines = ['| workload (Lite0 + stats head, 224 px) | ours | torch NCHW | ratio (rounds) | '
           'torch channels_last | ratio (rounds) | ours / peak | best torch / peak | first call '
           's, cache cold / warm (torch) | peak RSS MB (torch) |',
           '|---|---:|---:|---|---:|---|---:|---:|---|---|']
  for label, unit in LITE0_WORKLOADS:
    base = label.split(', on images')[0]
    nchw = _find(rows, f'{label} {unit}')
    if not nchw:
      continue
    cl = _find(rows, f'{label} {unit} vs channels_last')
    peak = _find(rows, f'{base} achieved / peak') if label == base else None
    cold = _find(rows, f'{base} first call, cold compilation cache')
    warm = _find(rows, f'{base} first call, warm compilation cache')
    rss = _find(rows, f'{base} peak RSS')
    first = (f"{_fmt(cold and cold['ours'])} / {_fmt(warm and warm['ours'])} "
             f"({_fmt(cold and cold['peer'])})" if label == base else '-')
    memory = f"{_fmt(rss['ours'], 4)} ({_fmt(rss['peer'], 4)})" if rss and label == base else '-'
    lines.append(f"| {label} | {_fmt(nchw['ours'])} {unit} | {_fmt(nchw['peer'])} | "
                 f"{_ratio(nchw)} | {_fmt(cl and cl['peer'])} | {_ratio(cl)} | "
                 f"{_fmt(peak and peak['ours'], 2)} | {_fmt(peak and peak['peer'], 2)} | {first} | "
                 f"{memory} |")
  compiled = [r for r in rows if r['metric'].endswith('vs torch.compile')]
  lines += [f"| {r['metric']} | {_fmt(r['ours'])} | {_fmt(r['peer'])} (torch.compile) | "
            f"{_ratio(r)} | | | | | | |" for r in compiled]
  matmul_peak = _find(rows, 'float32 matmul peak (2048^3)')
  return '\n'.join(lines) + (f"\n\nPeak: the same run's float32 matmul, {matmul_peak['ours']:.0f} "
                             f"GFLOP/s (torch.mm {_fmt(matmul_peak['peer'])}); load average at the "
                             f'end {_load(rows)}.\n')


def table_lite0_options() -> str | None:
  """What each option of ours does against ours as shipped, and the head's Adam update."""
  rows = _rows('efficientnet')
  if not rows:
    return None
  lines = ['| option (Lite0 + stats head, 224 px) | with it | reference | ratio (rounds) | unit '
           '| largest score change |', '|---|---:|---:|---|---|---:|']
  for r in rows:
    option = re.match(r'(scoring, batch \d+), (\w+) \(peer: ours as shipped\)', r['metric'])
    if option:
      change = _find(rows, f'{option.group(1)}, {option.group(2)} largest score change')
      lines.append(f"| {option.group(1)}, {option.group(2)} (reference: as shipped) | "
                   f"{_fmt(r['ours'])} | {_fmt(r['peer'])} | {_ratio(r)} | {r['unit']} | "
                   f"{_fmt(change and change['ours'], 2)} |")
    elif r['metric'].startswith(('scoring in calls of', 'Adam update')):
      lines.append(f"| {r['metric'].rsplit(' ', 1)[0]} | {_fmt(r['ours'])} | {_fmt(r['peer'])} | "
                   f"{_ratio(r)} | {r['unit']} | - |")
  return '\n'.join(lines) + '\n'


def table_lite0_targets() -> str | None:
  """Issue 28's targets, met or not, read off efficientnet.json and commands.json."""
  rows, commands = _rows('efficientnet'), _rows('commands')
  if not (rows and commands):
    return None
  lines = ['| target | result | status |', '|---|---|---|']

  def against_faster_peer(label, metric, source=rows):
    found = [r for r in (_find(source, metric), _find(source, metric + ' vs channels_last'))
             if r and r.get('ratio')]
    if not found:
      return
    worst = min(found, key=lambda r: r['ratio'])
    lines.append(f"| {label} >= 1.5x the faster of torch NCHW / channels_last | {_ratio(worst)} "
                 f"against {'channels_last' if 'channels_last' in worst['metric'] else 'NCHW'} | "
                 f"{'met' if worst['ratio'] >= 1.5 else '**missed**'} |")

  for label, unit in LITE0_WORKLOADS[:3]:
    against_faster_peer(label, f'{label} {unit}')
  score = next((r for r in commands if r['metric'].startswith('metaiqa-score')
                and r['unit'] == 'files/s'), None)
  if score:
    lines.append(f"| metaiqa-score end to end >= 1.5x a torch + PIL loop | {_ratio(score)} "
                 f"({_fmt(score['ours'])} against {_fmt(score['peer'])} files/s) | "
                 f"{'met' if score['ratio'] >= 1.5 else '**missed**'} |")
  for label, _ in LITE0_WORKLOADS[:4]:
    warm = _find(rows, f'{label} first call, warm compilation cache')
    if warm:
      lines.append(f"| first call with a warm cache < 5 s: {label} | {warm['ours']:.2f} s | "
                   f"{'met' if warm['ours'] < 5 else '**missed**'} |")
  suffix = ' largest score change'
  for r in rows:
    if r['metric'].endswith(suffix):
      status = 'within' if r['ours'] <= 1e-4 else 'beyond (not shipped)'
      lines.append(f"| scores within 1e-4 of float32 as shipped: {r['metric'][:-len(suffix)]} | "
                   f"{r['ours']:.2g} | {status} |")
  return '\n'.join(lines) + '\n'


def _lite0_layers(rows):
  """[(name, kernel, stride, groups, output side, count, {pass: {form: s}}, {pass: (FLOPs,
  bytes)})] of convs_lite0.json, in the file's order."""
  layers = {}
  for r in rows:
    m = re.match(r'conv ((dw)?(\d+)x\d+/(\d+) \d+->\d+ @(\d+)px) (forward(?:\+backward)?) '
                 r'(\w+)$', r['metric'])
    if not m:
      continue
    name, dw, kernel, stride, size, pass_name, form = m.groups()
    layer = layers.setdefault(name, {
        'kernel': int(kernel), 'stride': int(stride), 'depthwise': bool(dw),
        'out': -(-int(size) // int(stride)),
        'count': int(re.search(r'occurs (\d+)x', r['shape']).group(1)), 'times': {}, 'cost': {}})
    layer['times'].setdefault(pass_name, {'xla': r['peer']})[form] = r['ours']
    layer['cost'][pass_name] = (r['flops'], r['bytes'])
  return layers


def table_convs_lite0() -> str | None:
  """Lite0's convolutions at 224 px: each form, the rule's pick, the roofline bound."""
  rows = _rows('convs_lite0')
  if not rows:
    return None
  peak = _find(rows, 'float32 matmul peak (2048^3)')['ours'] * 1e9
  bandwidth = next(r for r in rows if r['metric'].startswith('memory bandwidth'))['ours'] * 1e9
  layers = _lite0_layers(rows)
  passes = {'forward': 0, 'forward+backward': 1}
  lines = ['| conv (224 px input, batch 8) | out | x | pass | XLA ms | multiply-add / matmul ms | '
           'im2col ms | rule picks | bound ms (FLOPs or bytes) | bound / rule |',
           '|---|---|---:|---|---:|---:|---:|---|---:|---:|']
  totals = {p: {'xla': 0.0, 'matmul': 0.0, 'rule': 0.0, 'best': 0.0, 'bound': 0.0}
            for p in passes}
  for name, layer in layers.items():
    for pass_name, order in passes.items():
      times, (flops, traffic) = layer['times'][pass_name], layer['cost'][pass_name]
      pick = choose_conv_impl(layer['kernel'], layer['stride'], layer['out'] ** 2, order,
                              2 if layer['depthwise'] else 1)
      bound = max(flops / peak, traffic / bandwidth)
      limit = 'FLOPs' if flops / peak > traffic / bandwidth else 'bytes'
      count, total = layer['count'], totals[pass_name]
      for key, value in (('xla', times['xla']), ('matmul', times['matmul']),
                         ('rule', times[pick]), ('best', min(times.values())), ('bound', bound)):
        total[key] += count * value
      lines.append(f"| {name} | {layer['out']}x{layer['out']} | {count} | {pass_name} | "
                   f"{times['xla'] * 1e3:.3g} | {times['matmul'] * 1e3:.3g} | "
                   f"{_fmt(times.get('im2col') and times['im2col'] * 1e3)} | {pick} | "
                   f"{bound * 1e3:.2g} ({limit}) | {bound / times[pick]:.2f} |")
  lines += ['', '| whole network, batch 8 | all XLA s | all multiply-add / matmul s | rule s | '
            'best per layer s | roofline bound s | bound / rule |',
            '|---|---:|---:|---:|---:|---:|---:|']
  for pass_name, t in totals.items():
    lines.append(f"| {pass_name} | {t['xla']:.3f} | {t['matmul']:.3f} | {t['rule']:.3f} | "
                 f"{t['best']:.3f} | {t['bound']:.3f} | {t['bound'] / t['rule']:.2f} |")
  return '\n'.join(lines) + (f'\n\nBounds: the same run\'s float32 matmul peak '
                             f'{peak / 1e9:.0f} GFLOP/s and memory bandwidth '
                             f'{bandwidth / 1e9:.1f} GB/s; load average at the end '
                             f'{_load(rows)}.\n')


TABLES = {'bench-commands': table_commands, 'bench-224px': table_224px,
          'bench-meta-64px': table_meta_64px, 'bench-convs': table_convs,
          'bench-convs-224px-layers': table_convs_224px_layers, 'bench-memory': table_memory,
          'bench-lite0-targets': table_lite0_targets, 'bench-lite0': table_lite0,
          'bench-lite0-options': table_lite0_options,
          'bench-convs-lite0': table_convs_lite0}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--print', action='store_true', help='print instead of rewriting')
  parser.add_argument('--file', default=str(ROOT / 'BENCHMARKS.md'))
  args = parser.parse_args()
  path = pathlib.Path(args.file)
  text = path.read_text()
  for name, make in TABLES.items():
    table = make()
    if table is None:
      print(f'{name}: result files missing, left as it is', file=sys.stderr)
      continue
    if args.print:
      print(f'<!-- {name} -->\n{table}')
    else:
      text = replace_generated_section(text, name, table)
  if not args.print:
    path.write_text(text)
    print(f'wrote {path}')


if __name__ == '__main__':
  main()
