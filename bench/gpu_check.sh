#!/usr/bin/env bash
# Every measurement that needs a CUDA GPU, as one call of about 8 minutes at most (each step under
# `timeout`; a failing or timed-out step is logged and the later steps still run):
#
#   1 device      nvidia-smi and the machine's torch / triton / transformers versions
#   2 kernels     pytest tests/kernels on the device (Triton compiled for real, `-m gpu` included)
#   3 ops         python -m bench.perf.ops: fused adapter-block kernels vs the reference, op level
#   4 loss        python -m bench.perf.loss_memory: the MLM loss path alone, materialised vs chunked,
#                 N=2,458 x h=768 x V=250,002, peak memory and time (target: >= 3x lower)
#   5 perf        python -m bench.perf --gpu: every workload, eager and fused (Triton) columns,
#                 XLM-R base dims, bf16, 64 x 256 (targets: (a) >= 600k tokens/s, (a)/(c) step time
#                 <= 1.05 x FLOP ratio, attention backend, FLOP counter check)
#   6 compile     python -m bench.perf --gpu --variants eager,compile --workloads a,c: the torch.compile
#                 column (MaskedLMObjective(compile=True), as training compiles) beside an eager baseline
#                 from the same process
#   7 reuse       python -m bench.perf.worker_reuse: one real worker on cuda:0 running 6 compiled adapter
#                 MLM jobs of 6 languages and 2 full-model MLM jobs (inductor): frames compiled per job
#                 (target: one per (mode, shape), none for a new language), allocated/reserved memory after
#                 each job, and the auto kernel probe on the worker's device (failures listed, not swallowed)
#
# Everything is written under OUT (default reports/perf): results as JSON + markdown, each step's output
# as gpu-check-<step>.log, and gpu-check-summary.txt (exit code and seconds per step). Uses the machine's
# own torch/transformers/triton; madx is put on PYTHONPATH, not installed. Exits 1 if any step failed.
#
#   OUT=/tmp/gpu bash bench/gpu_check.sh
#   OUT=$OUT STEPS=kernels,ops bash bench/gpu_check.sh      # a subset (names above)
#
# Per-step limits in seconds can be overridden: DEVICE_TIMEOUT KERNELS_TIMEOUT OPS_TIMEOUT LOSS_TIMEOUT
# PERF_TIMEOUT COMPILE_TIMEOUT REUSE_TIMEOUT (defaults 20 60 90 50 130 110 90: 550 s in all, plus at most
# 5 s each to kill).
set -uo pipefail
out="${OUT:-reports/perf}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
steps=",${STEPS:-device,kernels,ops,loss,perf,compile,reuse},"
summary="$out/gpu-check-summary.txt"
: > "$summary"
failed=0

step() {  # step NAME LIMIT COMMAND...: run under timeout, log to OUT, record exit code and time
    local name=$1 limit=$2 start rc
    shift 2
    if [[ $steps != *",$name,"* ]]; then return 0; fi
    echo "== $name (limit ${limit} s): $*"
    start=$(date +%s)
    timeout -k 5 "$limit" "$@" 2>&1 | tee "$out/gpu-check-$name.log"
    rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] && echo "== $name: timed out after ${limit} s" | tee -a "$out/gpu-check-$name.log"
    echo "$name exit=$rc seconds=$(( $(date +%s) - start ))" | tee -a "$summary"
    [ "$rc" = 0 ] || failed=1
}

step device "${DEVICE_TIMEOUT:-20}" bash -c \
    'nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv;
     python3 -c "import torch, triton, transformers; print(\"torch\", torch.__version__, \"triton\", triton.__version__, \"transformers\", transformers.__version__, \"device\", torch.cuda.get_device_name())"'
ops_limit=${OPS_TIMEOUT:-90}
step kernels "${KERNELS_TIMEOUT:-60}" python3 -m pytest -q -p no:cacheprovider tests/kernels
# ops keeps what it measured when cut short, and skips compile columns near the end of its own budget
step ops "$ops_limit" python3 -m bench.perf.ops --out "$out" --budget-s $(( ops_limit - 15 ))
# results are named after the card (as bench.perf.cli._slug spells it); the perf runs read the loss verdict
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | sed -n 1p | tr 'A-Z' 'a-z' | sed -E 's/[^a-z0-9]+/-/g; s/^-+|-+$//g')
gpu=${gpu:-gpu}
step loss "${LOSS_TIMEOUT:-50}" python3 -m bench.perf.loss_memory --device cuda --name "loss-memory-$gpu" --out "$out"
step perf "${PERF_TIMEOUT:-130}" python3 -m bench.perf --gpu --steps 10 --warmup 3 --variants eager,fused \
    --loss-memory "$out/loss-memory-$gpu.json" --name "cuda-$gpu" --out "$out"
step compile "${COMPILE_TIMEOUT:-110}" python3 -m bench.perf --gpu --steps 10 --warmup 3 --variants eager,compile \
    --workloads a,c --loss-memory "$out/loss-memory-$gpu.json" --name "cuda-$gpu-compile" --out "$out"
step reuse "${REUSE_TIMEOUT:-90}" python3 -m bench.perf.worker_reuse --out "$out" --languages 6 --full 2 --steps 20
echo "== done; per step:"
cat "$summary"
exit $failed
