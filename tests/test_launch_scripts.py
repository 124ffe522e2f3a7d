"""launch/tpu_vm.sh, launch/slurm_gpu.sbatch and launch/local_cluster.sh: syntax, and the command
each one runs.

`gcloud` and `srun` are replaced by stubs on PATH that record their arguments, one per line.
"""

import os
import pathlib
import subprocess

import pytest

LAUNCH = pathlib.Path(__file__).resolve().parent.parent / 'launch'
SCRIPTS = ('tpu_vm.sh', 'slurm_gpu.sbatch', 'local_cluster.sh')


@pytest.mark.parametrize('script', SCRIPTS)
def test_bash_syntax(script):
  subprocess.run(['bash', '-n', str(LAUNCH / script)], check=True)


def run_with_stub(tmp_path, tool, script, args, env=None):
  """Runs `script args` with `tool` stubbed; returns the stub's arguments."""
  record = tmp_path / 'args.txt'
  stub = tmp_path / 'bin' / tool
  stub.parent.mkdir()
  stub.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {record}\n')
  stub.chmod(0o755)
  full_env = {**os.environ, 'PATH': f'{stub.parent}:{os.environ["PATH"]}', **(env or {})}
  subprocess.run(['bash', str(LAUNCH / script), *args], check=True, env=full_env, cwd=tmp_path)
  return record.read_text().splitlines()


def test_tpu_vm_runs_meta_train_on_all_workers(tmp_path):
  args = run_with_stub(tmp_path, 'gcloud', 'tpu_vm.sh',
                       ['my-tpu', 'us-central2-b', 'configs/meta.py', 'gs://b/run 1',
                        '--config.seed=3'], env={'REPO_DIR': '/opt/metaiqa'})
  assert args[:5] == ['compute', 'tpus', 'tpu-vm', 'ssh', 'my-tpu']
  assert '--zone=us-central2-b' in args and '--worker=all' in args
  command = next(a for a in args if a.startswith('--command='))
  assert command == ('--command=cd /opt/metaiqa && python3 launch/meta_train.py --distributed '
                     r'--config=configs/meta.py --workdir=gs://b/run\ 1 --config.seed=3')


def test_tpu_vm_usage_error(tmp_path):
  result = subprocess.run(['bash', str(LAUNCH / 'tpu_vm.sh'), 'only-one-arg'],
                          capture_output=True, text=True)
  assert result.returncode == 2 and 'Usage' in result.stderr


def test_slurm_runs_one_distributed_process_per_task(tmp_path):
  args = run_with_stub(tmp_path, 'srun', 'slurm_gpu.sbatch',
                       ['configs/meta.py', '/shared/run', '--config.seed=3'],
                       env={'SLURM_SUBMIT_DIR': str(tmp_path)})
  assert args == ['--kill-on-bad-exit=1', 'python3', 'launch/meta_train.py', '--distributed',
                  '--config=configs/meta.py', '--workdir=/shared/run', '--config.seed=3']


def test_local_cluster_starts_n_processes_with_their_ids_and_one_port(tmp_path):
  program = tmp_path / 'program'
  program.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$(dirname "$0")/args.$$"\n')
  program.chmod(0o755)
  subprocess.run(['bash', str(LAUNCH / 'local_cluster.sh'), '3', str(program), '--workdir=w'],
                 check=True, env={**os.environ, 'PORT': '4321'})
  runs = sorted(tuple(f.read_text().splitlines()) for f in tmp_path.glob('args.*'))
  assert runs == [('--workdir=w', '--coordinator_address=127.0.0.1:4321', '--num_processes=3',
                   f'--process_id={i}') for i in range(3)]


def test_local_cluster_exits_with_the_first_failure(tmp_path):
  program = tmp_path / 'program'
  program.write_text('#!/usr/bin/env bash\n[[ $3 == --process_id=1 ]] && exit 7\nexit 0\n')
  program.chmod(0o755)
  result = subprocess.run(['bash', str(LAUNCH / 'local_cluster.sh'), '2', str(program)])
  assert result.returncode == 7


def test_local_cluster_usage_error():
  result = subprocess.run(['bash', str(LAUNCH / 'local_cluster.sh'), 'two', 'prog'],
                          capture_output=True, text=True)
  assert result.returncode == 2 and 'usage' in result.stderr
