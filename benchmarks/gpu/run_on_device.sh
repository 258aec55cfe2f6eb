#!/usr/bin/env bash
# The one command for the lent GPU machine (device tool: run, carry [".gpu_carry"], timeout_s 600):
#
#     bash benchmarks/gpu/run_on_device.sh
#
# Installs the carried wheels into /tmp/site (no network there), puts src/ on PYTHONPATH, runs the SFT
# matrix within SFT_BUDGET_S seconds, then (when benchmarks/bench_detect.py exists and DETECT_S > 0) the
# detection throughput benchmark on the real Qwen2.5-VL-7B architecture. Everything goes under $OUT:
#   device.log     this script's output (install, GPU, the tables)
#   sft_gpu.json   per-arm results and ratios, written after every arm
#   sft_gpu.log    every benchmark process's output
#   detect.log, detect/...   the detection benchmark's output and results
# Settings (environment): CARRY (.gpu_carry), ARMS (default), SFT_BUDGET_S (400), DETECT_S (90),
# STEPS (10), WARMUP (2). Build the carry first, on the CPU machine: benchmarks/gpu/prepare_carry.py.
set -uo pipefail
: "${OUT:?OUT is not set: this script runs on the device machine, which sets it}"
CARRY=${CARRY:-.gpu_carry}
ARMS=${ARMS:-default}
SFT_BUDGET_S=${SFT_BUDGET_S:-400}
DETECT_S=${DETECT_S:-90}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-2}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device.log") 2>&1
start=$SECONDS
echo "run_on_device: $(date -u +%FT%TZ) $(uname -m), $(nproc) CPUs"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,temperature.gpu --format=csv,noheader || true
df -h /tmp | tail -1
if [ ! -d "$CARRY/wheels" ]; then
  echo "run_on_device: $CARRY/wheels not found: build it with benchmarks/gpu/prepare_carry.py and carry it"
  exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "$CARRY"/wheels/*.whl || { echo "run_on_device: wheel install failed"; exit 2; }
echo "run_on_device: wheels installed in $((SECONDS - start)) s"
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false \
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=/tmp/hf \
  JAMSPOTTER_REFERENCE_DATA="$PWD/$CARRY"
python3 benchmarks/gpu/bench_sft_gpu.py --reference "$CARRY" --out "$OUT" --work /tmp/jamspotter-sft-bench \
  --arms "$ARMS" --budget-s "$SFT_BUDGET_S" --steps "$STEPS" --warmup "$WARMUP"
sft_rc=$?
echo "run_on_device: SFT matrix exit code $sft_rc after $((SECONDS - start)) s"
if [ -f benchmarks/bench_detect.py ] && [ "$DETECT_S" -gt 0 ]; then
  timeout "$DETECT_S" python3 benchmarks/bench_detect.py --device cuda \
    --arch-config "$CARRY/qwen_configs/Qwen2.5-VL-7B-Instruct" --batches 1,4,16 --results-dir "$OUT/detect" \
    > "$OUT/detect.log" 2>&1
  echo "run_on_device: detection benchmark exit code $? (124: stopped at ${DETECT_S} s) after $((SECONDS - start)) s"
  tail -n 20 "$OUT/detect.log"
fi
echo "run_on_device: done in $((SECONDS - start)) s"
exit "$sft_rc"
