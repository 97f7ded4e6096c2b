#!/usr/bin/env bash
# Every CUDA path in one prepared run, for a machine with a GPU lent for a few minutes:
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#
# 1. the CUDA tests (the RL transfer and the vision stack; they skip where there is no GPU);
# 2. bench_cuda.py: an adapter-training step on the CPU and the GPU, and the vision stack's
#    throughput beside a plain torch loop (cuda.{md,json,png});
# 3. the vision stack's default training run on cuda in bf16 (vision_summary.json);
# 4. bench_collect.py: paired-data collection, 64 envs in 1, 4 and 16 processes (collect.*).
# The most telling step runs first, so a run cut short keeps it.
#
# simtoreal must be importable as installed (pip install -e . or a wheel on PYTHONPATH). Module
# runs start in /tmp so that the checkout's simtoreal/ folder does not shadow the installed
# package. Every step runs even when one before it failed; the exit status is the first failure's.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:?usage: gpu_check.sh OUT_DIR}" && cd "$1" && pwd)
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
status=0

step() {
    local name=$1 t0=$SECONDS rc
    shift
    echo "=== $name: $*"
    (cd /tmp && "$@")
    rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0)) s"
    if [ "$status" -eq 0 ]; then status=$rc; fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
(cd /tmp && python3 -c "import torch, simtoreal; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'simtoreal', simtoreal.__file__)")

step bench python3 "$REPO/benchmarks/bench_cuda.py" --steps 20 --out "$OUT"
step tests python3 -m pytest -q -p no:cacheprovider --rootdir "$REPO" \
    "$REPO/tests/simtoreal/test_cuda.py" "$REPO/tests/simtoreal/stacks/test_vision_device.py"
step vision python3 -m simtoreal.train vision --device cuda --precision bf16 \
    --run-dir /tmp/vision-cuda --no-progress-bar
cp /tmp/vision-cuda/summary.json "$OUT/vision_summary.json" 2>/dev/null
step collect python3 "$REPO/benchmarks/bench_collect.py" --procs 1 4 16 --envs-per-run 64 --frames 12000 \
    --out "$OUT"
exit "$status"
