#!/usr/bin/env bash
# Runs one program as N JAX processes on this machine: a multi-process run exactly as on a
# cluster (jax.distributed, one coordinator, collectives between processes), for tests and for
# checking a multi-host setup before paying for one.
#
# Usage (from the repository root):
#   launch/local_cluster.sh N PROGRAM [flags ...]
#   launch/local_cluster.sh 2 metaiqa-meta-train --config=configs/demo.py:smoke --workdir=/tmp/mp
#   launch/local_cluster.sh 2 launch/meta_train.py --config=... --workdir=...
#
# PROGRAM is a console script (metaiqa-meta-train, -finetune, ...) or a launch/*.py file (run
# with $PYTHON, default python3). Every process gets the same flags plus
# --coordinator_address=127.0.0.1:PORT (PORT: $PORT, default a free one), --num_processes=N and
# --process_id=i. On CPU each process has one device unless XLA_FLAGS says otherwise
# (--xla_force_host_platform_device_count). SIGTERM or SIGINT to this script is passed to every
# process (as a scheduler does); the exit status is the first non-zero one of the processes
# (0 when all succeed). Process i's output goes to stdout/stderr, prefixed by nothing: process 0
# alone writes logs and reports.
set -euo pipefail

if [[ $# -lt 2 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: launch/local_cluster.sh N PROGRAM [flags ...]" >&2
  exit 2
fi
num_processes=$1
program=$2
shift 2
python=${PYTHON:-python3}
if [[ $program == *.py ]]; then
  command=("$python" "$program")
else
  command=("$program")
fi
port=${PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

pids=()
stop() {
  kill -s "$1" "${pids[@]}" 2>/dev/null || true
}
trap 'stop TERM' TERM
trap 'stop INT' INT
for ((i = 0; i < num_processes; i++)); do
  "${command[@]}" "$@" --coordinator_address="127.0.0.1:$port" \
      --num_processes="$num_processes" --process_id="$i" &
  pids+=($!)
done

status=0
for pid in "${pids[@]}"; do
  # `wait` returns early (status > 128) when a trapped signal arrives; wait again until the
  # process has really ended.
  while true; do
    set +e
    wait "$pid"
    code=$?
    set -e
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
  done
  if [[ $status -eq 0 && $code -ne 0 ]]; then
    status=$code
  fi
done
exit "$status"
