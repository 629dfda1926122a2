#!/usr/bin/env bash
# The checks only a CUDA GPU can run, as one call: the kernel tests on the device (the Triton kernels
# compiled for real, `-m gpu` included) and the throughput benchmark at XLM-R base dimensions in bf16,
# eager / fused, then with the torch.compile column; op-level reference-vs-Triton timings between them
# (KERNELS_ONLY=1 stops after those). Everything is written under OUT (default
# reports/perf). Uses the machine's own torch/transformers/triton; madx is put on PYTHONPATH, not installed.
#
#   OUT=/tmp/gpu bash bench/gpu_check.sh
set -uo pipefail
out="${OUT:-reports/perf}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$out/gpu-check-device.txt"
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$out/gpu-check-device.txt"
python3 -m pytest -q -p no:cacheprovider tests/kernels 2>&1 | tee "$out/gpu-check-kernel-tests.log"
timeout 120 python3 -m bench.perf.ops --out "$out" 2>&1 | tee "$out/gpu-check-ops.log"
[ -n "${KERNELS_ONLY:-}" ] && exit 0
timeout "${PERF_TIMEOUT:-240}" python3 -m bench.perf --gpu --out "$out" 2>&1 | tee "$out/gpu-check-perf.log"
timeout "${COMPILE_TIMEOUT:-200}" python3 -m bench.perf --gpu --compile --workloads a,c --name cuda-compile --out "$out" 2>&1 \
    | tee "$out/gpu-check-perf-compile.log"
