#!/bin/bash
# Independent suite workers on this node: one plain `madx bench run` per GPU, no torchrun world.
#   bash launch/workers.sh SUITE RUN_DIR [more `madx bench run` options]
# Run it on every node (ssh, pdsh, your scheduler) with the same RUN_DIR on a shared filesystem.
# Environment (optional): WORKERS (default: the GPUs nvidia-smi lists, else 1; with
# zero_group_size k: GPUs / k), NODE_RANK (default 0; only names the workers: rank NODE_RANK*WORKERS+i).
# Each worker gets LOCAL_RANK=i (its GPU; bench.devices leases it by UUID) and dies with this
# script; one worker's death (a crash, a sick GPU) ends that worker only, the others go on.
# Exit status: 0 if every worker exited 0, else the last non-zero one.
set -uo pipefail
SUITE=${1:?usage: workers.sh SUITE RUN_DIR [options]}
OUT=${2:?usage: workers.sh SUITE RUN_DIR [options]}
shift 2
# shellcheck source=launch/node-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/node-env.sh"
if [[ -z ${WORKERS:-} ]]; then
  WORKERS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  ((WORKERS > 0)) || WORKERS=1
fi
NODE_RANK=${NODE_RANK:-0}
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT  # each worker releases its job and exits
for ((i = 0; i < WORKERS; i++)); do
  LOCAL_RANK=$i RANK=$((NODE_RANK * WORKERS + i)) python -m madx bench run "$SUITE" --out "$OUT" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  while true; do
    wait "$pid"
    rc=$?
    kill -0 "$pid" 2>/dev/null || break  # wait returned for a trapped signal, not for the worker's exit
  done
  ((rc == 0)) || status=$rc
done
exit "$status"
