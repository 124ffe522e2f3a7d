#!/usr/bin/env bash
# Meta-trains MetaIQA on every worker of a Cloud TPU VM (single host or pod slice).
#
# Usage:
#   launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [extra flags for launch/meta_train.py ...]
# Example:
#   launch/tpu_vm.sh metaiqa-v4-32 us-central2-b configs/meta_tid_kadid.py \
#       gs://my-bucket/runs/meta_tid_kadid --config.seed=1
#
# What it does: `gcloud compute tpus tpu-vm ssh --worker=all` runs the same command on every
# host of the slice, from REPO_DIR (default ~/metaiqa-jax, a checkout with the package installed:
# `pip install -e .` on each worker). `--distributed` makes the program call
# `jax.distributed.initialize()`, which on TPU VMs discovers the coordinator, process count and
# process index by itself; each process then reads its shard of the data (by process index) and
# the meta-step shards tasks over all global devices. WORKDIR must be shared by all hosts (a GCS
# bucket or a shared file system); only process 0 writes logs and reports, all take part in
# checkpointing. Relaunching the same command resumes from the workdir's latest checkpoint.
#
# Environment: REPO_DIR (checkout on the workers), PYTHON (interpreter there, default python3),
# GCLOUD_FLAGS (extra flags for gcloud, e.g. "--project=my-project").
set -euo pipefail

if [[ $# -lt 4 ]]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
tpu_name=$1
zone=$2
config=$3
workdir=$4
shift 4

repo_dir=${REPO_DIR:-'~/metaiqa-jax'}
python=${PYTHON:-python3}
extra_flags=""
for flag in "$@"; do
  extra_flags+=" $(printf '%q' "$flag")"
done
remote_command="cd ${repo_dir} && ${python} launch/meta_train.py --distributed \
--config=$(printf '%q' "$config") --workdir=$(printf '%q' "$workdir")${extra_flags}"

# shellcheck disable=SC2086  # GCLOUD_FLAGS is a list of flags.
gcloud compute tpus tpu-vm ssh "$tpu_name" --zone="$zone" --worker=all ${GCLOUD_FLAGS:-} \
  --command="$remote_command"
