"""Runs console-script entry points many times in one Python process, each in a forked child.

absl defines flags once per process and importing JAX and the package is most of a short run's
cost, so tests that check many invocations (every program's `--help`, every bad input of a
command) import the entry points once and fork a child per invocation.
"""

import json
import pathlib
import subprocess
import sys

# argv: OUT_DIR, FD (1 stdout, 2 stderr), a JSON list of [module, function, argv]. Child i writes
# FD to OUT_DIR/<i>.txt and its exit status to OUT_DIR/<i>.status.
_SCRIPT = '''
import importlib, json, os, sys
out_dir, fd, runs = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
entries = [getattr(importlib.import_module(m), f) for m, f, _ in runs]  # Imported before forking.
for i, (entry, (_, _, argv)) in enumerate(zip(entries, runs)):
  pid = os.fork()
  if pid == 0:
    os.dup2(os.open(os.path.join(out_dir, f'{i}.txt'), os.O_WRONLY | os.O_CREAT), fd)
    sys.argv = argv
    try:
      entry()
      status = 0
    except SystemExit as e:
      status = e.code or 0
    (sys.stdout if fd == 1 else sys.stderr).flush()
    os._exit(status)
  _, status = os.waitpid(pid, 0)
  with open(os.path.join(out_dir, f'{i}.status'), 'w') as f:
    f.write(str(os.waitstatus_to_exitcode(status)))
'''


def run_forked(runs, out_dir, *, fd: int, timeout: float = 300) -> list[tuple[int, str]]:
  """`(exit status, what it wrote to fd)` of each `(module, function, argv)` of `runs`, the
  function called with `sys.argv = argv` in a child forked from one process."""
  out_dir = pathlib.Path(out_dir)
  subprocess.run([sys.executable, '-c', _SCRIPT, str(out_dir), str(fd),
                  json.dumps([list(r) for r in runs])], check=True, timeout=timeout)
  return [(int((out_dir / f'{i}.status').read_text()), (out_dir / f'{i}.txt').read_text())
          for i in range(len(runs))]
